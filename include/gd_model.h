/* ADM networks: configs (keys mirror guided-diffusion's flags, see docs/config.md), weights
 * (safetensors with guided-diffusion's state-dict names, or random for tests and benchmarks),
 * and graph builders for UNetModel, SuperResModel and EncoderUNetModel. */
#ifndef GD_MODEL_H
#define GD_MODEL_H
#include "gd_alloc.h"
#include "gd_safetensors.h"
#include "gd_tensor.h"

#include <stdbool.h>
#include <stdio.h>

#define GD_MAX_LEVELS 8

typedef enum { GD_NET_UNET, GD_NET_SUPERRES, GD_NET_CLASSIFIER } gd_net_kind;

typedef struct {
    gd_net_kind kind;
    int image_size, in_channels, model_channels, num_res_blocks, num_classes;
    int small_size;                   /* superres: low_res size (default image_size / 4) */
    double channel_mult[GD_MAX_LEVELS];
    int n_levels;
    int attention_ds[GD_MAX_LEVELS];  /* downsample rates that carry attention */
    int n_attention;
    int num_heads, num_head_channels, num_heads_upsample;
    bool use_scale_shift_norm, resblock_updown, use_new_attention_order;
    bool learn_sigma, class_cond, null_class;
    bool pool_attention;              /* classifier head: AttentionPool2d, else adaptive */
    /* diffusion keys (guided-diffusion's diffusion_defaults); has_schedule says whether the config
     * named them, so a classifier can be checked against the model it guides */
    int diffusion_steps;
    char noise_schedule[16];
    bool sigma_small, has_schedule;
    char *json;                       /* the config as given, for embedding in outputs */
} gd_config;

/* Parses a config object (docs/config.md); returns 0, or -1 with one line in err. */
int gd_config_parse(const char *json, gd_config *cfg, char *err, size_t errlen);
int gd_config_load(const char *path, gd_config *cfg, char *err, size_t errlen);
void gd_config_free(gd_config *cfg);
int gd_config_out_channels(const gd_config *cfg);   /* U-Net output channels */
/* The config's optional "class_names" list: name of class k into buf; 0, or -1 when there is none. */
int gd_config_class_name(const gd_config *cfg, int k, char *buf, size_t n);
/* Class id for a name (case-insensitive; ' ', '_', '-' and '/' are interchangeable), or -1. */
int gd_config_class_id(const gd_config *cfg, const char *name);
/* Every class name at once (one parse of the config): returns their count, 0 when the config has
 * none, -1 out of memory; *names is one allocation (free it), NULL-terminated. */
int gd_config_class_names(const gd_config *cfg, char ***names);
/* The comparison gd_config_class_id uses. */
int gd_class_name_equal(const char *a, const char *b);

typedef struct gd_model gd_model;

/* Opens a weights file, a safetensors file or a PyTorch checkpoint (.pt, told by its content),
 * with its config from, in order (docs/config.md, "Where a config comes from"):
 *   (a) o->config_path, a config file; (b) o->flags, guided-diffusion's flags (MODEL_FLAGS, or
 *   CLASSIFIER_FLAGS with --image_size; a classifier when the file has no output_blocks);
 *   (c) the safetensors file's __metadata__["config"]; (d) the released checkpoint of that file
 *   name (configs/checkpoints.json; <stem>.pt for any extension), then the released architecture
 *   whose tensors exactly these are; (e) inference from the tensor names and shapes
 *   (gd_config_infer). A .pt's ImageNet model (1000 classes) gets configs/imagenet_classes.txt
 *   as its class names, as ddpm-convert embeds them. o may be NULL. Errors are one line in err. */
typedef struct {
    const char *config_path;  /* (a) */
    const char *flags;        /* (b) */
    const char *configs_dir;  /* checkpoints.json, imagenet_classes.txt; NULL: configs/ here, else beside the executable */
} gd_load_opts;
gd_model *gd_model_load_opts(const char *path, const gd_load_opts *o, char *err, size_t errlen);
/* gd_model_load_opts with only a config file (NULL: none). */
gd_model *gd_model_load(const char *path, const char *config_path, char *err, size_t errlen);
/* Where the loaded model's config came from ("config: from ...") and, when it was inferred, the
 * rule used for each thing the shapes do not tell, one per line; "" for random models. */
