#!/usr/bin/env python3
"""PyTorch reference of one ViT / V-MoE training step, timed: the counterpart of
`vmoe bench train --json` (launch/bench_command.cpp) and of bench/bench_train_step.cpp.

One step = forward, softmax cross-entropy (+ the MoE auxiliary losses), backward, AdamW update
(lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 1e-4), float32 on the CPU, on random images.
The architecture is the C++ one (test/golden/make_vit_golden.py has the commented float64 ViT):
NHWC images, p x p patch embedding, class token, learned position embedding, pre-LN blocks
(LayerNorm eps 1e-6, fused qkv attention, MLP with tanh GELU), final LayerNorm, token-0
classifier, optional tanh pre-logits, head (non-zero, as the C++ benchmark sets it).

V-MoE (models/moe_layer.cpp): the MLP of the blocks named by moe.every_n (blocks n-1, 2n-1, ...;
or moe.last_n / moe.blocks) is a Mixture of Experts:
  * router: logits = x @ W [D, E] (no bias); p = softmax(logits + N(0, 1) * noise_std / E) in
    training (clean softmax when not training or noise_std = 0); top-k of p; the k values are
    the combine weights;
  * groups of images_per_group images (their tokens contiguous), per-group capacity
    expert_capacity() (models/moe_config.cpp, ported exactly; a shorter last group has its own);
  * slots (core/cpu/routing.cpp): per group, the k-major sequence of assignments in token order
    (BPR: tokens by their top-1 weight, stable, descending) each takes its expert's next slot
    while the capacity lasts, else it is dropped;
  * index-based dispatch into an [E, R, D] buffer (R = the rows of all groups), experts as
    batched matmuls (baddbmm) with fc1 [E, D, M], tanh GELU, fc2 [E, M, D]; combine = sum over
    the kept choices of weight * expert output, gathered back by row index;
  * auxiliary losses per group, averaged over the groups: importance cv^2 (clean softmax), load
    cv^2 (noisy training only), GShard (weight 0 by default), weighted by the config.
Empty slots of the buffer point at token 0: their outputs are never gathered, so they get no
gradient, exactly as the C++ zero rows.

The shape comes from `--config FILE.textproto` (a small reader of the fields needed, with the
configs/vmoe.proto defaults for absent ones) and/or explicit arguments, which win. Prints ONE
JSON line; the median is sorted(times)[steps // 2], as the C++ benchmark takes it.
`--check` runs the routing/combine self-test instead (no timing) and exits non-zero on failure;
`--profile N` prints, after the timed steps, N more steps' time per ATen op and the matrix
products' share to stderr.
Runs with torch 1.13 (Debian's python3-torch) and 2.x; needs nothing but torch.

    /usr/bin/python3 bench/ref/train_step_torch.py \\
        --config configs/experiments/fashion_vmoe_ti.textproto --threads 2 --steps 20
    /usr/bin/python3 bench/ref/train_step_torch.py --check
"""
import argparse
import json
import math
import re
import sys
import time
import warnings

# PyPI's torch warns at import when NumPy is absent; this script does not use NumPy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LN_EPS = 1e-6

# configs/vmoe.proto defaults of the fields this script reads.
MODEL_DEFAULTS = {
    "image_size": 28, "channels": 1, "patch_size": 4, "hidden_size": 64, "mlp_dim": 128,
    "num_heads": 4, "num_layers": 4, "num_classes": 10, "representation_size": 0,
}
MOE_DEFAULTS = {
    "num_experts": 8, "k": 2, "capacity_factor": 1.05, "batch_priority": False,
    "images_per_group": 8, "noise_std": 1.0, "importance_loss_weight": 0.005,
    "load_loss_weight": 0.005, "gshard_loss_weight": 0.0, "every_n": 2,
}
DATA_DEFAULTS = {"batch_size": 128}


# ---------------------------------------------------------------------------------------------
# Config reading


