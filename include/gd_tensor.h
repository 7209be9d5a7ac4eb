/* Tensor core: a context owns tensor headers; op calls record a graph; a plan places every
 * intermediate in one arena (reusing dead buffers when no backward is needed); compute and
 * backward then run the same graph as often as wanted with no allocation.
 *
 * Shapes are in PyTorch order (ne[0] is the outermost dimension, NCHW for images) with
 * row-major strides, so safetensors data and PyTorch dumps compare as flat buffers. */
#ifndef GD_TENSOR_H
#define GD_TENSOR_H
#include <stddef.h>
#include <stdint.h>

#define GD_MAX_DIMS 4
#define GD_MAX_SRC 4

typedef enum { GD_F32, GD_F16, GD_BF16, GD_I32 } gd_dtype;

typedef enum {
    GD_OP_NONE = 0,   /* leaf: parameter or input */
    GD_OP_VIEW,       /* reshape of a contiguous tensor: shares its data */
    GD_OP_CONVERT,    /* f16/bf16 -> f32 */
    GD_OP_CONV2D,
    GD_OP_LINEAR,
    GD_OP_GROUP_NORM,
    GD_OP_SILU,
    GD_OP_ADD,        /* broadcast */
    GD_OP_MUL,        /* broadcast */
    GD_OP_SCALE,      /* x * constant */
    GD_OP_SCALE_SHIFT,/* h * (1 + e[:, :C]) + e[:, C:] */
    GD_OP_CONCAT,     /* along a dimension */
    GD_OP_UPSAMPLE2X, /* nearest */
    GD_OP_AVGPOOL2X,
    GD_OP_BILINEAR,   /* align_corners=False */
    GD_OP_ATTENTION,  /* multi-head QKV attention over [N, 3C, T] */
    GD_OP_SOFTMAX,
    GD_OP_LOG_SOFTMAX,
    GD_OP_TIMESTEP_EMB,
    GD_OP_EMBEDDING,
    GD_OP_MEAN,       /* over trailing dims from `dim` on, keepdim */
    GD_OP_SELECT,     /* index one position of a dimension, dropping it */
    GD_OP_GATHER,     /* x[n, idx[n]] */
    GD_OP_RELU,
    GD_OP_POOL2D,     /* k x k max, or average excluding the padding */
    GD_OP_CROP2D,
    GD_OP_COUNT
} gd_op;

enum {
    GD_FLAG_PARAM = 1,      /* a weight (set by the model loader) */
    GD_FLAG_INPUT = 2,      /* data supplied by the caller before compute */
    GD_FLAG_NEEDS_GRAD = 4, /* leaf whose gradient backward computes (an input, or a weight to train) */
    GD_FLAG_OUTPUT = 8,     /* keep alive after compute */
};

/* ne and nb borrow ggml's names but NOT its conventions:
 *   - ne[] is in PyTorch order: ne[0] is the OUTERMOST dimension (N of NCHW), ne[ndim-1] the
 *     innermost, contiguous one; ggml's ne[0] is the innermost. So a [N, C, H, W] image batch has
 *     ne = {N, C, H, W}, exactly as torch's x.shape.
 *   - nb[] are strides in ELEMENTS, not bytes (ggml's nb are bytes): element (i0, i1, i2, i3) is
 *     data + (i0 nb[0] + i1 nb[1] + i2 nb[2] + i3 nb[3]) * gd_dtype_size(dtype). A new tensor is
 *     row-major contiguous: nb[ndim-1] = 1, nb[d] = nb[d+1] * ne[d+1] (torch's x.stride()).
 * Only the first ndim entries of each are meaningful. */
/* W8A8 (ddpm-quantize, PTQ4DM-style post-training quantization) of one conv2d weight leaf: the
 * conv that reads it runs on int8 GEMMs with int32 accumulation. The leaf's data stays the fp32
 * value of the int8 weights (q * w_scale), so gradients through the layer (classifier guidance)
 * and any fp32 fallback see the same function's weights. The conv's input is quantized per tensor
 * as x ~ (q - a_zero) * a_scale, q in 0..255; the weights symmetric per output channel. */
typedef struct {
    const int8_t *w;       /* [O][C*KH*KW], PyTorch order, in [-127, 127] */
    const float *w_scale;  /* [O] */
    float a_scale;
    int a_zero;
} gd_quant;

typedef struct gd_tensor gd_tensor;
struct gd_tensor {
    gd_dtype dtype;
    int ndim;
    int64_t ne[GD_MAX_DIMS];  /* shape, outermost first (PyTorch order, see above) */
    int64_t nb[GD_MAX_DIMS];  /* strides in elements, not bytes (see above) */
    gd_op op;
    gd_tensor *src[GD_MAX_SRC];
    int32_t ip[4];            /* integer op parameters */
    float fp[2];              /* float op parameters */
    int flags;
    void *data;               /* set by the caller for leaves, by the plan for the rest */
    float *grad;              /* set by the plan when the graph has a backward */
    int64_t offs, size;       /* plan bookkeeping (bytes) */
    int last_use;             /* plan: the last node reading this buffer (n_nodes: an output) */
    void *cache;              /* op-private, freed with the context (bf16 convs: their weights packed at */
    const void *cache_of;     /* the first compute, and the weight data they were packed from) */
    size_t cache_floats;      /* what cache holds room for */
    const gd_quant *quant;    /* a W8A8 weight leaf (see gd_quant), else NULL */
    char name[96];
};

