/* Released-style .pt checkpoints used directly and converted without Python: a .pt written here
 * (torch.save's zip layout: data.pkl with _rebuild_tensor_v2 views into one flat storage per group
 * as guided-diffusion's fp16 trainer saves, or one storage per tensor) loads through
 * gd_model_load_opts, ddpm-forward and ddpm-sample --preset with outputs bit-identical to its
 * safetensors twin; ddpm-convert writes the Python script's bytes (the conv_* fixtures, made by
 * scripts/convert_checkpoint.py, come back byte for byte) and refuses bad input with one line.
 * tests/reference/check_convert_c.py compares the two converters on torch-saved checkpoints. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "gd_image.h"
#include "gd_model.h"
#include "gd_pt.h"
#include "gd_safetensors.h"
#include "pt_zip.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONVERT "ddpm-convert"

/* a small class-conditional U-Net (its flags and the same as a config) and an inferable classifier */
static const char UNET_FLAGS[] = "--image_size 16 --num_channels 32 --channel_mult 1,2 --num_res_blocks 1 --attention_resolutions 8 "
                                 "--num_head_channels 32 --learn_sigma True --class_cond True --num_classes 10 --resblock_updown True "
                                 "--use_scale_shift_norm True --diffusion_steps 1000 --noise_schedule linear --use_fp16 True";
static const char CLS_CONFIG[] = "{\"model\": \"classifier\", \"image_size\": 16, \"in_channels\": 3, \"num_classes\": 10, "
                                 "\"classifier_width\": 64, \"classifier_depth\": 1, \"classifier_channel_mult\": \"1,2\", "
                                 "\"classifier_attention_resolutions\": \"8\", \"classifier_num_head_channels\": 64}";

/* ---- a torch.save writer (pickle protocol 2, zip) -------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 256;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void op(bytes *b, int c) {
    uint8_t x = (uint8_t)c;
    put(b, &x, 1);
}
static void pk_str(bytes *b, const char *s) {
    uint32_t n = (uint32_t)strlen(s);
    op(b, 'X');
    uint8_t le[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    put(b, le, 4), put(b, s, n);
}
static void pk_int(bytes *b, int64_t v) {
    uint32_t u = (uint32_t)(int32_t)v;
    op(b, 'J');
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    put(b, le, 4);
}
static void pk_global(bytes *b, const char *mod, const char *name) {
    op(b, 'c'), put(b, mod, strlen(mod)), op(b, '\n'), put(b, name, strlen(name)), op(b, '\n');
}

/* The safetensors file's F32 tensors as torch.save(state_dict) writes them: trainer = the fp16
 * trainer's two flat storages (<= 1-D, >= 2-D) with every tensor a view at its offset; else one
 * storage per tensor. prefix: prepended to every name ("module." as nn.DataParallel). */
static int write_pt(const char *path, const gd_st_file *f, int trainer, const char *prefix) {
    int n = gd_st_count(f), ns = trainer ? 2 : n;
    int64_t *off = calloc((size_t)n, sizeof *off), *sn = calloc((size_t)ns, sizeof *sn);
    int *sid = calloc((size_t)n, sizeof *sid);
    for (int i = 0; i < n; i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        sid[i] = trainer ? t->ndim > 1 : i;
        off[i] = sn[sid[i]];
        sn[sid[i]] += t->numel;
    }
    bytes pk = {0};
    op(&pk, 0x80), op(&pk, 2);
    pk_global(&pk, "collections", "OrderedDict"), op(&pk, ')'), op(&pk, 'R'), op(&pk, '(');
    for (int i = 0; i < n; i++) {
        const gd_st_tensor *t = gd_st_get(f, i);
        char name[300], key[16];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        snprintf(key, sizeof key, "%d", sid[i]);
        pk_str(&pk, name);
        pk_global(&pk, "torch._utils", "_rebuild_tensor_v2");
        op(&pk, '('), op(&pk, '('), pk_str(&pk, "storage"), pk_global(&pk, "torch", "FloatStorage");
        pk_str(&pk, key), pk_str(&pk, "cpu"), pk_int(&pk, sn[sid[i]]), op(&pk, 't'), op(&pk, 'Q');
        pk_int(&pk, off[i]);
        op(&pk, '(');
        for (int d = 0; d < t->ndim; d++) pk_int(&pk, t->shape[d]);
        op(&pk, 't'), op(&pk, '(');
        for (int d = 0; d < t->ndim; d++) {
            int64_t st = 1;
            for (int k = d + 1; k < t->ndim; k++) st *= t->shape[k];
            pk_int(&pk, st);
        }
        op(&pk, 't'), op(&pk, 0x89);
        pk_global(&pk, "collections", "OrderedDict"), op(&pk, ')'), op(&pk, 'R');
        op(&pk, 't'), op(&pk, 'R');
    }
    op(&pk, 'u'), op(&pk, '.');
    /* the storages' bytes */
    bytes *sb = calloc((size_t)ns, sizeof *sb);
    for (int i = 0; i < n; i++) put(&sb[sid[i]], gd_st_get(f, i)->data, gd_st_get(f, i)->nbytes);
    ptz_member *m = calloc((size_t)ns + 2, sizeof *m);
    char (*names)[32] = calloc((size_t)ns, sizeof *names);
    m[0] = (ptz_member){"archive/data.pkl", pk.p, pk.n};
    for (int s = 0; s < ns; s++) {
        snprintf(names[s], sizeof names[s], "archive/data/%d", s);
        m[s + 1] = (ptz_member){names[s], sb[s].p, sb[s].n};
    }
    m[ns + 1] = (ptz_member){"archive/version", (const uint8_t *)"3\n", 2};
    size_t len;
    uint8_t *zip = ptz_build(m, ns + 2, &len);
    int rc = zip ? cli_write_file(path, zip, len) : -1;
    for (int s = 0; s < ns; s++) free(sb[s].p);
    free(sb), free(m), free(names), free(zip), free(pk.p), free(off), free(sn), free(sid);
    return rc;
}

