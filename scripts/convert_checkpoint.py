#!/usr/bin/python3
"""Converts guided-diffusion / ED-DPM `.pt` checkpoints to safetensors files the C tools load.

The reference for the C converter, `ddpm-convert` (src/nn/convert.c), which writes the same bytes
and needs no Python: users want that one (or no conversion at all: the tools read a .pt directly).
This script stays for the tests: tests/reference/check_convert_c.py compares the two,
gen_convert_fixtures.py / gen_flags_fixtures.py / check_released.py use it.

    python3 scripts/convert_checkpoint.py CKPT.pt [CKPT.pt ...] [-d DIR | -o OUT.safetensors]
        [--dtype f32|f16|bf16] [--config CONFIG.json | --flags "GUIDED-DIFFUSION FLAGS"]
        [--class-names FILE | --no-class-names]
    python3 scripts/convert_checkpoint.py --list

A checkpoint is `torch.save(state_dict)`: guided-diffusion's parameter names, float32, and for
models trained in fp16 every tensor a view into one of two flat storages (the trainer's master
parameters), at its own offset. Each tensor is read through its view, so shared storages need no
special care, and written in the state dict's order, contiguous, in the chosen dtype.

The network's config (docs/config.md) is embedded in the output's metadata, so the file is all
the C tools need. It comes from, in order: --config or --flags; the released checkpoint of the
same file name (configs/checkpoints.json); or the one released architecture whose tensor names
and shapes the checkpoint has. Whatever its source, the checkpoint must hold exactly the tensors
that config's network has, with the same shapes, or nothing is written. ImageNet models (1000
labels) get the class names of configs/imagenet_classes.txt, so `ddpm-sample --class "golden
retriever"` works.

Output: OUT.safetensors (written to a temporary name, then renamed), by default
models/<checkpoint name>.safetensors, where `ddpm-sample --preset` looks. Errors: one line on
stderr, exit status 2, nothing written. Needs PyTorch (Debian: python3-torch).
"""
import argparse
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


class ConvertError(Exception):
    pass


# ---- configs (docs/config.md) and the tensors their networks have ------------------------------

UNET_DEFAULTS = {
    "image_size": 64, "in_channels": 3, "num_channels": 128, "num_res_blocks": 2, "channel_mult": "",
    "attention_resolutions": "16,8", "num_heads": 4, "num_head_channels": -1, "num_heads_upsample": -1,
    "use_scale_shift_norm": True, "resblock_updown": False, "use_new_attention_order": False,
    "learn_sigma": False, "class_cond": False, "num_classes": 1000, "null_class": False,
}
CLASSIFIER_DEFAULTS = {
    "image_size": 64, "in_channels": 3, "num_classes": 1000, "classifier_width": 128, "classifier_depth": 2,
    "classifier_channel_mult": "", "classifier_attention_resolutions": "32,16,8",
    "classifier_num_head_channels": 64, "classifier_use_scale_shift_norm": True,
    "classifier_resblock_updown": True, "classifier_pool": "attention",
}
# guided-diffusion's channel_mult by image size; its upsamplers use the second table
CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
CHANNEL_MULT_SR = {512: (1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4)}


def to_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    s = str(v).strip().lower()
    if s in ("yes", "true", "t", "y", "1"):
        return True
    if s in ("no", "false", "f", "n", "0"):
        return False
    raise ConvertError("not a boolean: %r" % (v,))


def num_list(v):
    if v is None:
        return ()
    if isinstance(v, (list, tuple)):
        return tuple(float(x) for x in v)
    if isinstance(v, (int, float)):
        return (float(v),)
    return tuple(float(x) for x in str(v).split(",") if x.strip())


def filled(cfg):
    kind = cfg.get("model")
    if kind not in ("unet", "superres", "classifier"):
        raise ConvertError("config: \"model\" must be unet, superres or classifier, not %r" % (kind,))
    out = dict(CLASSIFIER_DEFAULTS if kind == "classifier" else UNET_DEFAULTS)
    out.update(cfg)
    return out