const char *gd_model_config_notes(const gd_model *m);

/* Config sources as JSON text (malloc'ed; NULL with one line in err):
 * guided-diffusion's flags as scripts/convert_checkpoint.py turns them into a config (its key
 * order and value types; flags not given keep docs/config.md's defaults, which are
 * guided-diffusion's script_util defaults; classifier != 0 keeps the classifier_* flags,
 * image_size and in_channels; --large_size makes a superres model); */
char *gd_config_from_flags(const char *flags, int classifier, char *err, size_t errlen);
/* inference from names and shapes only (data unused): one line per rule applied goes to notes
 * (may be NULL); errors say what cannot be told and which flag settles it; */
char *gd_config_infer(const gd_st_tensor *t, int n, const char *configs_dir, char *notes, size_t notes_len, char *err,
                      size_t errlen);
/* the order of gd_model_load_opts (without the class names); source: where it came from. */
char *gd_config_choose(const char *path, const gd_st_file *f, const gd_load_opts *o, char *source, size_t slen, char *notes,
                       size_t nlen, char *err, size_t errlen);

/* A checkpoint converted to a safetensors file with its config embedded: the bytes
 * scripts/convert_checkpoint.py writes for the same input and options (tensors in state-dict
 * order, contiguous, in dtype; metadata config, source, converter; header padded to 8). The
 * config comes from gd_config_choose's order; it must describe exactly the checkpoint's tensors,
 * or nothing is written. Written to a temporary file, then renamed. */
typedef struct {
    const char *config_path, *flags, *configs_dir; /* as gd_load_opts */
    const char *class_names;  /* one name per line to embed; NULL: ImageNet's for 1000-class models */
    int no_class_names;
    gd_st_dtype dtype;        /* GD_ST_F32 (default, exact), GD_ST_F16 or GD_ST_BF16 */
} gd_convert_opts;
typedef struct {
    char model[16];           /* unet, superres, classifier */
    long long image_size, params, bytes;
    int tensors, class_names;
    char source[600];         /* where the config came from */
    char notes[4096];         /* inference rules, when it was inferred */
} gd_convert_info;
int gd_convert_checkpoint(const char *in, const char *out, const gd_convert_opts *o, gd_convert_info *info, char *err,
                          size_t errlen);
/* The released checkpoints of configs/checkpoints.json, one line each: name, config, source. */
int gd_released_list(const char *configs_dir, FILE *f, char *err, size_t errlen);
/* Random weights (uniform in +-1/sqrt(fan_in); norms 1, biases 0), created on demand. */
gd_model *gd_model_random(const gd_config *cfg, uint64_t seed);
/* Shapes only (no data): for counting parameters and checking a config builds. */
gd_model *gd_model_shapes(const gd_config *cfg);
void gd_model_free(gd_model *m);
const gd_config *gd_model_config(const gd_model *m);
const char *gd_model_error(const gd_model *m);

/* Network graph builders: record the forward pass into ctx and return its output (NULL on
 * error, with gd_model_error naming the first missing or mis-shaped tensor).
 * x [N,C,H,W] f32; t [N] f32 original timesteps; y [N] i32 labels or NULL; low_res [N,C,h,w]. */
gd_tensor *gd_unet_build(gd_ctx *ctx, gd_model *m, gd_tensor *x, gd_tensor *t, gd_tensor *y, gd_tensor *low_res);
gd_tensor *gd_classifier_build(gd_ctx *ctx, gd_model *m, gd_tensor *x, gd_tensor *t);
/* After building: fails if the file holds tensors the network did not use (strict loading). */
int gd_model_check_all_used(gd_model *m);
/* Training: every weight becomes an owned f32 buffer (widened from f16/bf16, copied out of the
 * mapping) that an optimizer may update in place. Returns 0 or -1. */
int gd_model_make_trainable(gd_model *m);
/* Writes every tensor the model holds (in the order first used) with the config embedded. */
int gd_model_save(const gd_model *m, const char *path, char *err, size_t errlen);
/* W8A8 (ddpm-quantize; the file layout is in src/nn/quant_file.h). A loaded file's I8 conv weights
 * come with their scales; their convs then run int8 (gd_quant, gd_tensor.h). set_quant makes
 * conv2d weight `name` int8 (qw [O][C*KH*KW], one scale per output channel) with its input
 * quantized as (a_scale, a_zero), copying both; the weight's fp32 value becomes q * scale. Set
 * before building graphs from m. quant_count: how many weights are int8. quant_meta: the file's
 * "quantization" record (JSON), NULL when none; set_quant_meta replaces it (written by
 * gd_model_save when some weight is int8). weight_f32: a weight's fp32 values (f16/bf16 widened
 * in place: call before building graphs), NULL when absent. */