/* Random weights for a config (JSON), saved as safetensors (config embedded) and as a .pt. */
static int make_model(const char *cfg_json, const char *st_path, const char *pt_path, int trainer, const char *prefix) {
    gd_config cfg;
    char err[512];
    if (gd_config_parse(cfg_json, &cfg, err, sizeof err)) {
        CHECK(0, "%s", err);
        return -1;
    }
    gd_model *m = gd_model_random(&cfg, 42);
    gd_net *net = gd_net_new(m, 1, 0, err, sizeof err); /* builds the graph: every weight made */
    int rc = net ? gd_model_save(m, st_path, err, sizeof err) : -1;
    CHECK(!rc, "%s", err);
    gd_st_file *f = rc ? NULL : gd_st_open(st_path, err, sizeof err);
    if (f) rc = write_pt(pt_path, f, trainer, prefix);
    CHECK(f && !rc, "writing %s", pt_path);
    gd_st_close(f);
    gd_net_free(net);
    gd_model_free(m);
    gd_config_free(&cfg);
    return rc;
}

/* A network's output (and input gradient for classifiers) on fixed inputs; malloc'ed floats. */
static float *run(gd_model *m, size_t *count) {
    char err[512];
    const gd_config *c = gd_model_config(m);
    gd_net *net = gd_net_new(m, 2, c->kind == GD_NET_CLASSIFIER, err, sizeof err);
    CHECK(net, "%s", err);
    if (!net) return NULL;
    int64_t nx = 2LL * c->in_channels * c->image_size * c->image_size;
    for (int64_t i = 0; i < nx; i++) gd_net_x(net)[i] = (float)((i * 7919) % 2001) / 1000.0f - 1.0f;
    gd_net_t(net)[0] = 999, gd_net_t(net)[1] = 37;
    if (gd_net_y(net)) gd_net_y(net)[0] = 3, gd_net_y(net)[1] = 7;
    const gd_tensor *o = gd_net_output(net);
    int64_t no = 1;
    int ok = !gd_net_forward(net, err, sizeof err);
    for (int d = 0; d < o->ndim; d++) no *= o->ne[d];
    float *out = malloc(sizeof(float) * (size_t)(no + nx));
    memcpy(out, o->data, sizeof(float) * (size_t)no);
    *count = (size_t)no;
    if (ok && c->kind == GD_NET_CLASSIFIER) ok = !gd_net_input_grad(net, out + no, err, sizeof err), *count += (size_t)nx;
    CHECK(ok, "%s", err);
    gd_net_free(net);
    return out;
}

static int same_outputs(gd_model *a, gd_model *b) {
    size_t na = 0, nb = 0;
    float *x = a && b ? run(a, &na) : NULL, *y = x ? run(b, &nb) : NULL;
    int same = x && y && na == nb && !memcmp(x, y, sizeof(float) * na);
    free(x), free(y);
    return same;
}

/* .pt and safetensors twins load to the same network, bit for bit: by flags, config file,
 * inference, "module." prefixes, one storage per tensor or the trainer's flat storages. */
