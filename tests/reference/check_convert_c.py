#!/usr/bin/python3
"""ddpm-convert (C) against scripts/convert_checkpoint.py (the reference): the same output bytes,
or the same one-line error, for generated checkpoints.

    /usr/bin/python3 tests/reference/check_convert_c.py [--build build] [--keep DIR]

Each case makes a small random network with the PyTorch reference (adm.py), saves its state
dict as guided-diffusion does (the fp16 trainer's two flat storages, or plainly, or in f16 / f64,
or with nn.DataParallel's "module." prefix), converts it with both converters under the same
options (--config / --flags / --dtype / --class-names / --no-class-names), and compares the
output files byte for byte (or, where the reference refuses, the error text after the program
name and that neither wrote a file). Needs PyTorch; not part of `make test`.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import adm  # noqa: E402
from check_released import trainer_layout  # noqa: E402

BASE = dict(image_size=16, num_channels=32, channel_mult="1,2", num_res_blocks=1, attention_resolutions="8",
            num_head_channels=32, learn_sigma=True, class_cond=True, num_classes=10, resblock_updown=True,
            use_scale_shift_norm=True, model="unet", diffusion_steps=1000, noise_schedule="linear")
CLS = dict(model="classifier", image_size=16, classifier_width=32, classifier_depth=1, classifier_channel_mult="1,2",
           classifier_attention_resolutions="8", classifier_num_head_channels=32, num_classes=10)
UNET_FLAGS = ("--attention_resolutions 8 --class_cond True --diffusion_steps 1000 --dropout 0.1 --image_size 16 "
              "--learn_sigma True --noise_schedule cosine --num_channels 32 --num_head_channels 32 --num_res_blocks 1 "
              "--resblock_updown True --use_new_attention_order True --use_fp16 True --use_scale_shift_norm True "
              "--channel_mult 1,2 --timestep_respacing 250 --num_classes 10")
SR_FLAGS = ("--attention_resolutions 16 --class_cond True --diffusion_steps 1000 --large_size 32 --small_size 16 "
            "--learn_sigma True --noise_schedule linear --num_channels 32 --num_heads 2 --num_res_blocks 1 --resblock_updown True "
            "--use_fp16 True --use_scale_shift_norm True --channel_mult 1,2 --num_classes 10")
CLS_FLAGS = ("--image_size 16 --classifier_attention_resolutions 8 --classifier_depth 1 --classifier_width 32 "
             "--classifier_pool adaptive --classifier_resblock_updown True --classifier_use_scale_shift_norm False "
             "--classifier_channel_mult 1,2 --num_classes 10 --classifier_use_fp16 True")


def typed_flags(flags):
    """The config adm.py builds for a flags string (what the checkpoint's network is)."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import convert_checkpoint as cc
    return cc.config_from_flags(flags, "--classifier_width" in flags)


CASES = [
    # name, network config, save layout, converter args
    ("unet_cfg_f32", BASE, "trainer", ["--config", "CFG"]),
    ("unet_cfg_f16", BASE, "trainer", ["--config", "CFG", "--dtype", "f16"]),
    ("unet_cfg_bf16", BASE, "plain", ["--config", "CFG", "--dtype", "bf16"]),
    ("unet_flags", "UNET_FLAGS", "trainer", ["--flags", UNET_FLAGS, "--dtype", "f16"]),
    ("sr_flags", "SR_FLAGS", "trainer", ["--flags", SR_FLAGS, "--dtype", "bf16"]),
    ("cls_flags", "CLS_FLAGS", "trainer", ["--flags", CLS_FLAGS]),
    ("cls_cfg_1000", dict(CLS, num_classes=1000), "trainer", ["--config", "CFG", "--dtype", "f16"]),
    ("unet_1000_names", dict(BASE, num_classes=1000), "trainer", ["--config", "CFG", "--dtype", "bf16"]),
    ("unet_1000_nonames", dict(BASE, num_classes=1000), "trainer", ["--config", "CFG", "--no-class-names"]),
    ("unet_names_file", BASE, "trainer", ["--config", "CFG", "--class-names", "NAMES"]),
    ("half_input_to_bf16", BASE, "half", ["--config", "CFG", "--dtype", "bf16"]),
    ("half_input_to_f32", BASE, "half", ["--config", "CFG"]),
    ("double_input_to_f16", BASE, "double", ["--config", "CFG", "--dtype", "f16"]),
    ("module_prefix", BASE, "module", ["--config", "CFG", "--dtype", "f16"]),
    ("unicode_cfg", dict(BASE, description="r\u00e9sum\u00e9 \u2603 \U0001F600 \"q\" \\ \t", dropout=1e-05,
                         extra=[1e16, 0.1, 2.5e-7, 123456789012.5, -0.0, 1e22], nested={"a": None, "b": True}),
     "trainer", ["--config", "CFG"]),
    ("m\u00f6del \u00e9", BASE, "trainer", ["--config", "CFG", "--dtype", "f16"]),
    ("wrong_config", BASE, "trainer", ["--config", "WRONG"]),
    ("64x64_diffusion", BASE, "trainer", []),          # a released name, the wrong tensors
    ("unknown_arch", dict(CLS, classifier_width=64, classifier_num_head_channels=64), "trainer", []),  # C infers
    ("bad_flag_bool", BASE, "trainer", ["--flags", "--class_cond maybe"]),
]


def save(model, layout, path):
    sd = model.state_dict()
    if layout == "trainer":
        sd = trainer_layout(sd)
    elif layout == "half":
        sd = {k: v.half() for k, v in sd.items()}
    elif layout == "double":
        sd = {k: v.double() for k, v in sd.items()}
    elif layout == "module":
        sd = {"module." + k: v for k, v in sd.items()}
    torch.save(sd, path)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stderr.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--keep")
    a = ap.parse_args()
    tool = os.path.join(ROOT, a.build, "ddpm-convert")
    tmp = a.keep or tempfile.mkdtemp()
    os.makedirs(tmp, exist_ok=True)
    names = os.path.join(tmp, "names.txt")
    with open(names, "w", encoding="utf-8") as f:
        f.write("".join("  cl\u00e4ss %d \u00a0\r\n" % i if i % 3 else "\rx%d\n\n" % i for i in range(10)))
    torch.manual_seed(0)
    bad = 0
    for name, cfg, layout, args in CASES:
        if isinstance(cfg, str):
            cfg = typed_flags(globals()[cfg])
        model = adm.init_random(adm.build_model(cfg)).eval()
        pt = os.path.join(tmp, name + ".pt")
        save(model, layout, pt)
        cfg_path, wrong = os.path.join(tmp, name + ".json"), os.path.join(tmp, name + ".wrong.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, ensure_ascii=False)
        with open(wrong, "w") as f:
            json.dump(dict(cfg, num_res_blocks=2), f)
        args = [{"CFG": cfg_path, "WRONG": wrong, "NAMES": names}.get(x, x) for x in args]
        outs = [os.path.join(tmp, name + s) for s in (".py.safetensors", ".c.safetensors")]
        for o in outs:
            if os.path.exists(o):
                os.unlink(o)
        rp, ep = run([sys.executable, os.path.join(ROOT, "scripts", "convert_checkpoint.py"), pt, "-o", outs[0], "-q"] + args)
        rc, ec = run([tool, pt, "-o", outs[1], "-q"] + args)
        if rp == 0:
            ok = rc == 0 and open(outs[0], "rb").read() == open(outs[1], "rb").read()
            what = "same %d bytes" % os.path.getsize(outs[0]) if ok else "DIFFERENT (C: %d %s)" % (rc, ec)
        elif name == "unknown_arch" and rc == 0:
            # the reference needs a config; the C converter infers one: the reference given that config
            # writes the same bytes
            import safetensors_io as st
            _, meta = st.read(outs[1])
            with open(cfg_path, "w") as f:
                f.write(meta["config"])
            rp, ep = run([sys.executable, os.path.join(ROOT, "scripts", "convert_checkpoint.py"), pt, "-o", outs[0], "-q",
                          "--config", cfg_path])
            ok = rp == 0 and open(outs[0], "rb").read() == open(outs[1], "rb").read()
            what = "C infers %s; the reference given it: %s" % (meta["config"][:60], "same bytes" if ok else ep)
        else:
            msg_p, msg_c = ep.split("\n")[-1].split(": ", 1)[-1], ec.split(": ", 1)[-1]
            ok = rc == 2 and not os.path.exists(outs[1]) and "\n" not in ec and (msg_p == msg_c or rp != 2)
            what = "both refuse: %s" % msg_c if ok else "reference: %s | C (%d): %s" % (msg_p, rc, ec)
        bad += not ok
        print("%-4s %-22s %s" % ("OK" if ok else "FAIL", name, what))
    print("%s: %d of %d cases" % ("OK" if not bad else "FAIL", len(CASES) - bad, len(CASES)))
    if not a.keep:
        shutil.rmtree(tmp)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
