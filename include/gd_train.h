/* Training objectives, computed outside the graph: the loss and d(loss)/d(network output), which
 * seeds gd_net_backward. Formulas as improved-diffusion / guided-diffusion (gaussian_diffusion.py)
 * and ED-DPM's ECT. */
#ifndef GD_TRAIN_H
#define GD_TRAIN_H
#include "gd_diffusion.h"
#include "gd_model.h"
#include "gd_optim.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double mse, vb, loss;
} gd_loss_terms;

/* The hybrid objective (learn_sigma, RESCALED_MSE): loss = mean_flat((eps - noise)^2) + vb * K/1000,
 * vb in bits per dimension = KL(q(x_{k-1}|x_k,x_0) || p(x_{k-1}|x_k)) for k > 0 and the
 * discretised-Gaussian decoder NLL at k = 0, with the model mean detached (only the learned-range
 * value v gets vb's gradient). That is L_simple + 0.001 * L_vlb for K = T = 1000 uniform steps.
 * Without learned sigma only the MSE. out [N, C or 2C, H, W]; x0, xt, noise [N, C, H, W]; k [N]
 * step indices of d. Writes per-sample terms (may be NULL), returns the batch mean of loss, and
 * d(mean loss)/d(out) into dout (may be NULL). */
double gd_hybrid_loss(const gd_diffusion *d, int N, int C, int HW, int learned_sigma, const float *out, const float *x0,
                      const float *xt, const float *noise, const int *k, gd_loss_terms *terms, float *dout);

/* Classifier: cross-entropy + lambda * (log K - H(p)) per sample (ECT; lambda 0 = plain CE).
 * Returns the batch mean; per_sample (may be NULL); dlogits = d(mean)/d(logits) (may be NULL). */
double gd_ect_loss(int N, int K, const float *logits, const int32_t *y, double lambda, double *per_sample,
                   float *dlogits);

/* x_t = sqrt(abar_k) x0 + sqrt(1 - abar_k) noise, per sample. */
void gd_q_sample(const gd_diffusion *d, int N, int per, const float *x0, const float *noise, const int *k, float *xt);

/* ---- ddpm-train's run config (configs/train_*.json; README "Training") ---- */

#define GD_TRAIN_MAX_BATCH 4096
/* steps * batch_size stays far inside int64 (batch positions), and 2^40 steps is decades of work */
#define GD_TRAIN_MAX_STEPS ((int64_t)1 << 40)

typedef struct {
    int diffusion;                  /* "kind": "diffusion" (default) or "classifier" */
    char *out;                      /* the run folder (required) */
    char *model_json;               /* the "model" object as compact JSON, embedded in outputs */
    gd_config model;                /* model_json parsed (gd_config_parse) */
    int model_ok;                   /* model holds a parsed config */
    char *data_images, *data_labels; /* IDX files (the Fashion-MNIST training set by default), */
    char *data_folder;              /* or a folder of class subfolders (then the two above are NULL) */
    char *test_images, *test_labels; /* --eval's IDX files (classifiers; Fashion-MNIST test set by default) */
    int batch_size;                 /* 1..GD_TRAIN_MAX_BATCH */
    int64_t steps, log_every, checkpoint_every;
    int64_t snapshot_every;         /* 0: none; else OUT/snapshots/step_NNNNNN.safetensors (EMA) every N steps */
    uint64_t seed;                  /* 0..2^53 */
    double label_dropout;           /* diffusion: [0, 1], > 0 needs null_class */
    double ect_lambda;              /* classifier */
    int noised, hflip;              /* classifier */
    gd_optim_config optim;          /* total_steps = steps */
} gd_train_config;

/* Parses and range-checks json[0..len) (any bytes): every key's type and range, unknown or
 * repeated keys at every level (the "model" object goes to gd_config_parse), kind-specific keys
 * in a run of the other kind. Returns 0, or -1 with one line in err naming the key; c is then
 * zeroed and needs no free. Touches no file. */
int gd_train_config_parse(const char *json, size_t len, gd_train_config *c, char *err, size_t errlen);
void gd_train_config_free(gd_train_config *c);

/* The loss sums of the log window still open at a checkpoint (n steps since the last log line),
 * so a resumed run logs the same averages as an uninterrupted one. Stored in the checkpoint's
 * metadata "train_log" as JSON. format: 0, or -1 when a sum is not finite or buf is too small;
 * parse: 0, or -1 with err unless n is an integer in [0, step] and the sums finite numbers. */
typedef struct {
    int64_t n;
    double loss, mse, vb;
} gd_train_log_state;
int gd_train_log_state_format(const gd_train_log_state *s, char *buf, size_t n);
int gd_train_log_state_parse(const char *json, int64_t step, gd_train_log_state *s, char *err, size_t errlen);

/* gd_optim_save with the model config under metadata "config" and, unless train_log is NULL,
 * the open log window under "train_log" (without it the bytes are gd_optim_save's). */
int gd_train_checkpoint_save(const gd_optim *o, const char *path, const char *config_json, const char *train_log,
                             char *err, size_t errlen);
#endif