static void test_pt_bit_identical(void) {
    char d[512], st[700], pt[700], cfgp[700], err[1024];
    cli_mkdtemp(d, sizeof d);
    snprintf(st, sizeof st, "%s/tiny.safetensors", d);
    snprintf(pt, sizeof pt, "%s/tiny.pt", d);
    snprintf(cfgp, sizeof cfgp, "%s/tiny.json", d);
    char *cfg = gd_config_from_flags(UNET_FLAGS, 0, err, sizeof err);
    CHECK(cfg && !cli_write_file(cfgp, cfg, strlen(cfg)), "%s", err);
    if (!cfg || make_model(cfg, st, pt, 1, "")) goto done;
    unsigned char head[512];
    size_t hl = 0;
    unsigned char *whole = cli_read_file(pt, &hl);
    memcpy(head, whole, hl < 512 ? hl : 512);
    CHECK(gd_pt_sniff(head, hl < 512 ? hl : 512), "the written .pt is sniffed as a PyTorch checkpoint");
    free(whole);
    gd_model *ref = gd_model_load(st, NULL, err, sizeof err);
    gd_load_opts by_flags = {.flags = UNET_FLAGS}, by_file = {.config_path = cfgp};
    gd_model *a = gd_model_load_opts(pt, &by_flags, err, sizeof err);
    CHECK(a, "%s", err);
    gd_model *b = gd_model_load_opts(pt, &by_file, err, sizeof err);
    CHECK(b, "%s", err);
    CHECK(same_outputs(ref, a), ".pt with --flags: outputs bit-identical to the safetensors twin");
    CHECK(same_outputs(ref, b), ".pt with a config file: outputs bit-identical");
    CHECK(a && strstr(gd_model_config_notes(a), "config: from --flags"), "notes: %s", a ? gd_model_config_notes(a) : "");
    gd_model_free(a), gd_model_free(b);
    /* one storage per tensor, DataParallel's prefix */
    gd_st_file *f = gd_st_open(st, err, sizeof err);
    CHECK(f && !write_pt(pt, f, 0, "module."), "module. .pt");
    gd_st_close(f);
    a = gd_model_load_opts(pt, &by_flags, err, sizeof err);
    CHECK(a && same_outputs(ref, a), "a 'module.' .pt: %s", a ? "outputs differ" : err);
    gd_model_free(a), gd_model_free(ref);
    /* inference: a classifier .pt alone */
    snprintf(st, sizeof st, "%s/cls.safetensors", d);
    snprintf(pt, sizeof pt, "%s/cls.pt", d);
    if (make_model(CLS_CONFIG, st, pt, 1, "")) goto done;
    ref = gd_model_load(st, NULL, err, sizeof err);
    a = gd_model_load_opts(pt, NULL, err, sizeof err);
    CHECK(a, "classifier .pt, inferred: %s", err);
    CHECK(same_outputs(ref, a), "inferred classifier .pt: logits and input gradient bit-identical");
    const char *notes = a ? gd_model_config_notes(a) : "";
    CHECK(strstr(notes, "config: from the tensor shapes (inferred)") && strstr(notes, "image_size 16: from the attention pool"),
          "notes: %s", notes);
    printf("    inferred classifier .pt, its notes:\n%s", notes);
    gd_model_free(a), gd_model_free(ref);
done:
    free(cfg);
    cli_rmtree(d);
}

