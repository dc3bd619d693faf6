#!/usr/bin/env python3
"""Reference ViT forward/backward in float64 PyTorch -> test/golden/vit_golden.h5.

The C++ Vision Transformer (models/) is checked against this file by test/models/test_vit.cpp.
The model below is written in plain torch ops, in the same order and with the same parameter
names and layouts (JAX/Flax conventions, kernels [in, out], y = x @ W + b) as the C++ code.

Regenerate (needs torch, h5py and numpy; the C++ tests only read the .h5 file):

    /usr/bin/python3 test/golden/make_vit_golden.py            # writes test/golden/vit_golden.h5
    /usr/bin/python3 test/golden/make_vit_golden.py --out x.h5

Cases (one group each):
  case_token/   classifier "token", pre-logits R=16, softmax cross-entropy
  gap_sigmoid/  classifier "gap" (mean over tokens, no class token), no pre-logits,
                sigmoid cross-entropy (sum over classes of BCE against one-hot, mean over batch)
Each group holds inputs/{images,labels}, params/<name>, outputs/{logits,loss},
grads/<name> (d loss / d parameter) and grads/images, plus the hyper-parameters as attributes.
"""
import argparse
import math
import os

import h5py
import numpy as np
import torch

DTYPE = torch.float64
LN_EPS = 1e-6


# ----------------------------------------------------------------------------- parameters