int gd_model_set_quant(gd_model *m, const char *name, const int8_t *qw, const float *w_scale, float a_scale, int a_zero, char *err,
                       size_t errlen);
int gd_model_quant_count(const gd_model *m);
const char *gd_model_quant_meta(const gd_model *m);
int gd_model_set_quant_meta(gd_model *m, const char *json);
const float *gd_model_weight_f32(gd_model *m, const char *name, int *ndim, int64_t *ne);
/* Number of parameters handed out so far (the network's size after a build). */
int64_t gd_model_param_count(const gd_model *m);
int gd_model_tensor_count(const gd_model *m);

/* A network ready to run at a fixed batch size: the graph is built and planned once, then
 * forward (and for classifiers the input gradient) run as often as wanted with no allocation.
 * Calls that can fail return NULL / -1 with one line in err. */
typedef struct gd_net gd_net;
/* input_grad: classifiers only; also plans d/dx sum_n log_softmax(logits)[n, y_n]. */
gd_net *gd_net_new(gd_model *m, int batch, int input_grad, char *err, size_t errlen);
/* gd_net_new with the network's activations in `shared`, an arena several networks share (NULL:
 * a private one, exactly gd_net_new), sized to the largest of their needs. Lifetime contract
 * (details at gd_arena, gd_alloc.h): the buffers behind gd_net_x / gd_net_t / gd_net_y /
 * gd_net_low_res, gd_net_output and gd_net_features are the network's own and stay valid (and
 * keep their contents) for its whole life, whatever other networks of the arena do; everything
 * else is valid only until another network of the same arena runs. So networks of one arena run
 * one after another, never concurrently, and each reads its results before the next runs (as a
 * sampling step does: the U-Net, then each classifier expert). Creating a network may grow the
 * arena; the others rebind at their next run without allocating. The arena must outlive every
 * run of its networks (freeing them before or after it is fine). */
gd_net *gd_net_new_in(gd_model *m, int batch, int input_grad, gd_arena *shared, char *err, size_t errlen);
void gd_net_free(gd_net *n);
float *gd_net_x(gd_net *n);          /* [N, C, H, W] */
float *gd_net_t(gd_net *n);          /* [N] original timesteps */
int32_t *gd_net_y(gd_net *n);        /* [N] labels, NULL when the network takes none */
float *gd_net_low_res(gd_net *n);    /* superres conditioning, else NULL */
int gd_net_forward(gd_net *n, char *err, size_t errlen);
const gd_tensor *gd_net_output(const gd_net *n);  /* U-Net output or classifier logits */
/* classifiers: the pooled [N, C, 1, 1] vector the head projects to logits (the spatial mean for
 * the attention pool); NULL for U-Nets */
const gd_tensor *gd_net_features(const gd_net *n);
/* Runs forward and backward; grad [N,C,H,W] receives d/dx log p(y|x) per sample. */
int gd_net_input_grad(gd_net *n, float *grad, char *err, size_t errlen);
const gd_graph *gd_net_graph(const gd_net *n);
/* gd_graph_set_observer on the network's graph (calibration reads activations through it) */
void gd_net_set_observer(gd_net *n, gd_observer fn, void *user);

/* Training: a network whose backward gives every weight's gradient (the model must be trainable).
 * Forward with gd_net_forward, then gd_net_backward with d(loss)/d(output). */
gd_net *gd_net_new_train(gd_model *m, int batch, char *err, size_t errlen);
int gd_net_backward(gd_net *n, const float *dout, char *err, size_t errlen);
int gd_net_param_count(const gd_net *n);
/* Weight i of the network: state-dict name, the (trainable) weights, its gradient, element count. */
void gd_net_param(const gd_net *n, int i, const char **name, float **w, const float **grad, int64_t *count);
const gd_tensor *gd_net_param_tensor(const gd_net *n, int i); /* its shape */
#endif