/* ddpm-forward -m X.pt (flags, inferred) equals the safetensors twin's output file bytes. */
static void test_forward_pt(void) {
    if (!cli_tool_available("ddpm-forward") || !cli_tool_available(CONVERT)) return;
    char d[512], st[700], pt[700], io[700], args[4096], err[512];
    cli_mkdtemp(d, sizeof d);
    snprintf(st, sizeof st, "%s/cls.safetensors", d);
    snprintf(pt, sizeof pt, "%s/cls.pt", d);
    snprintf(io, sizeof io, "%s/io.safetensors", d);
    if (make_model(CLS_CONFIG, st, pt, 1, "")) goto done;
    float x[2 * 3 * 16 * 16];
    int64_t t[2] = {999, 5}, y[2] = {1, 9}, xs[4] = {2, 3, 16, 16}, n2 = 2;
    for (int i = 0; i < 2 * 3 * 16 * 16; i++) x[i] = (float)((i * 31) % 97) / 48.0f - 1.0f;
    gd_st_writer *w = gd_st_writer_new();
    gd_st_writer_add(w, "x", GD_ST_F32, 4, xs, x), gd_st_writer_add(w, "t", GD_ST_I64, 1, &n2, t);
    gd_st_writer_add(w, "y", GD_ST_I64, 1, &n2, y);
    CHECK(!gd_st_writer_save(w, io, err, sizeof err), "%s", err);
    gd_st_writer_free(w);
    const char *models[3] = {st, pt, NULL};
    char conv[700];
    snprintf(conv, sizeof conv, "%s/conv.safetensors", d);
    snprintf(args, sizeof args, "%s -o %s -q", pt, conv);
    cli_result r = cli_run(CONVERT, d, args);
    CHECK(r.status == 0, "%s: %s", args, r.err);
    cli_run_free(&r);
    models[2] = conv;
    unsigned char *outs[3];
    size_t lens[3];
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "-m %s -i %s -o %s/out%d.safetensors -t 1 -q%s", models[k], io, d, k, k == 1 ? " -v" : "");
        r = cli_run("ddpm-forward", d, args);
        CHECK(r.status == 0, "%s: %s", args, r.err);
        if (k == 1) CHECK(strstr(r.err, "ddpm-forward: config: from the tensor shapes (inferred)") && strstr(r.err, "rule:"),
                          "-v tells where the config came from: %s", r.err);
        cli_run_free(&r);
        char p[800];
        snprintf(p, sizeof p, "%s/out%d.safetensors", d, k);
        gd_st_file *f = gd_st_open(p, err, sizeof err);
        const gd_st_tensor *lg = f ? gd_st_find(f, "logits") : NULL, *gr = f ? gd_st_find(f, "grad") : NULL;
        outs[k] = lg && gr ? malloc(lg->nbytes + gr->nbytes) : NULL;
        if (outs[k]) memcpy(outs[k], lg->data, lg->nbytes), memcpy(outs[k] + lg->nbytes, gr->data, gr->nbytes), lens[k] = lg->nbytes + gr->nbytes;
        gd_st_close(f);
    }
    int same = outs[0] && outs[1] && outs[2] && lens[0] == lens[1] && lens[0] == lens[2] && !memcmp(outs[0], outs[1], lens[0]) &&
               !memcmp(outs[0], outs[2], lens[0]);
    printf("    ddpm-forward logits and grad: safetensors, .pt (inferred) and ddpm-convert's file: %s\n", same ? "bit-identical" : "DIFFERENT");
    CHECK(same, "ddpm-forward on the .pt, its twin and its conversion");
    for (int k = 0; k < 3; k++) free(outs[k]);
done:
    cli_rmtree(d);
}

/* The conv_* fixtures (scripts/convert_checkpoint.py's output) come back byte for byte: the config
 * text, metadata, header and padding are the Python script's. */
static void test_convert_python_bytes(void) {
    if (!cli_tool_available(CONVERT)) return;
    char d[512], in[700], out[700], args[2048];
    cli_mkdtemp(d, sizeof d);
    const struct {
        const char *name, *dtype;
    } c[] = {{"conv_unet", "f16"}, {"conv_sr", "bf16"}, {"conv_cls", "f16"}};
    for (int k = 0; k < 3; k++) {
        size_t n;
        char fx[300];
        snprintf(fx, sizeof fx, "tests/fixtures/%s.safetensors", c[k].name);
        unsigned char *want = cli_read_file(fx, &n);
        snprintf(in, sizeof in, "%s/%s.pt", d, c[k].name); /* the name the Python script saw */
        snprintf(out, sizeof out, "%s/%s.out.safetensors", d, c[k].name);
        CHECK(want && !cli_write_file(in, want, n), "%s", fx);
        snprintf(args, sizeof args, "%s -o %s --dtype %s -q", in, out, c[k].dtype);
        cli_result r = cli_run(CONVERT, d, args);
        CHECK(r.status == 0, "%s: %s", args, r.err);
        cli_run_free(&r);
        size_t m;
        unsigned char *got = cli_read_file(out, &m);
        int same = got && want && m == n && !memcmp(got, want, n);
        printf("    %-10s %-4s %7zu bytes: %s\n", c[k].name, c[k].dtype, n, same ? "the Python script's bytes" : "DIFFERENT");
        CHECK(same, "%s: ddpm-convert's %zu bytes differ from scripts/convert_checkpoint.py's %zu", c[k].name, m, n);
        free(got), free(want);
    }
    cli_rmtree(d);
}

