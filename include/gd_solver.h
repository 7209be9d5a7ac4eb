/* Fast ODE solvers of the probability-flow ODE over a discrete-time ADM schedule: DPM-Solver++
 * (2M, 3M multistep; 2S singlestep) and UniPC (bh1/bh2, orders 1-3), with data prediction,
 * dynamic thresholding and every guidance term of include/gd_sample.h entering as
 * eps~ = eps - sigma_t g. The formulas follow ../shared/spec/fast-solvers.md (dpm-solver's
 * NoiseScheduleVP('discrete') and model wrapper, UniPC's update rules); the time grid and the
 * timesteps the networks see follow the reference's float32 path, so a run matches the PyTorch
 * reference started from the same x_T. Like gd_sampler, the solver knows nothing about networks. */
#ifndef GD_SOLVER_H
#define GD_SOLVER_H
#include "gd_sample.h"

#include <stddef.h>

typedef enum { GD_SOLVER_DPMPP_2M, GD_SOLVER_DPMPP_3M, GD_SOLVER_DPMPP_2S, GD_SOLVER_UNIPC } gd_solver_kind;
typedef enum { GD_TIME_UNIFORM, GD_TIME_LOGSNR, GD_TIME_QUADRATIC } gd_time_schedule;
/* What happens to every data prediction x0 before the solver uses it (after guidance). */
typedef enum { GD_X0_NONE, GD_X0_CLIP, GD_X0_DYNAMIC } gd_x0_correct;

/* dpm-solver's NoiseScheduleVP('discrete'): knots t_n = (n+1)/N' holding log alpha_n in float32,
 * with the trailing knots of lambda < -5.1 dropped (N' = 996 for cosine-1000). */
typedef struct {
    int n;          /* N' */
    float *t, *log_alpha; /* [n] knots */
    float *la_rev, *t_rev; /* the same knots reversed (log alpha ascending), for inverse_lambda */
} gd_vp_schedule;

int gd_vp_schedule_init(gd_vp_schedule *s, const double *alphas_cumprod, int T, char *err, size_t errlen);
void gd_vp_schedule_free(gd_vp_schedule *s);
float gd_vp_log_alpha(const gd_vp_schedule *s, float t);
float gd_vp_alpha(const gd_vp_schedule *s, float t);
float gd_vp_sigma(const gd_vp_schedule *s, float t);
float gd_vp_lambda(const gd_vp_schedule *s, float t);
float gd_vp_inverse_lambda(const gd_vp_schedule *s, float lambda);
/* The model timestep of continuous t, (t - 1/N') * 1000 in float32, as the reference feeds both networks. */
float gd_vp_model_t(const gd_vp_schedule *s, float t);
/* torch.linspace in float32 (the reference's arithmetic: up from start, then down from end). */
void gd_vp_linspace(float start, float end, int steps, float *out);
/* steps+1 grid points from t = 1 to t = 1/N' (float32, the reference's way). */
void gd_vp_time_grid(const gd_vp_schedule *s, gd_time_schedule kind, double t_start, double t_end, int steps, float *grid);

typedef struct {
    const double *alphas_cumprod; /* the full (unspaced) schedule, T entries */
    int T;
    gd_solver_kind kind;
    int order;              /* UniPC: 1..3 (default 2); ignored by the others */
    int unipc_bh1;          /* UniPC: B(h) = h instead of expm1(h) */
    int steps;              /* model evaluations (NFE) */
    gd_time_schedule time_schedule;
    int lower_order_final;  /* as the references: dpm-solver only when steps < 10, UniPC always */
    gd_x0_correct correct;
    double thr_ratio, thr_max; /* dynamic thresholding: quantile of |x0| per sample, floor of the scale */
    int N, C, H, W;
    gd_denoiser *model;
    gd_guidance *guidance;  /* NULL for none */
    const int32_t *y;
    gd_noise *noise;        /* draw 0 only: x_T */
    /* optional: after each outer step, with the steps done, their total and the step's x0 */
    void (*on_step)(void *user, int done, int total, const float *x0);
    /* optional: x after outer step `done` (tests compare whole trajectories) */
    void (*on_x)(void *user, int done, const float *x);
    void *user;
} gd_solver_params;

typedef struct gd_solver gd_solver;
/* Plans the grid and allocates every buffer; the run allocates nothing. NULL with err. */
gd_solver *gd_solver_new(const gd_solver_params *p, char *err, size_t errlen);
void gd_solver_free(gd_solver *s);
/* Draws x_T and integrates to t_end; x receives x(t_end). */
int gd_solver_run(gd_solver *s, float *x, char *err, size_t errlen);
/* Outer steps (multistep: steps; 2S: ceil(steps/2)) and model evaluations of one run. */
int gd_solver_outer_steps(const gd_solver *s);
int gd_solver_nfe(const gd_solver *s);
/* The model timestep of evaluation i of a run (0 <= i < nfe), for tests and progress. */
double gd_solver_eval_t(const gd_solver *s, int i);
/* The outer grid point j (0..outer steps) as the model timestep. */
double gd_solver_grid_t(const gd_solver *s, int j);
#endif
