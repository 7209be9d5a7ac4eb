#!/usr/bin/python3
"""What scripts/convert_checkpoint.py makes of guided-diffusion's README flags for every released
checkpoint (configs/checkpoints.json): the reference for the C flag parser (tests/test_pt_config.c).

    /usr/bin/python3 tests/reference/gen_flags_fixtures.py [--out FILE]   # tests/data/flags_configs.json
    /usr/bin/python3 tests/reference/gen_flags_fixtures.py --check        # regenerate and compare

Each entry: the checkpoint, whether it is a classifier, the flags as its README gives them
(MODEL_FLAGS with DIFFUSION_FLAGS, and SAMPLE_FLAGS / paths, which the parser drops; for a
classifier the model's --image_size with CLASSIFIER_FLAGS), and json.dumps(config_from_flags(...)).
Needs no PyTorch.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import convert_checkpoint as cc  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "flags_configs.json")
SAMPLE = " --batch_size 4 --num_samples 100 --timestep_respacing 250"
COMMON = "--diffusion_steps 1000 --learn_sigma True --resblock_updown True --use_scale_shift_norm True"


def unet(size, cond, ch, nrb, heads, attn="32,16,8", schedule="linear", dropout=None, fp16=True, new_order=False):
    f = "--attention_resolutions %s --class_cond %s %s --image_size %d --noise_schedule %s --num_channels %d %s " \
        "--num_res_blocks %d --use_fp16 %s" % (attn, cond, COMMON, size, schedule, ch, heads, nrb, fp16)
    if dropout is not None:
        f += " --dropout %s" % dropout
    if new_order:
        f += " --use_new_attention_order True"
    return f


def upsampler(large, small, heads, attn):
    return "--attention_resolutions %s --class_cond True %s --large_size %d --small_size %d --noise_schedule linear " \
           "--num_channels 192 %s --num_res_blocks 2 --use_fp16 True" % (attn, COMMON, large, small, heads)


def classifier(size, depth):
    return "--image_size %d --classifier_attention_resolutions 32,16,8 --classifier_depth %d --classifier_width 128 " \
           "--classifier_pool attention --classifier_resblock_updown True --classifier_use_scale_shift_norm True " \
           "--classifier_scale 1.0 --classifier_path models/%dx%d_classifier.pt" % (size, depth, size, size)


FLAGS = {
    "64x64_diffusion.pt": unet(64, True, 192, 3, "--num_head_channels 64", schedule="cosine", dropout="0.1", new_order=True) +
    " --model_path models/64x64_diffusion.pt" + SAMPLE,
    "128x128_diffusion.pt": unet(128, True, 256, 2, "--num_heads 4") + SAMPLE,
    "256x256_diffusion.pt": unet(256, True, 256, 2, "--num_head_channels 64") + SAMPLE,
    "256x256_diffusion_uncond.pt": unet(256, False, 256, 2, "--num_head_channels 64") + SAMPLE,
    "512x512_diffusion.pt": unet(512, True, 256, 2, "--num_head_channels 64", fp16=False) + SAMPLE,
    "64_256_upsampler.pt": upsampler(256, 64, "--num_heads 4", "32,16,8") + " --base_samples 64_samples.npz" + SAMPLE,
    "128_512_upsampler.pt": upsampler(512, 128, "--num_head_channels 64", "32,16") + SAMPLE,
    "64x64_classifier.pt": classifier(64, 4),
    "128x128_classifier.pt": classifier(128, 2),
    "256x256_classifier.pt": classifier(256, 2),
    "512x512_classifier.pt": classifier(512, 2),
    "256x256_classifier+0.1ECT.pt": classifier(256, 2),
    "lsun_bedroom.pt": unet(256, False, 256, 2, "--num_head_channels 64", dropout="0.1") + SAMPLE,
    "lsun_cat.pt": unet(256, False, 256, 2, "--num_head_channels 64", dropout="0.1") + SAMPLE,
    "lsun_horse.pt": unet(256, False, 256, 2, "--num_head_channels 64", dropout="0.1") + SAMPLE,
    "lsun_horse_nodropout.pt": unet(256, False, 256, 2, "--num_head_channels 64", dropout="0.0") + SAMPLE,
}


def entries():
    table = cc.known_checkpoints()
    assert sorted(table) == sorted(FLAGS), "every released checkpoint needs its flags here"
    out = []
    for name in table:
        is_cls = table[name]["config"].endswith("_classifier.json")
        cfg = cc.config_from_flags(FLAGS[name], is_cls)
        # the flags describe the released network: the same tensors as the released config
        assert cc.expected_tensors(cfg) == cc.expected_tensors(cc.released_config(table[name])), name
        out.append({"checkpoint": name, "classifier": is_cls, "flags": FLAGS[name], "config": json.dumps(cfg)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    text = json.dumps(entries(), indent=1) + "\n"
    if a.check:
        ok = open(a.out).read() == text
        print("%-4s %s" % ("OK" if ok else "FAIL", os.path.relpath(a.out, ROOT)))
        sys.exit(0 if ok else 1)
    with open(a.out, "w") as f:
        f.write(text)
    print("%s: %d entries" % (os.path.relpath(a.out, ROOT), len(FLAGS)))


if __name__ == "__main__":
    main()