static void expect_fail(const char *d, const char *args, const char *want) {
    cli_result r = cli_run(CONVERT, d, args);
    CHECK(r.status == 2 && cli_count_lines(r.err) == 1 && !strncmp(r.err, CONVERT ": ", 14) && strstr(r.err, want),
          "'%s': status %d, want '%s': %s", args, r.status, want, r.err);
    printf("    -> %s", r.err);
    cli_run_free(&r);
}

/* ddpm-convert: the flags, the converted tensors, and one-line errors that write nothing. */
static void test_convert_cli(void) {
    if (!cli_tool_available(CONVERT)) return;
    char d[512], st[700], pt[700], args[4096], out[700], err[512];
    cli_mkdtemp(d, sizeof d);
    snprintf(st, sizeof st, "%s/src/tiny.safetensors", d);
    snprintf(pt, sizeof pt, "%s/src/tiny.pt", d);
    snprintf(out, sizeof out, "%s/src", d);
    mkdir(out, 0755);
    char *cfg = gd_config_from_flags(UNET_FLAGS, 0, err, sizeof err);
    if (!cfg || make_model(cfg, st, pt, 1, "")) goto done;
    snprintf(args, sizeof args, "%s -d %s --flags '%s' --dtype bf16", pt, d, UNET_FLAGS);
    cli_result r = cli_run(CONVERT, d, args);
    CHECK(r.status == 0 && strstr(r.out, "unet 16x16") && strstr(r.out, "bf16, config from --flags"), "%s: %s%s", args, r.out, r.err);
    printf("    %s", r.out);
    cli_run_free(&r);
    snprintf(out, sizeof out, "%s/tiny.safetensors", d);
    gd_st_file *a = gd_st_open(st, err, sizeof err), *b = gd_st_open(out, err, sizeof err);
    int ok = a && b && gd_st_count(a) == gd_st_count(b);
    for (int i = 0; ok && i < gd_st_count(a); i++) {
        const gd_st_tensor *x = gd_st_get(a, i), *y = gd_st_find(b, x->name);
        ok = y && y->dtype == GD_ST_BF16 && y->numel == x->numel;
        for (int64_t k = 0; ok && k < x->numel; k++) {
            float v;
            uint16_t h;
            memcpy(&v, (const char *)x->data + 4 * k, 4), memcpy(&h, (const char *)y->data + 2 * k, 2);
            ok = h == gd_f32_to_bf16(v);
        }
    }
    CHECK(ok && gd_st_metadata(b, "config") && !strcmp(gd_st_metadata(b, "source"), "tiny.pt"), "bf16 tensors and metadata");
    gd_st_close(a), gd_st_close(b);
    snprintf(args, sizeof args, "--list");
    r = cli_run(CONVERT, d, args);
    CHECK(r.status == 0 && cli_count_lines(r.out) == 16 && strstr(r.out, "256x256_classifier+0.1ECT.pt"), "--list: %s", r.out);
    cli_run_free(&r);
    int before = cli_count_entries(d);
    char cases[14][2][4096], badcfg[700];
    snprintf(badcfg, sizeof badcfg, "%s/src/bad.json", d);
    { /* a config the converter would copy into a file the loader then refuses */
        char txt[8192];
        snprintf(txt, sizeof txt, "{\"bogus_key\": 1, %s", cfg + 1);
        cli_write_file(badcfg, txt, strlen(txt));
    }
    int nc = 0;
#define CASE(want, ...) (snprintf(cases[nc][0], sizeof cases[nc][0], __VA_ARGS__), snprintf(cases[nc][1], sizeof cases[nc][1], "%s", want), nc++)
    CASE("no checkpoint given", "-d %s", d);
    CASE("-o names one output", "%s %s -o %s/x.safetensors", pt, pt, d);
    CASE("--config and --flags both given", "%s --config a.json --flags '--image_size 64' -d %s", pt, d);
    CASE("--dtype: invalid choice 'f8'", "%s --dtype f8 -d %s", pt, d);
    CASE("none.pt: no such file", "%s/none.pt -d %s", d, d);
    CASE("does not exist", "%s -d %s/nowhere", pt, d);
    CASE("does not fit the config from --flags: tensor 'time_embed.0.",
         "%s --flags '--image_size 16 --num_channels 64 --channel_mult 1,2' -d %s", pt, d);
    CASE("cannot tell image_size from the tensors (channel_mult 1,2", "%s -d %s", pt, d);
    CASE("expected '--name value' pairs", "%s --flags '--image_size' -d %s", pt, d);
    CASE("none.txt: No such file", "%s --flags '%s' --class-names %s/none.txt -d %s", pt, UNET_FLAGS, d, d);
    CASE("conv_base.npz: a zip archive but not a PyTorch checkpoint", "tests/fixtures/conv_base.npz -d %s", d);
    CASE("output would overwrite the input", "%s -o %s", pt, pt);
    CASE("would not load: config: unknown key \"bogus_key\"", "%s --config %s -d %s", pt, badcfg, d);
#undef CASE
    for (int i = 0; i < nc; i++) expect_fail(d, cases[i][0], cases[i][1]);
    CHECK(cli_count_entries(d) == before, "nothing written by the refused conversions (%d entries, was %d)", cli_count_entries(d), before);
done:
    free(cfg);
    cli_rmtree(d);
}

