/* W8A8 post-training quantization (PTQ4DM, ../shared/spec/guidance-methods.md section 5) with real
 * int8 arithmetic: int8 weights, symmetric per output channel; uint8 activations, affine per tensor;
 * each range chosen by searching 100 shrinking candidates for the least L_p error (p = 2.4 as
 * PTQ4DM/QDrop's "mse" initialisation; p = 2 is plain MSE), the activations' on a histogram of a
 * timestep-aware calibration set drawn from full-precision sampling. Which convs stay in float and
 * why: gd_quant_keep_float. */
#ifndef GD_QUANT_H
#define GD_QUANT_H
#include "gd_model.h"

#include <stdint.h>

#define GD_QUANT_CANDIDATES 100
#define GD_QHIST_BINS 2048

/* One output channel's weights w[0..n): the scale s (w = q s, q in [-127, 127]) among
 * r_i = (1 - 0.01 i) max|w|, i < 100, s = r_i / 127, minimising sum |w - clamp(rint(w/s)) s|^p
 * (in double; the first minimum wins). max|w| = 0 gives 1. */
double gd_quant_weight_scale(const float *w, int64_t n, double p);
/* q = clamp(rint(w / scale), -127, 127), scale as stored (float) */
void gd_quant_weight_row(const float *w, int64_t n, float scale, int8_t *q);

/* An activation histogram over [lo, hi] (lo <= 0 <= hi, so zero is exact), filled in two passes
 * over the calibration set: the range, then the counts. Bin of x: floor((x - lo) / (hi - lo) * BINS),
 * the last bin closed; its value in the search: the bin centre. */
typedef struct {
    double lo, hi;
    int64_t count[GD_QHIST_BINS];
    int64_t n;
} gd_qhist;
void gd_qhist_reset(gd_qhist *h);              /* lo = hi = 0, no counts */
void gd_qhist_range(gd_qhist *h, const float *x, int64_t n); /* widens [lo, hi] to x (non-finite ignored) */
void gd_qhist_add(gd_qhist *h, const float *x, int64_t n);   /* counts x (outside [lo, hi] clamps) */
/* The per-tensor quantizer of a histogram: for a_i = 1 - 0.01 i, i < 100, the range [a lo, a hi],
 * scale s = a (hi - lo) / 255, zero z = clamp(rint(-a lo / s), 0, 255); error
 * sum_bins count |c - (clamp(rint(c / s) + z, 0, 255) - z) s|^p; the first minimum wins. An empty
 * or zero-width histogram gives scale 1, zero 0. Returns the minimal error. */
double gd_quant_act_params(const gd_qhist *h, double p, double *scale, int *zero);

/* Whether conv weight `name` of a network of this kind stays float: the first conv (it sees the raw
 * x_t, and is 1 % of the multiplies), and the output head ("out." of the U-Net: the network's output
 * is not quantized in PTQ4DM either). Norms, embeddings, linear layers and the attention products
 * are not convolutions and stay float too; attention's qkv / proj_out (Conv1d) are quantized. */
int gd_quant_keep_float(const char *name);

typedef struct {
    int samples;          /* calibration inputs (1024, PTQ4DM's) */
    int steps;            /* DDIM steps of the full-precision sampling that draws them (100) */
    int t_normal;         /* 1: PTQ4DM's NDTC loop index ~ N(mean, std) * steps; 0: uniform */
    double t_mean, t_std; /* 0.4, 0.4 (the shipped script's) */
    double p;             /* L_p of the range searches (2.4) */
    uint64_t seed;
    int batch;            /* networks' batch (64) */
    const char *keep;     /* more conv weights to keep float: a comma list of names (NULL: none) */
    void (*progress)(void *user, const char *stage, int done, int total);
    void *user;
} gd_quant_opts;
void gd_quant_defaults(gd_quant_opts *o);

typedef struct {
    int unet_layers, unet_float, cls_layers, cls_float; /* convs quantized / kept float */
    int calib_inputs;
    double t_calib_s, t_search_s;
} gd_quant_report;

/* Calibrates and quantizes the U-Net and (when given) the classifier in place (gd_model_set_quant
 * per conv, and the "quantization" record), from the U-Net's full-precision DDIM samples: each
 * calibration input is the x at one loop index of a chain from x_T (PTQ4DM's convention counts the
 * index from x_T), fed with the timestep the sampler gives that x. Labels uniform over the classes,
 * one in ten the null label when the model has one (the CFG branch). The classifier is calibrated
 * on the same (x_t, t). Then gd_model_save writes the W8A8 files. */
int gd_quantize_models(gd_model *unet, gd_model *classifier, const gd_quant_opts *o, gd_quant_report *r, char *err,
                       size_t errlen);
/* For timing only (ddpm-bench --precision w8a8): every eligible conv int8 with max-abs weight
 * scales and activation ranges from one random batch, no sampling. *layers: how many. */
int gd_quantize_quick(gd_model *m, int *layers, char *err, size_t errlen);
#endif