def read_textproto(text):
    """Parses the text-format subset our configs use into nested dicts; a repeated field (or a
    message given twice) becomes a list. Values: numbers, true/false, quoted strings, enums."""
    text = re.sub(r"#[^\n]*", "", text)  # comments (no config string holds a '#')
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*|[-+]?[\d.]+(?:[eE][-+]?\d+)?|[{}:\[\],]',
                        text)
    pos = 0

    def value(tok):
        if tok.startswith('"'):
            return tok[1:-1]
        if tok in ("true", "false"):
            return tok == "true"
        try:
            return int(tok)
        except ValueError:
            try:
                return float(tok)
            except ValueError:
                return tok  # an enum name

    def message(end):
        nonlocal pos
        out = {}
        while pos < len(tokens) and tokens[pos] != end:
            name = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            if tokens[pos] == "{":
                pos += 1
                v = message("}")
                pos += 1
            elif tokens[pos] == "[":  # list syntax: f: [1, 2]
                pos += 1
                v = []
                while tokens[pos] != "]":
                    if tokens[pos] != ",":
                        v.append(value(tokens[pos]))
                    pos += 1
                pos += 1
            else:
                v = value(tokens[pos])
                pos += 1
            if name in out:
                prev = out[name] if isinstance(out[name], list) else [out[name]]
                out[name] = prev + (v if isinstance(v, list) else [v])
            else:
                out[name] = v
        return out

    return message(None)


def moe_blocks(num_layers, moe):
    """0-based MoE block indices (models/moe_config.cpp every_n_blocks / last_n_blocks)."""
    if moe.get("blocks"):
        b = moe["blocks"]
        return sorted(b if isinstance(b, list) else [b])
    if "last_n" in moe:
        out, b = [], num_layers - 1 if num_layers % 2 == 0 else num_layers - 2
        while b >= 0 and len(out) < moe["last_n"]:
            out.insert(0, b)
            b -= 2
        return out
    n = moe["every_n"]
    return list(range(n - 1, num_layers, n))


def expert_capacity(tokens, k, capacity_factor, num_experts):
    """models/moe_config.cpp: ceil(tokens * k * factor / E) (the product in doubles, in that
    order), at least 1, rounded up to a multiple of 4."""
    raw = float(tokens * k) * capacity_factor / float(num_experts)
    c = max(1, int(math.ceil(raw)))
    return (c + 3) // 4 * 4


# ---------------------------------------------------------------------------------------------
# Model


class Mlp(torch.nn.Module):
    """Dense MLP: fc1, tanh GELU, fc2. Kernels are [in, out]."""

    def __init__(self, d, m):
        super().__init__()
        self.fc1_kernel = torch.nn.Parameter(torch.randn(d, m) / math.sqrt(d))
        self.fc1_bias = torch.nn.Parameter(torch.zeros(m))
        self.fc2_kernel = torch.nn.Parameter(torch.randn(m, d) / math.sqrt(m))
        self.fc2_bias = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x):
        b, t, d = x.shape
        h = torch.addmm(self.fc1_bias, x.reshape(b * t, d), self.fc1_kernel)  # [B*T, M]
        h = F.gelu(h, approximate="tanh")
        return torch.addmm(self.fc2_bias, h, self.fc2_kernel).reshape(b, t, d), None


def cv_squared(v):
    """Squared coefficient of variation along the last axis (population variance)."""
    m = v.mean(-1, keepdim=True)
    return ((v - m) ** 2).mean(-1) / m.squeeze(-1) ** 2