def expected_tensors(cfg):
    """[(name, shape)] of the network a config describes (guided-diffusion's construction rule,
    adm-reference.md 1.7 and 12), in state-dict order."""
    c = filled(cfg)
    kind = c["model"]
    cls = kind == "classifier"
    S, cin = int(c["image_size"]), int(c["in_channels"])
    if cls:
        mc, nrb = int(c["classifier_width"]), int(c["classifier_depth"])
        mult, attn = c["classifier_channel_mult"], c["classifier_attention_resolutions"]
        ssn, updown = to_bool(c["classifier_use_scale_shift_norm"]), to_bool(c["classifier_resblock_updown"])
    else:
        mc, nrb = int(c["num_channels"]), int(c["num_res_blocks"])
        mult, attn = c["channel_mult"], c["attention_resolutions"]
        ssn, updown = to_bool(c["use_scale_shift_norm"]), to_bool(c["resblock_updown"])
    cm = num_list(mult) or (CHANNEL_MULT_SR if kind == "superres" else CHANNEL_MULT).get(S)
    if not cm:
        raise ConvertError("config: no default channel_mult for image_size %d" % S)
    attn_ds = {S // int(r) for r in num_list(attn)}
    E = 4 * mc
    out = []

    def add(name, *shape):
        out.append((name, tuple(int(s) for s in shape)))

    def resblock(p, ci, co):
        add(p + ".in_layers.0.weight", ci), add(p + ".in_layers.0.bias", ci)
        add(p + ".in_layers.2.weight", co, ci, 3, 3), add(p + ".in_layers.2.bias", co)
        add(p + ".emb_layers.1.weight", 2 * co if ssn else co, E), add(p + ".emb_layers.1.bias", 2 * co if ssn else co)
        add(p + ".out_layers.0.weight", co), add(p + ".out_layers.0.bias", co)
        add(p + ".out_layers.3.weight", co, co, 3, 3), add(p + ".out_layers.3.bias", co)
        if ci != co:
            add(p + ".skip_connection.weight", co, ci, 1, 1), add(p + ".skip_connection.bias", co)

    def attention(p, ch):
        add(p + ".norm.weight", ch), add(p + ".norm.bias", ch)
        add(p + ".qkv.weight", 3 * ch, ch, 1), add(p + ".qkv.bias", 3 * ch)
        add(p + ".proj_out.weight", ch, ch, 1), add(p + ".proj_out.bias", ch)

    add("time_embed.0.weight", E, mc), add("time_embed.0.bias", E)
    add("time_embed.2.weight", E, E), add("time_embed.2.bias", E)
    if not cls and to_bool(c["class_cond"]):
        add("label_emb.weight", int(c["num_classes"]) + (1 if to_bool(c["null_class"]) else 0), E)
    ch = input_ch = int(cm[0] * mc)
    add("input_blocks.0.0.weight", ch, 2 * cin if kind == "superres" else cin, 3, 3)
    add("input_blocks.0.0.bias", ch)
    chans, ds, b = [ch], 1, 1
    for level, m in enumerate(cm):
        for _ in range(nrb):
            resblock("input_blocks.%d.0" % b, ch, int(m * mc))
            ch = int(m * mc)
            if ds in attn_ds:
                attention("input_blocks.%d.1" % b, ch)
            chans.append(ch)
            b += 1
        if level != len(cm) - 1:
            if updown:
                resblock("input_blocks.%d.0" % b, ch, ch)
            else:
                add("input_blocks.%d.0.op.weight" % b, ch, ch, 3, 3), add("input_blocks.%d.0.op.bias" % b, ch)
            chans.append(ch)
            ds *= 2
            b += 1
    resblock("middle_block.0", ch, ch)
    attention("middle_block.1", ch)
    resblock("middle_block.2", ch, ch)
    if cls:
        K = int(c["num_classes"])
        add("out.0.weight", ch), add("out.0.bias", ch)
        if c["classifier_pool"] == "attention":
            add("out.2.positional_embedding", ch, (S // ds) ** 2 + 1)
            add("out.2.qkv_proj.weight", 3 * ch, ch, 1), add("out.2.qkv_proj.bias", 3 * ch)
            add("out.2.c_proj.weight", K, ch, 1), add("out.2.c_proj.bias", K)
        elif c["classifier_pool"] == "adaptive":
            add("out.3.weight", K, ch, 1, 1), add("out.3.bias", K)
        else:
            raise ConvertError("config: classifier_pool %r not supported" % (c["classifier_pool"],))
        return out
    b = 0
    for level, m in reversed(list(enumerate(cm))):
        for i in range(nrb + 1):
            ich = chans.pop()
            resblock("output_blocks.%d.0" % b, ch + ich, int(mc * m))
            ch = int(mc * m)
            j = 1
            if ds in attn_ds:
                attention("output_blocks.%d.1" % b, ch)
                j = 2
            if level and i == nrb:
                if updown:
                    resblock("output_blocks.%d.%d" % (b, j), ch, ch)
                else:
                    add("output_blocks.%d.%d.conv.weight" % (b, j), ch, ch, 3, 3)
                    add("output_blocks.%d.%d.conv.bias" % (b, j), ch)
                ds //= 2
            b += 1
    out_ch = cin * (2 if to_bool(c["learn_sigma"]) else 1)
    add("out.0.weight", ch), add("out.0.bias", ch)
    add("out.2.weight", out_ch, input_ch, 3, 3), add("out.2.bias", out_ch)
    return out


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConvertError("%s: %s" % (path, e))


def known_checkpoints():
    """configs/checkpoints.json: released file name -> {config, set, class_names, source}."""
    table = load_json(os.path.join(CONFIGS, "checkpoints.json"))
    return {k: v for k, v in table.items() if not k.startswith("_")}


def released_config(entry):
    cfg = load_json(os.path.join(CONFIGS, entry["config"]))
    cfg.update(entry.get("set", {}))
    return cfg


# guided-diffusion flag -> config key; the flags that only matter for training are dropped
_DROP = {"use_checkpoint", "timestep_respacing", "use_kl", "predict_xstart", "rescale_timesteps",
         "rescale_learned_sigmas", "classifier_use_fp16", "batch_size", "num_samples", "model_path",
         "classifier_path", "classifier_scale", "use_ddim", "clip_denoised", "base_samples", "lr",
         "weight_decay", "microbatch", "log_interval", "save_interval", "iterations", "anneal_lr",
         "noised", "schedule_sampler", "resume_checkpoint", "use_entropy_scale"}
_INT = {"image_size", "num_channels", "num_res_blocks", "num_heads", "num_heads_upsample", "num_head_channels",
        "diffusion_steps", "large_size", "small_size", "classifier_width", "classifier_depth", "in_channels"}
_BOOL = {"class_cond", "use_scale_shift_norm", "resblock_updown", "use_fp16", "use_new_attention_order",
         "learn_sigma", "sigma_small", "classifier_use_scale_shift_norm", "classifier_resblock_updown"}


def config_from_flags(flags, classifier):
    """A config from guided-diffusion's command-line flags (README's MODEL_FLAGS, or
    CLASSIFIER_FLAGS plus --image_size for a classifier)."""
    words = flags.split()
    vals = {}
    i = 0
    while i < len(words):
        w = words[i]
        if not w.startswith("--") or i + 1 >= len(words):
            raise ConvertError("--flags: expected '--name value' pairs, got %r" % w)
        vals[w[2:].replace("-", "_")] = words[i + 1]
        i += 2
    cfg = {}
    for k, v in vals.items():
        if k in _DROP:
            continue
        if k in _INT:
            v = int(v)
        elif k in _BOOL:
            v = to_bool(v)
        elif k == "dropout":
            v = float(v)
        cfg[k] = v
    if classifier:
        keep = {k: v for k, v in cfg.items() if k.startswith("classifier_") or k in ("image_size", "in_channels")}
        keep["model"] = "classifier"
        return keep
    cfg = {k: v for k, v in cfg.items() if not k.startswith("classifier_")}
    if "large_size" in cfg:  # super_res_sample.py's flags
        cfg["model"] = "superres"
        cfg["image_size"] = cfg.pop("large_size")
        cfg.setdefault("small_size", cfg["image_size"] // 4)
    else:
        cfg["model"] = "unet"
    cfg.setdefault("diffusion_steps", 1000)
    cfg.setdefault("noise_schedule", "linear")
    return cfg


# ---- checkpoint reading ------------------------------------------------------------------------

def load_state_dict(path):
    import torch
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)  # no code runs from the file
        except TypeError:  # torch < 1.13
            obj = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many types for a bad file
        why = " ".join(str(e).split()) or type(e).__name__
        why = why.rsplit("error: ", 1)[-1]  # weights_only's message ends with the unpickler's reason
        raise ConvertError("%s: not a PyTorch checkpoint of tensors (%s)" % (path, why))
    # wrappers some training scripts add around the state dict
    for key in ("state_dict", "model", "ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict) and len(obj) <= 4:
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise ConvertError("%s: holds a %s, not a state dict" % (path, type(obj).__name__))
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise ConvertError("%s: entry %r is a %s, not a tensor" % (path, k, type(v).__name__))
        if not v.is_floating_point():
            raise ConvertError("%s: tensor %r has dtype %s; weights are floating point" % (path, k, v.dtype))
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    return sd


def mismatch(sd, want):
    """First difference between a state dict and a network's tensors, or None."""
    names = dict(want)
    for k, v in sd.items():
        if k not in names:
            return "unexpected tensor '%s'" % k
        if tuple(v.shape) != names[k]:
            return "tensor '%s' has shape %s; the config needs %s" % (k, list(v.shape), list(names[k]))
    for k, _ in want:
        if k not in sd:
            return "missing tensor '%s'" % k
    return None


def choose_config(path, sd, args):
    """(config, where it came from)."""
    base = os.path.basename(path)
    if args.config:
        return load_json(args.config), args.config
    if args.flags:
        classifier = not any(k.startswith("output_blocks.") for k in sd)
        return config_from_flags(args.flags, classifier), "--flags"
    table = known_checkpoints()
    if base in table:
        return released_config(table[base]), "%s (configs/%s)" % (base, table[base]["config"])
    for name, entry in table.items():
        cfg = released_config(entry)
        if mismatch(sd, expected_tensors(cfg)) is None:
            return cfg, "the architecture of %s (configs/%s; matched by tensor shapes)" % (name, entry["config"])
    raise ConvertError("%s: not a released checkpoint name, and its tensors match no released architecture; "
                       "pass --config CONFIG.json or --flags \"the model's guided-diffusion flags\"" % path)


def class_names_for(cfg, path, args):
    if args.no_class_names:
        return None
    if args.class_names:
        src = args.class_names
    else:
        labelled = cfg.get("model") == "classifier" or to_bool(filled(cfg).get("class_cond", False))
        if not labelled or int(filled(cfg)["num_classes"]) != 1000 or "class_names" in cfg:
            return None
        src = os.path.join(CONFIGS, "imagenet_classes.txt")
    try:
        with open(src, encoding="utf-8") as f:
            names = [ln.strip() for ln in f if ln.strip()]
    except OSError as e:
        raise ConvertError("%s: %s" % (src, e.strerror))
    if len(names) != int(filled(cfg)["num_classes"]):
        raise ConvertError("%s has %d names; the model has %d classes" % (src, len(names), int(filled(cfg)["num_classes"])))
    return names


# ---- safetensors writing -----------------------------------------------------------------------

def tensor_bytes(t, dtype):
    """Little-endian bytes of one tensor in the output dtype (read through its view, so its
    storage may be shared with others at other offsets)."""
    import torch
    t = t.detach()
    if dtype == "F16":
        t = t.to(torch.float16)
    elif dtype == "BF16":
        t = t.to(torch.bfloat16).view(torch.int16)
    else:
        t = t.to(torch.float32)
    a = t.contiguous().numpy()
    if sys.byteorder != "little":
        a = a.byteswap()
    return a.tobytes()


def write_safetensors(out, sd, dtype, metadata):
    size = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    header = {"__metadata__": metadata}
    off = 0
    for k, v in sd.items():
        n = v.numel() * size
        header[k] = {"dtype": dtype, "shape": list(v.shape), "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-(8 + len(hj))) % 8)  # data starts 8-aligned, so the C loader can map it in place
    tmp = "%s.tmp.%d" % (out, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hj)))
            f.write(hj)
            for k, v in sd.items():
                f.write(tensor_bytes(v, dtype))
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return 8 + len(hj) + off


def convert(path, out, args):
    if not os.path.isfile(path):
        raise ConvertError("%s: no such file" % path)
    sd = load_state_dict(path)
    cfg, source = choose_config(path, sd, args)
    try:
        want = expected_tensors(cfg)
    except (KeyError, ValueError, ZeroDivisionError) as e:
        raise ConvertError("config from %s is not valid: %s" % (source, e))
    bad = mismatch(sd, want)
    if bad:
        raise ConvertError("%s does not fit the config from %s: %s" % (path, source, bad))
    names = class_names_for(cfg, path, args)
    if names:
        cfg = dict(cfg, class_names=names)
    dtype = {"f32": "F32", "f16": "F16", "bf16": "BF16"}[args.dtype]
    meta = {"config": json.dumps(cfg), "source": os.path.basename(path), "converter": "scripts/convert_checkpoint.py"}
    nbytes = write_safetensors(out, sd, dtype, meta)
    return cfg, source, sum(v.numel() for v in sd.values()), len(sd), nbytes


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert guided-diffusion / ED-DPM .pt checkpoints to safetensors for the C tools.",
        epilog="example: python3 scripts/convert_checkpoint.py ~/Downloads/256x256_diffusion.pt "
               "~/Downloads/256x256_classifier.pt   (writes models/256x256_*.safetensors)")
    ap.add_argument("checkpoints", nargs="*", metavar="CKPT.pt")
    ap.add_argument("-o", "--output", help="output file (one checkpoint only)")
    ap.add_argument("-d", "--dir", help="output directory (default: models/ of this repository)")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32",
                    help="storage dtype (default f32, as released; f16/bf16 halve the file and the memory "
                         "the weights take while sampling)")
    ap.add_argument("--config", help="model config JSON (docs/config.md) instead of the released one")
    ap.add_argument("--flags", help="the model's guided-diffusion flags, e.g. \"$MODEL_FLAGS\" from its README")
    ap.add_argument("--class-names", help="file with one class name per line to embed")
    ap.add_argument("--no-class-names", action="store_true", help="embed no class names")
    ap.add_argument("--list", action="store_true", help="list the released checkpoints this script knows")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    prog = "convert_checkpoint.py"
    try:
        if args.list:
            for name, e in known_checkpoints().items():
                print("%-32s configs/%-28s %s" % (name, e["config"], e.get("source", "")))
            return 0
        if not args.checkpoints:
            raise ConvertError("no checkpoint given (see --help)")
        if args.output and len(args.checkpoints) > 1:
            raise ConvertError("-o names one output; use -d DIR for several checkpoints")
        if args.config and args.flags:
            raise ConvertError("--config and --flags both given")
        outdir = args.dir or os.path.join(ROOT, "models")
        jobs = []
        for p in args.checkpoints:
            stem = os.path.splitext(os.path.basename(p))[0]
            out = args.output or os.path.join(outdir, stem + ".safetensors")
            d = os.path.dirname(os.path.abspath(out))
            if not os.path.isdir(d):
                raise ConvertError("output directory %s does not exist" % d)
            if os.path.abspath(out) == os.path.abspath(p):
                raise ConvertError("%s: output would overwrite the input" % p)
            jobs.append((p, out))
        for p, out in jobs:
            cfg, source, params, ntensors, nbytes = convert(p, out, args)
            if not args.quiet:
                print("%s -> %s: %s %s, %d tensors, %d parameters, %s, config from %s%s" % (
                    p, out, cfg["model"], "%dx%d" % (cfg.get("image_size", 64), cfg.get("image_size", 64)),
                    ntensors, params, args.dtype, source,
                    ", %d class names" % len(cfg["class_names"]) if "class_names" in cfg else ""))
    except ConvertError as e:
        print("%s: %s" % (prog, str(e).replace("\n", " ")), file=sys.stderr)
        return 2
    except MemoryError:
        print("%s: out of memory" % prog, file=sys.stderr)
        return 2
    except OSError as e:
        print("%s: %s" % (prog, e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
