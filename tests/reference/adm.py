"""Independent PyTorch reference for OpenAI guided-diffusion's ADM networks.

Written from docs (shared spec adm-reference.md sections 1, 2, 3, 12 and docs/config.md), not from
guided-diffusion's code.  Module and parameter names reproduce guided-diffusion's state-dict keys
exactly, so `model.state_dict()` has the same names, shapes and order as a released checkpoint.

    build_model(cfg) -> UNetModel | SuperResModel | EncoderUNetModel
    init_random(model)   non-trivial random weights (no zero-initialised output layers)

Forward signatures:
    UNetModel(x, t, y=None)                  -> [N, out_channels, H, W]
    SuperResModel(x, t, low_res, y=None)     -> [N, out_channels, H, W]
    EncoderUNetModel(x, t)                   -> logits [N, num_classes]
`t` holds original (un-respaced) timesteps; it is converted to float for the embedding.

Everything is computed in the parameters' dtype (float32 for the reference); GroupNorm and the
attention softmax are computed in float32 as in guided-diffusion.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# config handling (docs/config.md)
# --------------------------------------------------------------------------------------------

UNET_DEFAULTS = {
    "image_size": 64,
    "in_channels": 3,
    "num_channels": 128,
    "num_res_blocks": 2,
    "channel_mult": "",
    "attention_resolutions": "16,8",
    "num_heads": 4,
    "num_head_channels": -1,
    "num_heads_upsample": -1,
    "use_scale_shift_norm": True,
    "resblock_updown": False,
    "use_new_attention_order": False,
    "learn_sigma": False,
    "class_cond": False,
    "num_classes": 1000,
    "null_class": False,
    "dropout": 0.0,
    "use_fp16": False,
}

CLASSIFIER_DEFAULTS = {
    "image_size": 64,
    "in_channels": 3,
    "num_classes": 1000,
    "classifier_width": 128,
    "classifier_depth": 2,
    "classifier_channel_mult": "",
    "classifier_attention_resolutions": "32,16,8",
    "classifier_num_head_channels": 64,
    "classifier_use_scale_shift_norm": True,
    "classifier_resblock_updown": True,
    "classifier_pool": "attention",
}

# channel_mult tables by image size (spec 3.2; superres 3.4 uses the non-0.5 variant at 512)
_CM_TABLE = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}
_CM_TABLE_SR = {
    512: (1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    64: (1, 2, 3, 4),
}


def _bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return bool(v)
    s = str(v).strip().lower()
    if s in ("yes", "true", "t", "y", "1"):
        return True
    if s in ("no", "false", "f", "n", "0"):
        return False
    raise ValueError("not a boolean: %r" % (v,))


def _num(v):
    f = float(v)
    return int(f) if f == int(f) else f


def _list(v):
    """'1,2,3' / [1,2,3] / '' -> tuple of numbers (ints where integral)."""
    if v is None:
        return ()
    if isinstance(v, (list, tuple)):
        return tuple(_num(x) for x in v)
    if isinstance(v, (int, float)):
        return (_num(v),)
    s = str(v).strip()
    if not s:
        return ()
    return tuple(_num(x) for x in s.split(",") if x.strip())


def resolve_channel_mult(value, image_size, superres=False):
    cm = _list(value)
    if cm:
        return cm
    table = _CM_TABLE_SR if superres else _CM_TABLE
    if image_size not in table:
        raise ValueError("no default channel_mult for image_size %d" % image_size)
    return table[image_size]


def attention_ds(resolutions, image_size):
    return tuple(image_size // int(r) for r in _list(resolutions))


def full_config(cfg):
    """cfg with defaults filled in (the model key decides which defaults)."""
    model = cfg.get("model", "unet")
    base = CLASSIFIER_DEFAULTS if model == "classifier" else UNET_DEFAULTS
    out = dict(base)
    out.update(cfg)
    out["model"] = model
    return out


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------


def _atleast_f32(x):
    """float32 for half types; float32/float64 unchanged (lets a float64 run stay float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class GroupNorm32(nn.GroupNorm):
    def __init__(self, channels):
        super().__init__(32, channels, eps=1e-5)

    def forward(self, x):
        return super().forward(_atleast_f32(x)).type(x.dtype)


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None].to(t.device)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def qkv_attention(qkv, n_heads, new_order):
    """qkv: [N, 3C, T] -> [N, C, T].  Legacy order: per head [q|k|v] blocks of d channels.
    New order: [Q|K|V] blocks of C channels, each split into heads."""
    n, width, length = qkv.shape
    assert width % (3 * n_heads) == 0
    d = width // (3 * n_heads)
    if new_order:
        q, k, v = qkv.chunk(3, dim=1)
        q = q.reshape(n * n_heads, d, length)
        k = k.reshape(n * n_heads, d, length)
        v = v.reshape(n * n_heads, d, length)
    else:
        q, k, v = qkv.reshape(n * n_heads, 3 * d, length).split(d, dim=1)
    scale = 1.0 / math.sqrt(math.sqrt(d))
    w = torch.einsum("bct,bcs->bts", q * scale, k * scale)  # [B, T(query), S(key)]
    w = torch.softmax(_atleast_f32(w), dim=-1).type(w.dtype)
    a = torch.einsum("bts,bcs->bct", w, v)
    return a.reshape(n, n_heads * d, length)