class Moe(torch.nn.Module):
    """The V-MoE layer of models/moe_layer.cpp (see the module docstring)."""

    def __init__(self, d, m, cfg):
        super().__init__()
        e = cfg["num_experts"]
        self.cfg = cfg
        self.router_kernel = torch.nn.Parameter(torch.randn(d, e) / math.sqrt(d))

        def xavier(shape, fan_in, fan_out):  # one draw copied to every expert (identical init)
            a = math.sqrt(6.0 / (fan_in + fan_out))
            w = torch.empty(shape[1:]).uniform_(-a, a)
            return torch.nn.Parameter(w.unsqueeze(0).repeat(shape[0], 1, 1))

        self.fc1_kernel = xavier((e, d, m), d, m)
        self.fc1_bias = torch.nn.Parameter(torch.randn(e, m) * 1e-6)
        self.fc2_kernel = xavier((e, m, d), m, d)
        self.fc2_bias = torch.nn.Parameter(torch.randn(e, d) * 1e-6)

    def experts(self, buf):
        """[E, R, D] -> [E, R, D]: the stacked expert MLPs as two batched matmuls."""
        h = F.gelu(torch.baddbmm(self.fc1_bias.unsqueeze(1), buf, self.fc1_kernel),
                   approximate="tanh")
        return torch.baddbmm(self.fc2_bias.unsqueeze(1), h, self.fc2_kernel)

    @staticmethod
    def slots(experts, priority, group_size, capacity, last_capacity, num_experts, bpr):
        """Buffer row of every (token, choice) [N, k] (-1 = dropped) and the rows per expert.

        Per group: the k-major sequence of assignments in token order (BPR: by priority,
        stable, descending); each takes its expert's next free slot while the group's capacity
        lasts (core/cpu/routing.cpp). Vectorized over the groups of equal size."""
        n, k = experts.shape
        groups = -(-n // group_size)
        full = n // group_size
        rows = (groups - 1) * capacity + last_capacity
        out = torch.empty(n, k, dtype=torch.long)
        parts = [(0, full, group_size, capacity)]
        if full < groups:
            parts.append((full, 1, n - full * group_size, last_capacity))
        for g0, g, s, cap in parts:
            if g == 0:
                continue
            t0 = g0 * group_size
            ex = experts[t0:t0 + g * s].reshape(g, s, k)
            local = torch.arange(s).expand(g, s)
            if bpr:
                pr = priority[t0:t0 + g * s].reshape(g, s)
                local = torch.sort(pr, dim=1, descending=True, stable=True)[1]
                ex = torch.gather(ex, 1, local.unsqueeze(-1).expand(g, s, k))
            seq = ex.transpose(1, 2).reshape(g, k * s)  # k-major assignment sequence
            # Slot = how many earlier assignments of the group went to the same expert.
            onehot = F.one_hot(seq, num_experts)  # [G, kS, E]
            slot = torch.gather(onehot.cumsum(1), 2, seq.unsqueeze(-1)).squeeze(-1) - 1
            group = torch.arange(g0, g0 + g).unsqueeze(1)
            row = seq * rows + group * capacity + slot
            row = torch.where(slot < cap, row, torch.full_like(row, -1))  # [G, kS]
            # Back from (choice, ordered position) to (token, choice).
            token = (t0 + torch.arange(g) * s).view(g, 1, 1) + local.unsqueeze(1)  # [G, 1, S]
            choice = torch.arange(k).view(1, k, 1)
            token, choice = torch.broadcast_tensors(token, choice.expand(g, k, s))
            out[token.reshape(-1), choice.reshape(-1)] = row.reshape(-1)
        return out, rows

    def forward(self, x):
        c = self.cfg
        b, t, d = x.shape
        n, e, k = b * t, c["num_experts"], c["k"]
        xf = x.reshape(n, d)
        logits = xf @ self.router_kernel  # [N, E]
        p_clean = torch.softmax(logits, dim=-1)
        sigma = c["noise_std"] / e
        noisy = self.training and sigma > 0
        if noisy:
            noisy_logits = logits + torch.randn_like(logits) * sigma
            p = torch.softmax(noisy_logits, dim=-1)
        else:
            noisy_logits, p = logits, p_clean
        weights, chosen = torch.topk(p, k, dim=-1)  # [N, k] each, best first

        group_size = c["images_per_group"] * t
        cap = expert_capacity(min(group_size, n), k, c["capacity_factor"], e)
        last = n - (-(-n // group_size) - 1) * group_size
        last_cap = cap if last == group_size else expert_capacity(last, k, c["capacity_factor"], e)
        with torch.no_grad():
            rows_of, rows = self.slots(chosen, weights[:, 0], group_size, cap, last_cap, e,
                                       c["batch_priority"])
            kept = rows_of >= 0
            # Dispatch: every buffer row's token (empty slots: token 0, never gathered back).
            dispatch = torch.zeros(e * rows, dtype=torch.long)
            dispatch[rows_of[kept]] = torch.arange(n).unsqueeze(1).expand(n, k)[kept]
            combine = torch.where(kept, rows_of, torch.zeros_like(rows_of)).reshape(n * k)
        buf = torch.index_select(xf, 0, dispatch).reshape(e, rows, d)
        y = self.experts(buf).reshape(e * rows, d)
        picked = torch.index_select(y, 0, combine).reshape(n, k, d)
        w = weights * kept.to(weights.dtype)  # a dropped choice adds nothing
        out = (picked * w.unsqueeze(-1)).sum(1)

        aux = self.aux_loss(logits, noisy_logits, p_clean, p, chosen, group_size, sigma, noisy)
        return out.reshape(b, t, d), aux

    def aux_loss(self, logits, noisy_logits, p_clean, p, chosen, group_size, sigma, noisy):
        """Importance, load and GShard losses per group, averaged over the groups, weighted."""
        c = self.cfg
        n, e = logits.shape
        k = chosen.shape[1]
        spans = [(s0, min(group_size, n - s0)) for s0 in range(0, n, group_size)]
        full = n // group_size
        # Equal groups at once, then the shorter last one (if any): sums of per-group losses.
        chunks = [(0, full, group_size)] if full else []
        if full * group_size < n:
            chunks.append((full * group_size, 1, n - full * group_size))
        total = logits.new_zeros(())

        def per_group(v, g, s):
            return v.reshape(g, s, *v.shape[1:])

        for s0, g, s in chunks:
            sl = slice(s0, s0 + g * s)
            loss = c["importance_loss_weight"] * cv_squared(
                per_group(p_clean[sl], g, s).sum(1)).sum()
            if noisy:
                thr = torch.gather(noisy_logits[sl], 1, chosen[sl, k - 1:k])  # [gS, 1]
                prob = 0.5 * (1.0 + torch.erf((logits[sl] - thr) / (sigma * math.sqrt(2.0))))
                loss = loss + c["load_loss_weight"] * cv_squared(
                    per_group(prob, g, s).mean(1)).sum()
            if c["gshard_loss_weight"] > 0:
                frac = per_group(F.one_hot(chosen[sl, 0], e).to(p.dtype), g, s).mean(1)
                gl = (frac * per_group(p[sl], g, s).mean(1)).mean(-1) * (e * e)
                loss = loss + c["gshard_loss_weight"] * gl.sum()
            total = total + loss
        return total / len(spans)


class Block(torch.nn.Module):
    """Pre-LN encoder block: x += Attn(LN1(x)); x += FF(LN2(x)), FF an MLP or an MoE."""

    def __init__(self, d, heads, feed_forward):
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
        self.ff = feed_forward

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

    def forward(self, x):
        d = x.shape[-1]
        x = x + self.attention(F.layer_norm(x, (d,), self.ln1_scale, self.ln1_bias, LN_EPS))
        y, aux = self.ff(F.layer_norm(x, (d,), self.ln2_scale, self.ln2_bias, LN_EPS))
        return x + y, aux


class ViT(torch.nn.Module):
    """ViT / V-MoE; forward returns (logits [B, classes], summed auxiliary loss or None)."""

    def __init__(self, m, moe):
        super().__init__()
        self.p, d = m["patch_size"], m["hidden_size"]
        n = (m["image_size"] // self.p) ** 2
        patch_dim = self.p * self.p * m["channels"]
        self.embedding_kernel = torch.nn.Parameter(torch.randn(patch_dim, d) * 0.02)
        self.embedding_bias = torch.nn.Parameter(torch.zeros(d))
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embedding = torch.nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        self.moe_blocks = moe_blocks(m["num_layers"], moe) if moe is not None else []
        self.blocks = torch.nn.ModuleList(
            Block(d, m["num_heads"],
                  Moe(d, m["mlp_dim"], moe) if i in self.moe_blocks
                  else Mlp(d, m["mlp_dim"]))
            for i in range(m["num_layers"]))
        self.norm_scale = torch.nn.Parameter(torch.ones(d))
        self.norm_bias = torch.nn.Parameter(torch.zeros(d))
        r, classes = m["representation_size"], m["num_classes"]
        if r > 0:
            self.pre_logits_kernel = torch.nn.Parameter(torch.randn(d, r) / math.sqrt(d))
            self.pre_logits_bias = torch.nn.Parameter(torch.zeros(r))
        else:
            self.pre_logits_kernel = None
        # Non-zero head so that every gradient is non-trivial (as in the C++ benchmark).
        self.head_kernel = torch.nn.Parameter(torch.randn(r if r > 0 else d, classes) * 0.02)
        self.head_bias = torch.nn.Parameter(torch.full((classes,), -math.log(classes)))

    def forward(self, images):  # [B, H, W, C]
        b, h, w, c = images.shape
        p = self.p
        # Patches row-major over the grid, each flattened in (py, px, c) order: [B, N, p*p*C].
        x = images.reshape(b, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, (h // p) * (w // p), p * p * c)
        x = x @ self.embedding_kernel + self.embedding_bias  # [B, N, D]
        x = torch.cat([self.cls.expand(b, 1, -1), x], dim=1) + self.pos_embedding  # [B, T, D]
        aux = None
        for block in self.blocks:
            x, a = block(x)
            if a is not None:
                aux = a if aux is None else aux + a
        x = F.layer_norm(x, (x.shape[-1],), self.norm_scale, self.norm_bias, LN_EPS)[:, 0]
        if self.pre_logits_kernel is not None:
            x = torch.tanh(x @ self.pre_logits_kernel + self.pre_logits_bias)
        return x @ self.head_kernel + self.head_bias, aux


# ---------------------------------------------------------------------------------------------
# Self-test


def reference_slots(experts, priority, group_size, capacity, last_capacity, e, bpr):
    """Loop port of core/cpu/routing.cpp assign_slots (+ priority_order): rows [N, k]."""
    n, k = experts.shape
    groups = -(-n // group_size)
    rows = (groups - 1) * capacity + last_capacity
    out = [[-1] * k for _ in range(n)]
    ex, pr = experts.tolist(), priority.tolist()
    for g in range(groups):
        start, s = g * group_size, min(group_size, n - g * group_size)
        cap = last_capacity if g + 1 == groups else capacity
        order = list(range(s))
        if bpr:
            order = sorted(order, key=lambda i: -pr[start + i])  # stable
        used = [0] * e
        for r in range(k):
            for local in order:
                t = start + local
                x = ex[t][r]
                if used[x] < cap:
                    out[t][r] = x * rows + g * capacity + used[x]
                    used[x] += 1
    return torch.tensor(out, dtype=torch.long)


def self_check():
    """Routing and combine checks; returns the number of failures (each printed)."""
    torch.manual_seed(1)
    failures = 0

    def expect(ok, what):
        nonlocal failures
        print(("ok   " if ok else "FAIL ") + what)
        failures += 0 if ok else 1

    expect(expert_capacity(400, 2, 1.05, 8) == 108, "expert_capacity(400, 2, 1.05, 8) == 108")
    expect(expert_capacity(1000, 1, 0.4, 4) == 100, "expert_capacity(1000, 1, 0.4, 4) == 100")
    expect(expert_capacity(3, 1, 0.01, 8) == 4, "expert_capacity(3, 1, 0.01, 8) == 4")
    expect(moe_blocks(4, {"every_n": 2}) == [1, 3], "every_n 2 of 4 blocks = [1, 3]")
    expect(moe_blocks(12, {"last_n": 2}) == [9, 11], "last_n 2 of 12 blocks = [9, 11]")

    # Vectorized slots == the loop port, vanilla and BPR, tight capacity, shorter last group.
    for n, gs, e, k, cf in [(50, 16, 4, 2, 0.5), (64, 16, 8, 2, 0.6), (40, 40, 3, 3, 0.7)]:
        for bpr in (False, True):
            p = torch.softmax(torch.randn(n, e) * 2, -1)
            w, chosen = torch.topk(p, k, -1)
            cap = expert_capacity(min(gs, n), k, cf, e)
            last = n - (-(-n // gs) - 1) * gs
            last_cap = cap if last == gs else expert_capacity(last, k, cf, e)
            got, _ = Moe.slots(chosen, w[:, 0], gs, cap, last_cap, e, bpr)
            want = reference_slots(chosen, w[:, 0], gs, cap, last_cap, e, bpr)
            expect(torch.equal(got, want) and bool((want < 0).any()),
                   f"slots == loop reference (N {n}, group {gs}, E {e}, k {k}, cf {cf}, "
                   f"bpr {bpr}; {int((want < 0).sum())} dropped)")

    # No noise, capacity for everything: out[t] = sum_k w_k * expert_{e_k}(x_t), computed
    # token by token with independent expert weights; and the importance loss directly.
    b, t, d, m, e, k = 6, 5, 8, 12, 4, 2
    cfg = dict(MOE_DEFAULTS, num_experts=e, k=k, capacity_factor=float(e), images_per_group=4,
               noise_std=0.0)
    for bpr in (False, True):
        cfg["batch_priority"] = bpr
        layer = Moe(d, m, cfg).double()
        with torch.no_grad():
            for prm in (layer.fc1_kernel, layer.fc2_kernel, layer.fc1_bias, layer.fc2_bias):
                prm.normal_()
        x = torch.randn(b, t, d, dtype=torch.float64)
        out, aux = layer(x)
        xf = x.reshape(-1, d)
        probs = torch.softmax(xf @ layer.router_kernel, -1)
        w, chosen = torch.topk(probs, k, -1)
        want = torch.zeros_like(xf)
        for i in range(xf.shape[0]):
            for r in range(k):
                j = int(chosen[i, r])
                h = F.gelu(xf[i] @ layer.fc1_kernel[j] + layer.fc1_bias[j], approximate="tanh")
                want[i] += w[i, r] * (h @ layer.fc2_kernel[j] + layer.fc2_bias[j])
        expect(torch.allclose(out.reshape(-1, d), want, rtol=1e-10, atol=1e-12),
               f"MoE output == sum_k w_k * expert_k(x) token by token (bpr {bpr})")
        imp = [cv_squared(probs[s0:s0 + 20].sum(0)) for s0 in (0, 20)]  # groups of 4 x 5
        want_aux = 0.005 * (imp[0] + imp[1]) / 2
        expect(torch.allclose(aux, want_aux, rtol=1e-10), "importance loss, averaged over groups")
        (out.sum() + aux).backward()  # the gradient path through routing and combine exists
        expect(layer.router_kernel.grad is not None and
               bool(layer.fc1_kernel.grad.abs().sum() > 0), "router and expert gradients")
    return failures


# ---------------------------------------------------------------------------------------------
# Benchmark


def train_step(model, opt, images, labels):
    """One step: forward, softmax cross-entropy (+ auxiliary losses), backward, AdamW; returns
    the total loss."""
    opt.zero_grad(set_to_none=True)
    logits, aux = model(images)
    loss = F.cross_entropy(logits, labels)  # softmax xent, mean over the batch
    total = loss if aux is None else loss + aux
    total.backward()
    opt.step()
    return total


# The ATen ops that are matrix products (their self time is the BLAS / oneDNN call).
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def print_profile(step, steps):
    """Self CPU time per ATen op over `steps` steps (ms per step) to stderr, the matrix products'
    total and share of the profiled wall time: the counterpart of the kernel table of
    `vmoe bench train --profile`."""
    from torch.profiler import ProfilerActivity, profile
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall_ms = (time.perf_counter() - t0) * 1000.0 / steps
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    matmul_ms = sum(e.self_cpu_time_total for e in rows if e.key in MATMUL_OPS) / 1000.0 / steps
    print(f"profile over {steps} steps, self CPU ms per step (wall {wall_ms:.2f} ms per step, "
          f"profiler overhead included):", file=sys.stderr)
    for e in rows[:15]:
        ms = e.self_cpu_time_total / 1000.0 / steps
        print(f"  {e.key:32s} {e.count // steps:6d} calls {ms:9.2f}", file=sys.stderr)
    print(f"matrix products ({', '.join(sorted(MATMUL_OPS))}): {matmul_ms:.2f} ms per step = "
          f"{100.0 * matmul_ms / wall_ms:.1f}% of the profiled step", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description="PyTorch ViT / V-MoE training-step benchmark")
    ap.add_argument("--config", help="a vmoe config (.textproto): model and data.batch_size")
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--channels", type=int)
    ap.add_argument("--patch", type=int)
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--mlp", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--representation", type=int, help="pre-logits size, 0 = none")
    ap.add_argument("--experts", type=int, help="turns the ViT into a V-MoE (moe.num_experts)")
    ap.add_argument("--k", type=int)
    ap.add_argument("--capacity-factor", type=float)
    ap.add_argument("--images-per-group", type=int)
    ap.add_argument("--every-n", type=int)
    ap.add_argument("--batch-priority", type=int, choices=(0, 1))
    ap.add_argument("--noise-std", type=float)
    ap.add_argument("--batch", type=int, help="images per step (default data.batch_size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="run the self-test and exit")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after the timed steps, N more under torch.profiler: time per op and "
                         "the matrix products' share (the counterpart of vmoe bench --profile)")
    a = ap.parse_args()
    if a.check:
        failures = self_check()
        print(f"{failures} failed, torch {torch.__version__}")
        sys.exit(1 if failures else 0)

    cfg = {}
    if a.config:
        with open(a.config) as f:
            cfg = read_textproto(f.read())
    model_cfg = cfg.get("model", {})
    m = dict(MODEL_DEFAULTS, **{key: v for key, v in model_cfg.items() if key in MODEL_DEFAULTS})
    moe = None
    if "moe" in model_cfg or a.experts is not None:
        moe = dict(MOE_DEFAULTS, **model_cfg.get("moe", {}))
    for flag, key in [("image_size", "image_size"), ("channels", "channels"),
                      ("patch", "patch_size"), ("hidden", "hidden_size"), ("mlp", "mlp_dim"),
                      ("heads", "num_heads"), ("layers", "num_layers"),
                      ("classes", "num_classes"), ("representation", "representation_size")]:
        if getattr(a, flag) is not None:
            m[key] = getattr(a, flag)
    if moe is not None:
        for flag, key in [("experts", "num_experts"), ("k", "k"),
                          ("capacity_factor", "capacity_factor"),
                          ("images_per_group", "images_per_group"), ("every_n", "every_n"),
                          ("noise_std", "noise_std")]:
            if getattr(a, flag) is not None:
                moe[key] = getattr(a, flag)
        if a.every_n is not None:
            moe.pop("last_n", None)
            moe.pop("blocks", None)
        if a.batch_priority is not None:
            moe["batch_priority"] = bool(a.batch_priority)
    batch = a.batch or cfg.get("data", {}).get("batch_size", DATA_DEFAULTS["batch_size"])
    if m["image_size"] % m["patch_size"] or m["hidden_size"] % m["num_heads"] or a.steps < 1:
        ap.error("need image_size % patch_size == 0, hidden_size % num_heads == 0, steps >= 1")
    if moe is not None and not 1 <= moe["k"] <= moe["num_experts"]:
        ap.error(f"moe.k must be in [1, num_experts = {moe['num_experts']}], got {moe['k']}")

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ViT(m, moe)
    model.train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4
    )
    images = torch.randn(batch, m["image_size"], m["image_size"], m["channels"])
    labels = torch.arange(batch) % m["num_classes"]

    times_ms = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        total = train_step(model, opt, images, labels)
        dt = (time.perf_counter() - t0) * 1000.0
        if step >= a.warmup:
            times_ms.append(dt)
    times_ms.sort()
    median = times_ms[len(times_ms) // 2]
    if a.profile > 0:
        print_profile(lambda: train_step(model, opt, images, labels), a.profile)
    print(json.dumps({
        "impl": "torch",
        "config": cfg.get("name", "args"),
        "median_step_ms": round(median, 3),
        "images_per_s": round(batch * 1000.0 / median, 1),
        "threads": a.threads,
        "batch": batch,
        "params": sum(p.numel() for p in model.parameters()),
        "moe_blocks": model.moe_blocks,
        "min_step_ms": round(times_ms[0], 3),
        "mean_step_ms": round(sum(times_ms) / len(times_ms), 3),
        "steps": a.steps,
        "final_loss": round(float(total.detach()), 6),
        "torch_version": torch.__version__,
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
