#!/usr/bin/env python3
"""PyTorch reference timing of one ViT training step, the counterpart of bench/bench_vit_step.cpp.

One step = forward, softmax cross-entropy, backward, AdamW update (lr 1e-3, weight decay 1e-4),
float32 on the CPU, for the same architecture as the C++ ViT (test/golden/make_vit_golden.py has
the commented float64 version): NHWC images, p x p patch embedding, class token, learned
position embedding, pre-LN blocks (LayerNorm eps 1e-6, fused qkv attention, MLP with tanh GELU),
final LayerNorm, token-0 classifier, optional pre-logits, head. Prints ONE JSON line; the median
is taken as sorted(times)[steps // 2], as the C++ benchmark does.

    /usr/bin/python3 bench/ref/vit_step_torch.py --image-size 28 --channels 1 --patch 4 \\
        --hidden 64 --mlp 128 --heads 4 --layers 4 --classes 10 --batch 128 --threads 2 \\
        --steps 20 --warmup 3
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

LN_EPS = 1e-6


class Block(torch.nn.Module):
    """Pre-LN encoder block: x += Attn(LN1(x)); x += Mlp(LN2(x)). Kernels are [in, out]."""

    def __init__(self, d, m, heads):
        super().__init__()
        self.heads = heads
        self.ln1_scale = torch.nn.Parameter(torch.ones(d))
        self.ln1_bias = torch.nn.Parameter(torch.zeros(d))
        self.ln2_scale = torch.nn.Parameter(torch.ones(d))
        self.ln2_bias = torch.nn.Parameter(torch.zeros(d))
        self.qkv_kernel = torch.nn.Parameter(torch.randn(d, 3 * d) / math.sqrt(d))
        self.qkv_bias = torch.nn.Parameter(torch.zeros(3 * d))
        self.out_kernel = torch.nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.out_bias = torch.nn.Parameter(torch.zeros(d))
        self.fc1_kernel = torch.nn.Parameter(torch.randn(d, m) / math.sqrt(d))
        self.fc1_bias = torch.nn.Parameter(torch.zeros(m))
        self.fc2_kernel = torch.nn.Parameter(torch.randn(m, d) / math.sqrt(m))
        self.fc2_bias = torch.nn.Parameter(torch.zeros(d))

    def attention(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        qkv = torch.addmm(self.qkv_bias, x.reshape(b * t, d), self.qkv_kernel)  # [B*T, 3D]
        # Columns [0, D) q, [D, 2D) k, [2D, 3D) v; head h = columns h*hd .. (h+1)*hd of each.
        qkv = qkv.reshape(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)  # [3, B, heads, T, hd]
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [B, heads, T, T]
        weights = torch.softmax(scores, dim=-1)
        o = (weights @ v).transpose(1, 2).reshape(b * t, d)  # heads concatenated in order
        return torch.addmm(self.out_bias, o, self.out_kernel).reshape(b, t, d)

    def mlp(self, x):
        b, t, d = x.shape
        h = torch.addmm(self.fc1_bias, x.reshape(b * t, d), self.fc1_kernel)  # [B*T, M]
        h = F.gelu(h, approximate="tanh")
        return torch.addmm(self.fc2_bias, h, self.fc2_kernel).reshape(b, t, d)

    def forward(self, x):
        d = x.shape[-1]
        x = x + self.attention(F.layer_norm(x, (d,), self.ln1_scale, self.ln1_bias, LN_EPS))
        return x + self.mlp(F.layer_norm(x, (d,), self.ln2_scale, self.ln2_bias, LN_EPS))


class ViT(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.p, d = a.patch, a.hidden
        n = (a.image_size // a.patch) ** 2
        patch_dim = a.patch * a.patch * a.channels
        self.embedding_kernel = torch.nn.Parameter(torch.randn(patch_dim, d) * 0.02)
        self.embedding_bias = torch.nn.Parameter(torch.zeros(d))
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embedding = torch.nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.blocks = torch.nn.ModuleList(Block(d, a.mlp, a.heads) for _ in range(a.layers))
        self.norm_scale = torch.nn.Parameter(torch.ones(d))
        self.norm_bias = torch.nn.Parameter(torch.zeros(d))
        r = a.representation
        if r > 0:
            self.pre_logits_kernel = torch.nn.Parameter(torch.randn(d, r) / math.sqrt(d))
            self.pre_logits_bias = torch.nn.Parameter(torch.zeros(r))
        else:
            self.pre_logits_kernel = None
        # Non-zero head so that every gradient is non-trivial (as in the C++ benchmark).
        self.head_kernel = torch.nn.Parameter(torch.randn(r if r > 0 else d, a.classes) * 0.02)
        self.head_bias = torch.nn.Parameter(torch.full((a.classes,), -math.log(a.classes)))

    def forward(self, images):  # [B, H, W, C]
        b, h, w, c = images.shape
        p = self.p
        # Patches row-major over the grid, each flattened in (py, px, c) order: [B, N, p*p*C].
        x = images.reshape(b, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, (h // p) * (w // p), p * p * c)
        x = x @ self.embedding_kernel + self.embedding_bias  # [B, N, D]
        x = torch.cat([self.cls.expand(b, 1, -1), x], dim=1) + self.pos_embedding  # [B, T, D]
        for block in self.blocks:
            x = block(x)
        x = F.layer_norm(x, (x.shape[-1],), self.norm_scale, self.norm_bias, LN_EPS)[:, 0]
        if self.pre_logits_kernel is not None:
            x = torch.tanh(x @ self.pre_logits_kernel + self.pre_logits_bias)
        return x @ self.head_kernel + self.head_bias  # [B, classes]


def main():
    ap = argparse.ArgumentParser(description="PyTorch ViT training-step benchmark")
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--mlp", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--representation", type=int, default=0, help="pre-logits size, 0 = none")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    if a.image_size % a.patch or a.hidden % a.heads or a.steps < 1:
        ap.error("need image-size % patch == 0, hidden % heads == 0 and steps >= 1")

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ViT(a)
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4
    )
    images = torch.randn(a.batch, a.image_size, a.image_size, a.channels)
    labels = torch.arange(a.batch) % a.classes

    times_ms = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)  # softmax xent, mean over the batch
        loss.backward()
        opt.step()
        dt = (time.perf_counter() - t0) * 1000.0
        if step >= a.warmup:
            times_ms.append(dt)
    times_ms.sort()
    median = times_ms[len(times_ms) // 2]
    print(json.dumps({
        "impl": "torch",
        "median_step_ms": round(median, 3),
        "images_per_s": round(a.batch * 1000.0 / median, 1),
        "threads": a.threads,
        "batch": a.batch,
        "params": sum(p.numel() for p in model.parameters()),
        "min_step_ms": round(times_ms[0], 3),
        "mean_step_ms": round(sum(times_ms) / len(times_ms), 3),
        "steps": a.steps,
        "final_loss": round(float(loss), 6),
        "torch_version": torch.__version__,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