def param_shapes(cfg):
    """Name -> shape of every parameter, in the C++ naming scheme."""
    p, c, d, m = cfg["patch_size"], cfg["channels"], cfg["hidden_size"], cfg["mlp_dim"]
    n = (cfg["image_size"] // p) ** 2
    tokens = n + (1 if cfg["classifier"] == "token" else 0)
    shapes = {"embedding/kernel": (p * p * c, d), "embedding/bias": (d,)}
    if cfg["classifier"] == "token":
        shapes["cls"] = (1, 1, d)
    shapes["encoder/posembed_input/pos_embedding"] = (1, tokens, d)
    for layer in range(cfg["num_layers"]):
        b = f"encoder/block_{layer:02d}/"
        shapes[b + "ln1/scale"] = (d,)
        shapes[b + "ln1/bias"] = (d,)
        shapes[b + "attn/qkv/kernel"] = (d, 3 * d)
        shapes[b + "attn/qkv/bias"] = (3 * d,)
        shapes[b + "attn/out/kernel"] = (d, d)
        shapes[b + "attn/out/bias"] = (d,)
        shapes[b + "ln2/scale"] = (d,)
        shapes[b + "ln2/bias"] = (d,)
        shapes[b + "mlp/fc1/kernel"] = (d, m)
        shapes[b + "mlp/fc1/bias"] = (m,)
        shapes[b + "mlp/fc2/kernel"] = (m, d)
        shapes[b + "mlp/fc2/bias"] = (d,)
    shapes["encoder/encoder_norm/scale"] = (d,)
    shapes["encoder/encoder_norm/bias"] = (d,)
    r = cfg["representation_size"]
    if r > 0:
        shapes["pre_logits/kernel"] = (d, r)
        shapes["pre_logits/bias"] = (r,)
    shapes["head/kernel"] = (r if r > 0 else d, cfg["num_classes"])
    shapes["head/bias"] = (cfg["num_classes"],)
    return shapes


def random_params(cfg, gen):
    """Every parameter random (nothing zero, so every gradient is non-trivial): N(0, 0.2^2),
    LayerNorm scales 1 + N(0, 0.2^2)."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        value = 0.2 * torch.randn(shape, generator=gen, dtype=DTYPE)
        if name.endswith("/scale"):
            value = value + 1.0
        params[name] = value.requires_grad_(True)
    return params


# ----------------------------------------------------------------------------- model


def layer_norm(x, scale, bias):
    """LayerNorm over the last axis, biased variance, eps 1e-6."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + LN_EPS) * scale + bias


def gelu_tanh(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def patchify(images, p):
    """[B, H, W, C] -> [B, N, p*p*C]: patch n row-major over the grid, flattened (py, px, c)."""
    b, h, w, c = images.shape
    gh, gw = h // p, w // p
    x = images.reshape(b, gh, p, gw, p, c)  # [B, gh, py, gw, px, C]
    x = x.permute(0, 1, 3, 2, 4, 5)  # [B, gh, gw, py, px, C]
    return x.reshape(b, gh * gw, p * p * c)


def attention(x, P, prefix, num_heads):
    """Multi-head self-attention on x [B, T, D] with fused qkv kernel [D, 3D]."""
    b, t, d = x.shape
    hd = d // num_heads
    qkv = x @ P[prefix + "qkv/kernel"] + P[prefix + "qkv/bias"]  # [B, T, 3D]
    q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]  # [B, T, D] each

    # Head h uses columns h*hd .. (h+1)*hd of q, k and v.
    def heads(z):
        return z.reshape(b, t, num_heads, hd).transpose(1, 2)  # [B, heads, T, hd]

    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [B, heads, T, T]
    weights = torch.softmax(scores, dim=-1)
    o = weights @ v  # [B, heads, T, hd]
    o = o.transpose(1, 2).reshape(b, t, d)  # heads concatenated in head order -> [B, T, D]
    return o @ P[prefix + "out/kernel"] + P[prefix + "out/bias"]


def mlp(x, P, prefix):
    """Dense(M) -> GELU (tanh) -> Dense(D)."""
    h = gelu_tanh(x @ P[prefix + "fc1/kernel"] + P[prefix + "fc1/bias"])  # [B, T, M]
    return h @ P[prefix + "fc2/kernel"] + P[prefix + "fc2/bias"]


def vit_forward(images, P, cfg):
    """images [B, H, W, C] -> logits [B, classes]."""
    b = images.shape[0]
    # Patch embedding: [B, N, p*p*C] @ [p*p*C, D] + [D].
    x = patchify(images, cfg["patch_size"]) @ P["embedding/kernel"] + P["embedding/bias"]
    # Class token prepended as token 0 ("token" classifier only).
    if cfg["classifier"] == "token":
        x = torch.cat([P["cls"].expand(b, 1, -1), x], dim=1)  # [B, T, D]
    # Learned position embedding [1, T, D].
    x = x + P["encoder/posembed_input/pos_embedding"]
    # Pre-LN encoder blocks.
    for layer in range(cfg["num_layers"]):
        pre = f"encoder/block_{layer:02d}/"
        y = layer_norm(x, P[pre + "ln1/scale"], P[pre + "ln1/bias"])
        x = x + attention(y, P, pre + "attn/", cfg["num_heads"])
        y = layer_norm(x, P[pre + "ln2/scale"], P[pre + "ln2/bias"])
        x = x + mlp(y, P, pre + "mlp/")
    x = layer_norm(x, P["encoder/encoder_norm/scale"], P["encoder/encoder_norm/bias"])
    # Classifier: token 0, or the mean over all tokens ("gap").
    x = x[:, 0] if cfg["classifier"] == "token" else x.mean(dim=1)  # [B, D]
    # Optional pre-logits tanh(Dense(R)).
    if cfg["representation_size"] > 0:
        x = torch.tanh(x @ P["pre_logits/kernel"] + P["pre_logits/bias"])
    return x @ P["head/kernel"] + P["head/bias"]  # [B, classes]


def softmax_xent(logits, labels):
    """Softmax cross-entropy against integer labels, mean over the batch."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp[torch.arange(logits.shape[0]), labels.long()].mean()


def sigmoid_xent(logits, labels):
    """Sum over classes of BCE-with-logits against one-hot labels, mean over the batch."""
    onehot = torch.nn.functional.one_hot(labels.long(), logits.shape[-1]).to(logits.dtype)
    # Stable form of -[y log s(z) + (1 - y) log(1 - s(z))].
    per = torch.clamp(logits, min=0) - logits * onehot + torch.log1p(torch.exp(-logits.abs()))
    return per.sum(dim=-1).mean()


LOSSES = {"softmax_xent": softmax_xent, "sigmoid_xent": sigmoid_xent}


# ----------------------------------------------------------------------------- self-checks


def check_building_blocks(gen):
    """The plain-op LayerNorm, GELU and losses agree with torch's own implementations."""
    x = torch.randn(4, 7, 16, generator=gen, dtype=DTYPE)
    s, b = torch.randn(16, generator=gen, dtype=DTYPE), torch.randn(16, generator=gen, dtype=DTYPE)
    ref = torch.nn.functional.layer_norm(x, (16,), s, b, eps=LN_EPS)
    assert torch.allclose(layer_norm(x, s, b), ref, rtol=1e-12, atol=1e-12)
    ref = torch.nn.functional.gelu(x, approximate="tanh")
    assert torch.allclose(gelu_tanh(x), ref, rtol=1e-12, atol=1e-12)
    z, y = x[:, 0, :5], torch.tensor([0, 4, 2, 1])
    ref = torch.nn.functional.cross_entropy(z, y)
    assert torch.allclose(softmax_xent(z, y), ref, rtol=1e-12, atol=1e-12)
    onehot = torch.nn.functional.one_hot(y, 5).to(DTYPE)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(z, onehot, reduction="sum") / 4
    assert torch.allclose(sigmoid_xent(z, y), ref, rtol=1e-12, atol=1e-12)
    # Patch embedding = Flax's stride-p Conv with kernel [p, p, C, D] flattened to [p*p*C, D].
    p, c, d = 4, 3, 16
    images = torch.randn(2, 8, 8, c, generator=gen, dtype=DTYPE)
    kernel = torch.randn(p * p * c, d, generator=gen, dtype=DTYPE)
    conv_w = kernel.reshape(p, p, c, d).permute(3, 2, 0, 1)  # [D, C, py, px]
    conv = torch.nn.functional.conv2d(images.permute(0, 3, 1, 2), conv_w, stride=p)  # [B, D, 2, 2]
    ref = conv.flatten(2).transpose(1, 2)  # [B, N, D], patches row-major over the grid
    assert torch.allclose(patchify(images, p) @ kernel, ref, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- cases


def make_case(cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    params = random_params(cfg, gen)
    shape = (cfg["batch_size"], cfg["image_size"], cfg["image_size"], cfg["channels"])
    images = torch.randn(shape, generator=gen, dtype=DTYPE).requires_grad_(True)
    labels = torch.randint(0, cfg["num_classes"], (cfg["batch_size"],), generator=gen)
    labels = labels.to(torch.int32)

    logits = vit_forward(images, params, cfg)
    loss = LOSSES[cfg["loss"]](logits, labels)
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names] + [images])
    for name, g in zip(names + ["images"], grads):
        assert g.abs().max() > 0, f"gradient of {name} is zero"
    return {
        "inputs": {"images": images.detach(), "labels": labels},
        "params": {n: params[n].detach() for n in names},
        "outputs": {"logits": logits.detach(), "loss": loss.detach()},
        "grads": dict(zip(names + ["images"], (g.detach() for g in grads))),
    }


BASE = dict(
    image_size=8,
    channels=3,
    patch_size=4,
    hidden_size=16,
    mlp_dim=32,
    num_heads=2,
    num_layers=2,
    num_classes=5,
    batch_size=3,
)
CASES = {
    "case_token": (dict(BASE, representation_size=16, classifier="token", loss="softmax_xent"), 1),
    "gap_sigmoid": (dict(BASE, representation_size=0, classifier="gap", loss="sigmoid_xent"), 2),
}


def write_group(h5, name, cfg, seed, data):
    g = h5.create_group(name)
    for key, value in cfg.items():
        g.attrs[key] = value
    g.attrs["seed"] = seed
    g.attrs["layer_norm_eps"] = LN_EPS
    g.attrs["gelu"] = "tanh"
    for section, arrays in data.items():
        for key, tensor in arrays.items():
            # track_times=False: the same inputs give a byte-identical file.
            g.create_dataset(f"{section}/{key}", data=tensor.numpy(), track_times=False)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(here, "vit_golden.h5"))
    args = parser.parse_args()

    torch.set_num_threads(1)  # reproducible reductions
    check_building_blocks(torch.Generator().manual_seed(0))
    with h5py.File(args.out, "w", libver="earliest") as h5:
        h5.attrs["description"] = (
            "float64 PyTorch reference of the vmoe ViT: forward, loss and gradients "
            "(test/golden/make_vit_golden.py)"
        )
        h5.attrs["cases"] = ",".join(CASES)
        for name, (cfg, seed) in CASES.items():
            data = make_case(cfg, seed)
            write_group(h5, name, cfg, seed, data)
            loss = float(data["outputs"]["loss"])
            print(f"{name}: loss {loss:.12f}, {len(data['params'])} parameters")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
