/* Library-internal declarations shared by the tensor core and the op families. */
#ifndef GD_INTERNAL_H
#define GD_INTERNAL_H
#include "gd_tensor.h"

#include <stdbool.h>

struct gd_ctx {
    gd_tensor *tensors;
    int n, cap;
    char err[256]; /* the first op error (gd_ctx_fail), "" when none */
};

/* Records a node of dtype f32. NULL inputs propagate NULL so builders can check once at the end. */
gd_tensor *gd_new_op(gd_ctx *ctx, gd_op op, int ndim, const int64_t *ne, gd_tensor *a, gd_tensor *b,
                     gd_tensor *c);

/* Kernels: forward writes t->data from its sources; backward reads t->grad and accumulates into
 * the sources' grad (each may be NULL when that source needs no gradient). `work` is scratch of
 * the size the op's work_floats asked for. */
typedef struct {
    const char *name;
    void (*forward)(gd_tensor *t, float *work);
    void (*backward)(gd_tensor *t, float *work);
    /* plans the op's scratch (and may record what it planned for, in ip[]) */
    size_t (*work_floats)(gd_tensor *t, int backward);
    double (*flops)(const gd_tensor *t);
} gd_op_info;

extern const gd_op_info gd_op_table[GD_OP_COUNT];

#define GD_OP_DECL(name)                                 \
    void gd_fwd_##name(gd_tensor *t, float *work);       \
    void gd_bwd_##name(gd_tensor *t, float *work)

GD_OP_DECL(view);
GD_OP_DECL(convert);
GD_OP_DECL(conv2d);
GD_OP_DECL(linear);
GD_OP_DECL(group_norm);
GD_OP_DECL(silu);
GD_OP_DECL(add);
GD_OP_DECL(mul);
GD_OP_DECL(scale);
GD_OP_DECL(scale_shift);
GD_OP_DECL(concat);
GD_OP_DECL(upsample2x);
GD_OP_DECL(avgpool2x);
GD_OP_DECL(bilinear);
GD_OP_DECL(attention);
GD_OP_DECL(softmax);
GD_OP_DECL(log_softmax);
GD_OP_DECL(timestep_emb);
GD_OP_DECL(embedding);
GD_OP_DECL(mean);
GD_OP_DECL(select);
GD_OP_DECL(gather);
GD_OP_DECL(relu);
GD_OP_DECL(pool2d);
GD_OP_DECL(crop2d);

int gd_winograd_worth(int64_t N, int64_t H, int64_t W);
size_t gd_winograd_work(int64_t N, int64_t C, int64_t O, int64_t H, int64_t W);
void gd_winograd_conv3x3(const float *x, int64_t N, int64_t C, int64_t H, int64_t W, const float *w, int flip,
                         int64_t O, const float *bias, float *y, int accumulate, float *work);
/* C = op(A) op(B) + beta C in fixed tiles, always inside a parallel region (see ops_conv.c). */
void gd_sgemm_tiled(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
size_t gd_work_conv2d(gd_tensor *t, int backward);
/* set on a conv2d node by gd_work_conv2d (the plan) when its forward runs in bf16 */
#define GD_FLAG_PLANNED_BF16 (1 << 12)
/* set on a conv2d node by the plan when its weight leaf is W8A8 (gd_quant) and its forward runs int8 */
#define GD_FLAG_PLANNED_S8 (1 << 13)
size_t gd_work_attention(gd_tensor *t, int backward);
size_t gd_work_group_norm(gd_tensor *t, int backward);
double gd_flops_conv2d(const gd_tensor *t);
double gd_flops_linear(const gd_tensor *t);
double gd_flops_attention(const gd_tensor *t);

#include "gd_util.h"

#define F32(t) ((float *)(t)->data)

#endif