/* A preset finds <stem>.pt when <stem>.safetensors is absent, and samples the same images. */
static void test_preset_pt(void) {
    if (!cli_tool_available("ddpm-sample")) return;
    char d[512], md[700], st[800], pt[800], preset[800], args[4096], err[512];
    cli_mkdtemp(d, sizeof d);
    snprintf(md, sizeof md, "%s/models", d);
    mkdir(md, 0755);
    snprintf(st, sizeof st, "%s/tiny.safetensors", d);
    snprintf(pt, sizeof pt, "%s/tiny.pt", md);
    snprintf(preset, sizeof preset, "%s/mini.json", d);
    const char *ps = "{\"description\": \"a .pt preset\", \"model\": \"tiny\", \"guidance\": \"none\", \"sampler\": \"ddim\", \"respacing\": \"ddim3\"}";
    cli_write_file(preset, ps, strlen(ps));
    char *cfg = gd_config_from_flags(UNET_FLAGS, 0, err, sizeof err);
    if (!cfg || make_model(cfg, st, pt, 1, "")) goto done;
    uint8_t *im[2] = {NULL, NULL};
    int n[2], h, w, c;
    int64_t *lab[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        if (k == 0) snprintf(args, sizeof args, "--preset %s --models-dir %s --flags '%s' --class 3 -n 2 --seed 4 -t 1 -q -o %s/a.png --npz %s/a.npz",
                             preset, md, UNET_FLAGS, d, d);
        else snprintf(args, sizeof args, "-m %s --sampler ddim --respacing ddim3 --class 3 -n 2 --seed 4 -t 1 -q -o %s/b.png --npz %s/b.npz", st, d, d);
        cli_result r = cli_run("ddpm-sample", d, args);
        CHECK(r.status == 0, "%s: %s", args, r.err);
        cli_run_free(&r);
        char p[800];
        snprintf(p, sizeof p, "%s/%c.npz", d, 'a' + k);
        CHECK(!gd_read_npz(p, &im[k], &n[k], &h, &w, &c, &lab[k], err, sizeof err), "%s", err);
    }
    int same = im[0] && im[1] && n[0] == 2 && n[1] == 2 && !memcmp(im[0], im[1], (size_t)2 * 16 * 16 * 3);
    printf("    --preset with models/tiny.pt (no .safetensors): %s the safetensors run\n", same ? "same images as" : "DIFFERENT from");
    CHECK(same, "the preset's .pt run equals the safetensors run");
    free(im[0]), free(im[1]), free(lab[0]), free(lab[1]);
    /* the missing message names ddpm-convert and the .pt */
    snprintf(args, sizeof args, "--preset imagenet64 --models-dir %s -o %s/x.png", d, d);
    cli_result r = cli_run("ddpm-sample", d, args);
    CHECK(r.status == 2 && strstr(r.err, "a .pt loads as it is") && strstr(r.err, "ddpm-convert 64x64_diffusion.pt 64x64_classifier.pt") &&
              !strstr(r.err, "python"), "missing files: %s", r.err);
    cli_run_free(&r);
done:
    free(cfg);
    cli_rmtree(d);
}

GD_TEST_TABLE(gd_tests_pt_load) = {
    {"pt models: a .pt loads bit-identical to its safetensors twin (flags, config, inferred)", test_pt_bit_identical},
    {"pt models: ddpm-forward -m X.pt, its twin and its conversion give the same bytes", test_forward_pt},
    {"pt models: ddpm-convert writes scripts/convert_checkpoint.py's bytes", test_convert_python_bytes},
    {"pt models: ddpm-convert flags and one-line errors", test_convert_cli},
    {"pt models: presets use <stem>.pt when there is no .safetensors", test_preset_pt},
    {NULL, NULL},
};
