#!/usr/bin/python3
"""Self-checks of the reference and of the committed fixtures.

    /usr/bin/python3 tests/reference/selftest.py [--fixtures DIR]

1. Replays every fixture the way a consumer would: config from __metadata__, weights from the
   .safetensors file, inputs from the .io file; outputs must match (rel 1e-6).
2. Legacy <-> new QKV order: permuting qkv rows (legacy row h*3d+p*d+c -> new row p*C+h*d+c)
   and flipping the flag gives the same output.
3. Mutation checks: plausible implementation mistakes (sin/cos order, QKV order, scale/shift
   halves, concat order, bilinear align_corners, pool token, softmax axis, missing attention
   scale, label embedding) must change some fixture output by more than 1e-3 relative, i.e. the
   fixtures can tell them apart.
Exits non-zero if anything fails.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adm  # noqa: E402
import safetensors_io as st  # noqa: E402
from gen_fixtures import DEFAULT_OUT, FIXTURES  # noqa: E402

FAILS = []


def report(ok, msg):
    print("%-4s %s" % ("OK" if ok else "FAIL", msg))
    if not ok:
        FAILS.append(msg)


def load_fixture(d, name):
    w, meta = st.read(os.path.join(d, name + ".safetensors"))
    io, _ = st.read(os.path.join(d, name + ".io.safetensors"))
    cfg = json.loads(meta["config"])
    model = adm.build_model(cfg).eval()
    model.load_state_dict({k: torch.from_numpy(v.float32()) for k, v in w.items()}, strict=True)
    io = {k: torch.from_numpy(v.numpy()) for k, v in io.items()}
    return cfg, model, io


def evaluate(cfg, model, io):
    kind = cfg["model"]
    if kind == "classifier":
        x = io["x"].clone().requires_grad_(True)
        logits = model(x, io["t"])
        lp = F.log_softmax(logits, dim=-1)
        (g,) = torch.autograd.grad(lp[torch.arange(x.shape[0]), io["y"]].sum(), x)
        return {"logits": logits.detach(), "grad": g}
    with torch.no_grad():
        if kind == "superres":
            return {"out": model(io["x"], io["t"], io["low_res"], io.get("y"))}
        return {"out": model(io["x"], io["t"], io.get("y"))}


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def worst_rel(outs, io):
    return max(rel(v, io[k]) for k, v in outs.items())


# ---- mutations (each returns an undo function) ----------------------------------------------

def _patch(obj, name, new):
    old = getattr(obj, name)
    setattr(obj, name, new)
    return lambda: setattr(obj, name, old)


def mut_sin_first():
    orig = adm.timestep_embedding

    def f(t, dim, max_period=10000):
        e = orig(t, dim, max_period)
        h = dim // 2
        return torch.cat([e[:, h:], e[:, :h]], dim=1)
    return _patch(adm, "timestep_embedding", f)


def mut_qkv_order():
    orig = adm.qkv_attention
    return _patch(adm, "qkv_attention", lambda qkv, h, new_order: orig(qkv, h, not new_order))


def mut_no_scale():
    orig = adm.qkv_attention

    def g(qkv, n_heads, new_order):
        # scale q and k by d^(1/4) again => effectively no 1/sqrt(d) in the logits
        n, w, length = qkv.shape
        d = w // (3 * n_heads)
        s = torch.ones(w, 1)
        if new_order:
            s[: 2 * w // 3] = d ** 0.25
        else:
            s.view(n_heads, 3, d)[:, :2] = d ** 0.25
        return orig(qkv * s, n_heads, new_order)
    return _patch(adm, "qkv_attention", g)


def mut_softmax_axis():
    def f(qkv, n_heads, new_order):
        n, width, length = qkv.shape
        d = width // (3 * n_heads)
        if new_order:
            q, k, v = (z.reshape(n * n_heads, d, length) for z in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(n * n_heads, 3 * d, length).split(d, dim=1)
        s = d ** -0.25
        w = torch.softmax(torch.einsum("bct,bcs->bts", q * s, k * s), dim=1)  # wrong axis
        return torch.einsum("bts,bcs->bct", w, v).reshape(n, n_heads * d, length)
    return _patch(adm, "qkv_attention", f)


def mut_scale_shift_swap():
    orig = adm.ResBlock.forward

    def f(self, x, emb):
        if not self.use_scale_shift_norm:
            return orig(self, x, emb)
        lin = self.emb_layers[1]
        w, b = lin.weight.data.clone(), lin.bias.data.clone()
        c = self.out_channels
        lin.weight.data = torch.cat([w[c:], w[:c]])
        lin.bias.data = torch.cat([b[c:], b[:c]])
        try:
            return orig(self, x, emb)
        finally:
            lin.weight.data, lin.bias.data = w, b
    return _patch(adm.ResBlock, "forward", f)


def mut_concat_order():
    return _patch(adm.UNetModel, "forward",
                  lambda self, x, t, y=None: _concat_swapped(self, x, t, y))


def _concat_swapped(self, x, t, y):
    emb = self.time_embed(adm.timestep_embedding(t, self.model_channels))
    if self.num_classes is not None:
        emb = emb + self.label_emb(y)
    hs, h = [], x
    for blk in self.input_blocks:
        h = blk(h, emb)
        hs.append(h)
    h = self.middle_block(h, emb)
    for blk in self.output_blocks:
        s = hs.pop()
        cat = torch.cat([s, h], dim=1)
        if s.shape[1] != h.shape[1]:
            # widths differ: reverse the channel order instead (keeps shapes valid)
            cat = torch.cat([h, s], dim=1).flip(1)
        h = blk(cat, emb)
    return self.out(h)


def mut_label_before_mlp():
    def f(self, x, t, y=None):
        te = adm.timestep_embedding(t, self.model_channels)
        emb = self.time_embed(te)
        if self.num_classes is not None:
            # label added to the MLP's first layer output instead of after the MLP
            emb = self.time_embed[2](self.time_embed[1](self.time_embed[0](te) + self.label_emb(y)))
        hs, h = [], x
        for blk in self.input_blocks:
            h = blk(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
    return _patch(adm.UNetModel, "forward", f)


def mut_bilinear_align():
    def f(self, x, t, low_res, y=None):
        up = F.interpolate(low_res, x.shape[2:], mode="bilinear", align_corners=True)
        return adm.UNetModel.forward(self, torch.cat([x, up], dim=1), t, y)
    return _patch(adm.SuperResModel, "forward", f)


def mut_pool_token_last():
    def f(self, x):
        n, c = x.shape[:2]
        x = x.reshape(n, c, -1)
        x = torch.cat([x, x.mean(dim=-1, keepdim=True)], dim=-1)  # mean token at the END
        x = x + self.positional_embedding[None]
        x = adm.qkv_attention(self.qkv_proj(x), self.num_heads, True)
        return self.c_proj(x)[:, :, -1]
    return _patch(adm.AttentionPool2d, "forward", f)


def mut_gn_eps():
    return _patch(adm.GroupNorm32, "forward",
                  lambda self, x: F.group_norm(x, 32, self.weight, self.bias, 1e-3))


def mut_gn_interleaved():
    def f(self, x):
        # channel c in group c % 32 instead of c // (C/32)
        n, c = x.shape[:2]
        k = c // 32
        perm = torch.arange(c).reshape(k, 32).t().reshape(-1)   # new position -> old channel
        inv = torch.argsort(perm)
        y = F.group_norm(x[:, perm], 32, None, None, self.eps)[:, inv]
        shape = (1, c) + (1,) * (x.dim() - 2)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)
    return _patch(adm.GroupNorm32, "forward", f)


def mut_emb_ignored_no_ss():
    orig = adm.ResBlock.forward

    def f(self, x, emb):
        if self.use_scale_shift_norm:
            return orig(self, x, emb)
        return orig(self, x, torch.zeros_like(emb))
    return _patch(adm.ResBlock, "forward", f)


MUTATIONS = [
    ("GroupNorm groups interleaved", mut_gn_interleaved),
    ("emb ignored (no scale-shift blocks)", mut_emb_ignored_no_ss),
    ("sin before cos in timestep embedding", mut_sin_first),
    ("QKV order flipped", mut_qkv_order),
    ("attention without d^-1/4 scaling", mut_no_scale),
    ("softmax over queries", mut_softmax_axis),
    ("scale/shift halves swapped", mut_scale_shift_swap),
    ("skip concatenated first", mut_concat_order),
    ("label added inside time MLP", mut_label_before_mlp),
    ("bilinear align_corners=True", mut_bilinear_align),
    ("pool mean token last", mut_pool_token_last),
    ("GroupNorm eps 1e-3", mut_gn_eps),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=DEFAULT_OUT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    names = [fx["name"] for fx in FIXTURES]
    loaded = {n: load_fixture(a.fixtures, n) for n in names}

    # 1. replay
    for n, (cfg, model, io) in loaded.items():
        e = worst_rel(evaluate(cfg, model, io), io)
        report(e <= 1e-6, "replay %-7s max rel err %.3g" % (n, e))

    # 2. legacy <-> new order equivalence on every fixture with AttentionBlocks
    for n, (cfg, model, io) in loaded.items():
        ref = evaluate(cfg, model, io)
        sd = model.state_dict()
        for mod_name, m in model.named_modules():
            if isinstance(m, adm.AttentionBlock):
                C = m.qkv.out_channels // 3
                H = m.num_heads
                d = C // H
                idx = torch.empty(3 * C, dtype=torch.long)  # new row r <- legacy row idx[r]
                for h in range(H):
                    for p in range(3):
                        for c in range(d):
                            new_row, leg_row = p * C + h * d + c, h * 3 * d + p * d + c
                            if m.new_order:   # convert new -> legacy: legacy[leg] = new[new]
                                idx[leg_row] = new_row
                            else:             # convert legacy -> new: new[new] = legacy[leg]
                                idx[new_row] = leg_row
                m.qkv.weight.data = m.qkv.weight.data[idx]
                m.qkv.bias.data = m.qkv.bias.data[idx]
                m.new_order = not m.new_order
        e = worst_rel(evaluate(cfg, model, io), ref)
        report(e <= 1e-5, "qkv row permutation + order flip equivalent on %-7s (rel %.2g)" % (n, e))
        model.load_state_dict(sd)
        for m in model.modules():
            if isinstance(m, adm.AttentionBlock):
                m.new_order = not m.new_order

    # 3. mutations
    for label, mk in MUTATIONS:
        undo = mk()
        try:
            diffs = {}
            for n, (cfg, model, io) in loaded.items():
                try:
                    diffs[n] = worst_rel(evaluate(cfg, model, io), io)
                except Exception:  # shape errors also count as detected
                    diffs[n] = math.inf
        finally:
            undo()
        best = max(diffs.values())
        report(best > 1e-3, "mutation %-38s detected: %s" % (
            label, ", ".join("%s %.2g" % (k, v) for k, v in diffs.items() if v > 1e-3) or "none"))

    print("%d failure(s)" % len(FAILS))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
