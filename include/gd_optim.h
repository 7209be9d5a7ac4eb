/* Optimisation for ddpm-train: AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias
 * correction, eps outside the square root), learning-rate warm-up and decay, global-norm gradient
 * clipping as torch.nn.utils.clip_grad_norm_, an EMA of the weights, and checkpoints that hold
 * everything needed for an exact resume. Parameters are flat float arrays. */
#ifndef GD_OPTIM_H
#define GD_OPTIM_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;   /* tensor name (state-dict name), used in checkpoints */
    float *w;           /* weights, updated in place */
    const float *g;     /* gradient */
    int64_t n;
    int decay;          /* apply weight decay to this tensor */
} gd_param_ref;

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    int64_t warmup_steps, total_steps;   /* linear warm-up from 0, then decay to lr * final_frac */
    int decay_kind;                      /* 0 constant, 1 linear, 2 cosine (after warm-up) */
    double final_frac;
    double clip_norm;                    /* <= 0: no clipping */
    double ema_rate;                     /* e.g. 0.9999; <= 0: no EMA */
} gd_optim_config;

typedef struct gd_optim gd_optim;

gd_optim *gd_optim_new(const gd_optim_config *cfg, const gd_param_ref *params, int n_params);
void gd_optim_free(gd_optim *o);
double gd_optim_lr(const gd_optim *o);            /* learning rate of the next step */
int64_t gd_optim_step_count(const gd_optim *o);
/* Clips (returns the gradient norm before clipping), applies AdamW at the scheduled lr, updates
 * the EMA. Gradients are read from params[i].g (they may be scaled in place when clipped). */
double gd_optim_step(gd_optim *o);
/* The EMA copy of parameter i (NULL without EMA). */
const float *gd_optim_ema(const gd_optim *o, int i);
/* Checkpoint: every moment, the EMA, the step count and caller metadata, as safetensors
 * (optimizer tensors named "adam_m/NAME", "adam_v/NAME", "ema/NAME"; weights "NAME").
 * Atomic write. Load restores weights, moments, EMA and step; names and sizes must match. */
int gd_optim_save(const gd_optim *o, const char *path, const char *meta_key, const char *meta_value, char *err,
                  size_t errlen);
int gd_optim_load(gd_optim *o, const char *path, char *err, size_t errlen);
#endif