class TimestepBlock(nn.Module):
    """Marker: forward(x, emb)."""


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest x2, then (use_conv) a 3x3 conv registered as `conv`."""

    def __init__(self, channels, use_conv):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.use_conv:
            x = self.conv(x)
        return x


class Downsample(nn.Module):
    """`op` = 3x3 stride-2 pad-1 conv (use_conv) or 2x2 average pool."""

    def __init__(self, channels, use_conv):
        super().__init__()
        if use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        else:
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        return self.op(x)


class ResBlock(TimestepBlock):
    def __init__(self, channels, emb_channels, dropout, out_channels=None,
                 use_scale_shift_norm=False, up=False, down=False):
        super().__init__()
        out_channels = out_channels or channels
        self.channels = channels
        self.out_channels = out_channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(channels),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd = Upsample(channels, False)
            self.x_upd = Upsample(channels, False)
        elif down:
            self.h_upd = Downsample(channels, False)
            self.x_upd = Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels),
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        if self.updown:
            h = self.in_layers[1](self.in_layers[0](x))
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[2](h)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)
        e = e[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            for layer in self.out_layers[1:]:
                h = layer(h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    def __init__(self, channels, num_heads=1, num_head_channels=-1, use_new_attention_order=False):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            assert channels % num_head_channels == 0, (channels, num_head_channels)
            self.num_heads = channels // num_head_channels
        assert channels % self.num_heads == 0, (channels, self.num_heads)
        self.new_order = use_new_attention_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        n, c = x.shape[:2]
        xf = x.reshape(n, c, -1)
        qkv = self.qkv(self.norm(xf))
        h = qkv_attention(qkv, self.num_heads, self.new_order)
        h = self.proj_out(h)
        return (xf + h).reshape(x.shape)


class AttentionPool2d(nn.Module):
    """CLIP-style pool: mean token prepended (index 0), positional embedding, new-order QKV
    attention, output taken at token 0."""

    def __init__(self, spacial_dim, embed_dim, num_head_channels, output_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.empty(embed_dim, spacial_dim ** 2 + 1))
        nn.init.normal_(self.positional_embedding, std=embed_dim ** -0.5)
        self.qkv_proj = nn.Conv1d(embed_dim, 3 * embed_dim, 1)
        self.c_proj = nn.Conv1d(embed_dim, output_dim, 1)
        assert embed_dim % num_head_channels == 0
        self.num_heads = embed_dim // num_head_channels

    def forward(self, x):
        n, c = x.shape[:2]
        x = x.reshape(n, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)
        x = x + self.positional_embedding[None].to(x.dtype)
        x = self.qkv_proj(x)
        x = qkv_attention(x, self.num_heads, new_order=True)
        x = self.c_proj(x)
        return x[:, :, 0]


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------


def _build_encoder(self, in_channels, mc, num_res_blocks, attn_ds, dropout, channel_mult,
                   num_heads, num_head_channels, use_scale_shift_norm, resblock_updown,
                   use_new_attention_order):
    """Shared §1.7 encoder construction. Returns (final ch, ds, input_block_chans)."""
    ted = mc * 4
    ch = input_ch = int(channel_mult[0] * mc)
    self.input_blocks = nn.ModuleList(
        [TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
    chans = [ch]
    ds = 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layers = [ResBlock(ch, ted, dropout, out_channels=int(mult * mc),
                               use_scale_shift_norm=use_scale_shift_norm)]
            ch = int(mult * mc)
            if ds in attn_ds:
                layers.append(AttentionBlock(ch, num_heads=num_heads,
                                             num_head_channels=num_head_channels,
                                             use_new_attention_order=use_new_attention_order))
            self.input_blocks.append(TimestepEmbedSequential(*layers))
            chans.append(ch)
        if level != len(channel_mult) - 1:
            if resblock_updown:
                blk = ResBlock(ch, ted, dropout, out_channels=ch,
                               use_scale_shift_norm=use_scale_shift_norm, down=True)
            else:
                blk = Downsample(ch, True)
            self.input_blocks.append(TimestepEmbedSequential(blk))
            chans.append(ch)
            ds *= 2
    self.middle_block = TimestepEmbedSequential(
        ResBlock(ch, ted, dropout, use_scale_shift_norm=use_scale_shift_norm),
        AttentionBlock(ch, num_heads=num_heads, num_head_channels=num_head_channels,
                       use_new_attention_order=use_new_attention_order),
        ResBlock(ch, ted, dropout, use_scale_shift_norm=use_scale_shift_norm),
    )
    return ch, input_ch, ds, chans


class UNetModel(nn.Module):
    def __init__(self, image_size, in_channels, model_channels, out_channels, num_res_blocks,
                 attention_resolutions, dropout=0.0, channel_mult=(1, 2, 4, 8), num_classes=None,
                 num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
                 use_scale_shift_norm=False, resblock_updown=False, use_new_attention_order=False):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_classes = num_classes
        mc = model_channels
        ted = mc * 4
        # registration order: time_embed, label_emb, input_blocks, middle_block, output_blocks, out
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, ted)
        ch, input_ch, ds, chans = _build_encoder(
            self, in_channels, mc, num_res_blocks, attention_resolutions, dropout, channel_mult,
            num_heads, num_head_channels, use_scale_shift_norm, resblock_updown,
            use_new_attention_order)
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = chans.pop()
                layers = [ResBlock(ch + ich, ted, dropout, out_channels=int(mc * mult),
                                   use_scale_shift_norm=use_scale_shift_norm)]
                ch = int(mc * mult)
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, num_heads=num_heads_upsample,
                                                 num_head_channels=num_head_channels,
                                                 use_new_attention_order=use_new_attention_order))
                if level and i == num_res_blocks:
                    if resblock_updown:
                        layers.append(ResBlock(ch, ted, dropout, out_channels=ch,
                                               use_scale_shift_norm=use_scale_shift_norm, up=True))
                    else:
                        layers.append(Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(
            GroupNorm32(ch),
            nn.SiLU(),
            nn.Conv2d(input_ch, out_channels, 3, padding=1),
        )

    def forward(self, x, t, y=None):
        assert (y is not None) == (self.num_classes is not None), \
            "y must be given iff the model is class-conditional"
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(
            self.time_embed[0].weight.dtype))
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for blk in self.input_blocks:
            h = blk(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


class SuperResModel(UNetModel):
    """UNet on cat([x_t, bilinear_upsample(low_res)]) (in_channels doubled internally)."""

    def __init__(self, image_size, in_channels, *args, **kwargs):
        super().__init__(image_size, in_channels * 2, *args, **kwargs)

    def forward(self, x, t, low_res, y=None):
        h, w = x.shape[2:]
        up = F.interpolate(low_res, (h, w), mode="bilinear", align_corners=False)
        return super().forward(torch.cat([x, up], dim=1), t, y)


class EncoderUNetModel(nn.Module):
    def __init__(self, image_size, in_channels, model_channels, out_channels, num_res_blocks,
                 attention_resolutions, dropout=0.0, channel_mult=(1, 2, 4, 8), num_heads=1,
                 num_head_channels=-1, use_scale_shift_norm=False, resblock_updown=False,
                 use_new_attention_order=False, pool="adaptive"):
        super().__init__()
        self.model_channels = model_channels
        mc = model_channels
        ted = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        ch, _, ds, _ = _build_encoder(
            self, in_channels, mc, num_res_blocks, attention_resolutions, dropout, channel_mult,
            num_heads, num_head_channels, use_scale_shift_norm, resblock_updown,
            use_new_attention_order)
        self.pool = pool
        if pool == "adaptive":
            self.out = nn.Sequential(
                GroupNorm32(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)),
                nn.Conv2d(ch, out_channels, 1), nn.Flatten())
        elif pool == "attention":
            assert num_head_channels != -1
            self.out = nn.Sequential(
                GroupNorm32(ch), nn.SiLU(),
                AttentionPool2d(image_size // ds, ch, num_head_channels, out_channels))
        else:
            raise NotImplementedError("pool %r" % pool)

    def forward(self, x, t):
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(
            self.time_embed[0].weight.dtype))
        h = x
        for blk in self.input_blocks:
            h = blk(h, emb)
        h = self.middle_block(h, emb)
        return self.out(h.type(x.dtype))


# --------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------


def build_model(cfg):
    """Builds the network described by a docs/config.md config dict (defaults filled in)."""
    c = full_config(cfg)
    model = c["model"]
    image_size = int(c["image_size"])
    in_channels = int(c["in_channels"])
    if model == "classifier":
        cm = resolve_channel_mult(c["classifier_channel_mult"], image_size)
        return EncoderUNetModel(
            image_size=image_size,
            in_channels=in_channels,
            model_channels=int(c["classifier_width"]),
            out_channels=int(c["num_classes"]),
            num_res_blocks=int(c["classifier_depth"]),
            attention_resolutions=attention_ds(c["classifier_attention_resolutions"], image_size),
            channel_mult=cm,
            num_heads=1,
            num_head_channels=int(c["classifier_num_head_channels"]),
            use_scale_shift_norm=_bool(c["classifier_use_scale_shift_norm"]),
            resblock_updown=_bool(c["classifier_resblock_updown"]),
            use_new_attention_order=False,
            pool=str(c["classifier_pool"]),
        )
    if model not in ("unet", "superres"):
        raise ValueError("unknown model %r" % model)
    superres = model == "superres"
    cm = resolve_channel_mult(c["channel_mult"], image_size, superres=superres)
    num_classes = None
    if _bool(c["class_cond"]):
        num_classes = int(c["num_classes"]) + (1 if _bool(c["null_class"]) else 0)
    cls = SuperResModel if superres else UNetModel
    return cls(
        image_size,
        in_channels,
        model_channels=int(c["num_channels"]),
        out_channels=in_channels * (2 if _bool(c["learn_sigma"]) else 1),
        num_res_blocks=int(c["num_res_blocks"]),
        attention_resolutions=attention_ds(c["attention_resolutions"], image_size),
        dropout=float(c["dropout"]),
        channel_mult=cm,
        num_classes=num_classes,
        num_heads=int(c["num_heads"]),
        num_head_channels=int(c["num_head_channels"]),
        num_heads_upsample=int(c["num_heads_upsample"]),
        use_scale_shift_norm=_bool(c["use_scale_shift_norm"]),
        resblock_updown=_bool(c["resblock_updown"]),
        use_new_attention_order=_bool(c["use_new_attention_order"]),
    )


@torch.no_grad()
def init_random(model):
    """Random, non-trivial weights for every parameter (uses the global torch RNG, in
    state-dict order): conv/linear weights N(0, 1/fan_in), biases N(0, 0.1^2), GroupNorm
    weight 1 + N(0, 0.1^2), embeddings N(0, 1), positional embedding N(0, 1/C)."""
    owner = {}
    for mname, m in model.named_modules():
        for pname, _ in m.named_parameters(recurse=False):
            owner[(mname + "." + pname) if mname else pname] = m
    for name, p in model.named_parameters():
        m = owner[name]
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(m, nn.GroupNorm):
            if leaf == "weight":
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            else:
                p.copy_(0.1 * torch.randn(p.shape))
        elif isinstance(m, nn.Embedding):
            p.copy_(torch.randn(p.shape))
        elif isinstance(m, AttentionPool2d) and leaf == "positional_embedding":
            p.copy_(torch.randn(p.shape) * p.shape[0] ** -0.5)
        elif leaf == "weight":
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape) * fan_in ** -0.5)
        elif leaf == "bias":
            p.copy_(0.1 * torch.randn(p.shape))
        else:
            raise RuntimeError("no init rule for " + name)
    return model


def count(model):
    sd = model.state_dict()
    return sum(v.numel() for v in sd.values()), len(sd)


if __name__ == "__main__":
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(description="print parameter count / keys of a config")
    ap.add_argument("config", help="JSON file")
    ap.add_argument("--keys", action="store_true", help="list state-dict keys and shapes")
    a = ap.parse_args()
    with open(a.config) as f:
        m = build_model(json.load(f))
    if a.keys:
        for k, v in m.state_dict().items():
            print(k, list(v.shape))
    n, k = count(m)
    print("%d parameters, %d tensors" % (n, k), file=sys.stderr if a.keys else sys.stdout)