typedef struct gd_ctx gd_ctx;

/* A context holds up to max_tensors headers; nothing else is allocated until a plan.
 * Errors: an op that cannot be recorded (bad shapes, a full context) returns NULL, and every op
 * given a NULL source returns NULL, so a builder checks once at the end. The context keeps the
 * FIRST such message; gd_graph_build reports it through its err (and refuses a context that has
 * one), and gd_ctx_error reads it ("" when none). */
gd_ctx *gd_ctx_new(int max_tensors);
void gd_ctx_free(gd_ctx *ctx);
const char *gd_ctx_error(const gd_ctx *ctx);
/* Records msg as ctx's error unless it already has one (for graph builders above the core). */
void gd_ctx_fail(gd_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

gd_tensor *gd_new_tensor(gd_ctx *ctx, gd_dtype dt, int ndim, const int64_t *ne);
gd_tensor *gd_new_4d(gd_ctx *ctx, gd_dtype dt, int64_t n0, int64_t n1, int64_t n2, int64_t n3);
gd_tensor *gd_new_2d(gd_ctx *ctx, gd_dtype dt, int64_t n0, int64_t n1);
gd_tensor *gd_new_1d(gd_ctx *ctx, gd_dtype dt, int64_t n0);
void gd_set_name(gd_tensor *t, const char *fmt, ...);
int64_t gd_nelements(const gd_tensor *t);
size_t gd_dtype_size(gd_dtype dt);
int gd_is_contiguous(const gd_tensor *t);

/* ---- ops: each records a node; shapes are checked here, not at compute time ---- */
gd_tensor *gd_reshape(gd_ctx *ctx, gd_tensor *x, int ndim, const int64_t *ne);
gd_tensor *gd_convert_f32(gd_ctx *ctx, gd_tensor *x);     /* identity for f32 */
/* x [N,C,H,W], w [O,C,k,k], b [O] or NULL */
gd_tensor *gd_conv2d(gd_ctx *ctx, gd_tensor *x, gd_tensor *w, gd_tensor *b, int stride, int pad);
/* KH x KW kernels with separate row and column padding (conv2d above is KH = KW, pad_h = pad_w) */
gd_tensor *gd_conv2d_ex(gd_ctx *ctx, gd_tensor *x, gd_tensor *w, gd_tensor *b, int stride, int pad_h, int pad_w);
/* x [..., in], w [out, in] (or [out, in, 1] as a Conv1d weight), b [out] or NULL: last dim */
gd_tensor *gd_linear(gd_ctx *ctx, gd_tensor *x, gd_tensor *w, gd_tensor *b);
/* x [N,C,...]; gamma, beta [C] */
gd_tensor *gd_group_norm(gd_ctx *ctx, gd_tensor *x, gd_tensor *gamma, gd_tensor *beta, int groups, float eps);
gd_tensor *gd_silu(gd_ctx *ctx, gd_tensor *x);
gd_tensor *gd_add(gd_ctx *ctx, gd_tensor *a, gd_tensor *b);   /* b broadcasts to a's shape */
gd_tensor *gd_mul(gd_ctx *ctx, gd_tensor *a, gd_tensor *b);   /* b broadcasts to a's shape */
gd_tensor *gd_scale(gd_ctx *ctx, gd_tensor *x, float s);
/* h [N,C,H,W], e [N,2C]: h * (1 + e[:, :C]) + e[:, C:] */
gd_tensor *gd_scale_shift(gd_ctx *ctx, gd_tensor *h, gd_tensor *e);
gd_tensor *gd_concat(gd_ctx *ctx, gd_tensor *a, gd_tensor *b, int dim);
gd_tensor *gd_upsample2x(gd_ctx *ctx, gd_tensor *x);
gd_tensor *gd_avgpool2x(gd_ctx *ctx, gd_tensor *x);
gd_tensor *gd_bilinear(gd_ctx *ctx, gd_tensor *x, int64_t oh, int64_t ow);
/* qkv [N, 3C, T] -> [N, C, T]; new_order: q|k|v chunks (QKVAttention), else per-head
 * [q_h k_h v_h] blocks (QKVAttentionLegacy). Logits are q.k/sqrt(d), softmax over keys. */
gd_tensor *gd_attention(gd_ctx *ctx, gd_tensor *qkv, int heads, int new_order);
gd_tensor *gd_softmax(gd_ctx *ctx, gd_tensor *x);      /* over the last dim */
gd_tensor *gd_log_softmax(gd_ctx *ctx, gd_tensor *x);  /* over the last dim */
/* H(softmax(z)) in nats over K logits, reduced in double; *lse (may be NULL) gets log sum exp z.
 * One definition for EDS's scale and the ECT loss, so the two cannot drift apart. */
double gd_logits_entropy(const float *z, int K, double *lse);
/* t [N] f32 -> [N, dim]: [cos(t f_i) | sin(t f_i)], f_i = exp(-ln(max_period) i / (dim/2)) */
gd_tensor *gd_timestep_embedding(gd_ctx *ctx, gd_tensor *t, int dim, float max_period);
/* w [K, D], idx [N] i32 -> [N, D] */
gd_tensor *gd_embedding(gd_ctx *ctx, gd_tensor *w, gd_tensor *idx);
gd_tensor *gd_mean(gd_ctx *ctx, gd_tensor *x, int dim); /* mean over dims >= dim, kept as size 1 */
gd_tensor *gd_select(gd_ctx *ctx, gd_tensor *x, int dim, int64_t index);
gd_tensor *gd_gather(gd_ctx *ctx, gd_tensor *x, gd_tensor *idx); /* x [N,K], idx [N] i32 -> [N] */
gd_tensor *gd_relu(gd_ctx *ctx, gd_tensor *x);
typedef enum { GD_POOL_MAX = 0, GD_POOL_AVG_EXCL_PAD = 1 } gd_pool;
/* x [N,C,H,W]: k x k windows, stride, symmetric padding pad < k/2 (max pools pad with -inf,
 * average pools divide by the cells inside the input, TF SAME / count_include_pad=False) */
gd_tensor *gd_pool2d(gd_ctx *ctx, gd_tensor *x, gd_pool kind, int k, int stride, int pad);
/* x [N,C,H,W] -> the h x w window at row top, column left */
gd_tensor *gd_crop2d(gd_ctx *ctx, gd_tensor *x, int top, int left, int64_t h, int64_t w);

/* ---- graphs ----
 * Every call that can fail returns NULL or -1 with one line in err (include/gd_util.h). */
typedef struct gd_graph gd_graph;
/* Collects every node the outputs depend on, in execution order; fails with the context's
 * first op error when it has one (see gd_ctx_new). */
gd_graph *gd_graph_build(gd_ctx *ctx, gd_tensor **outputs, int n_outputs, char *err, size_t errlen);
/* Places intermediates (and gradients when with_backward) in one arena. Leaves must have data
 * or be GD_FLAG_INPUT (then the plan gives them a buffer too). Returns 0 or -1. To share the
 * intermediates' memory with other graphs, see gd_graph_plan_in (gd_alloc.h). */
int gd_graph_plan(gd_graph *g, int with_backward, char *err, size_t errlen);
int gd_graph_compute(gd_graph *g, char *err, size_t errlen);
/* Seeds d(out) with dout (NULL = ones), zeroes and accumulates every gradient the graph needs:
 * those of the leaves flagged GD_FLAG_NEEDS_GRAD (inputs or weights) and of what lies between. */
int gd_graph_backward(gd_graph *g, gd_tensor *out, const float *dout, char *err, size_t errlen);
void gd_graph_free(gd_graph *g);
/* Called after each node's forward, while its sources still hold their values (the arena reuses
 * dead buffers, so this is the one moment to read a node's inputs): how calibration sees the
 * activations, as ggml's eval callback. NULL removes it. */
typedef void (*gd_observer)(const gd_tensor *node, void *user);
void gd_graph_set_observer(gd_graph *g, gd_observer fn, void *user);
size_t gd_graph_arena_bytes(const gd_graph *g);
double gd_graph_flops(const gd_graph *g);   /* forward multiply-adds x 2 */
int gd_graph_n_nodes(const gd_graph *g);

/* ---- runtime ---- */
void gd_set_threads(int n);
int gd_get_threads(void);
/* The arithmetic of the convolutions in graphs planned from now on. GD_PRECISION_BF16: their
 * forward GEMMs round weights and activations to bf16 and accumulate in fp32 (AVX512-BF16);
 * element-wise ops, attention, linear layers and every backward stay fp32. Returns -1 (and keeps
 * fp32) when this CPU has no AVX512-BF16. gd_precision_kernels: one line saying what runs. */
typedef enum { GD_PRECISION_F32 = 0, GD_PRECISION_BF16 = 1 } gd_precision;
int gd_set_precision(gd_precision p);
gd_precision gd_get_precision(void);
const char *gd_precision_kernels(void);
/* What runs a W8A8 convolution (gd_quant): "AVX512-VNNI ..." or the scalar path. */
const char *gd_s8_kernels(void);
const char *gd_build_info(void);
double gd_time_now(void); /* monotonic seconds, for progress and timings */

float gd_f16_to_f32(uint16_t h);
float gd_bf16_to_f32(uint16_t h);
uint16_t gd_f32_to_f16(float f);
uint16_t gd_f32_to_bf16(float f);
#endif
