/* Diffusion math as guided-diffusion computes it: beta schedules, respacing, and the per-step
 * coefficients, all in double (cast to float where used, as _extract_into_tensor does). */
#ifndef GD_DIFFUSION_H
#define GD_DIFFUSION_H
#include <stddef.h>

typedef enum { GD_VAR_LEARNED_RANGE, GD_VAR_FIXED_SMALL, GD_VAR_FIXED_LARGE } gd_var_type;

typedef struct {
    int T;             /* original number of steps */
    int K;             /* respaced number of steps */
    int *timestep_map; /* [K]: original timestep of respaced step k */
    /* respaced process, each [K] */
    double *betas, *alphas_cumprod, *alphas_cumprod_prev;
    double *sqrt_recip_alphas_cumprod, *sqrt_recipm1_alphas_cumprod;
    double *posterior_variance, *posterior_log_variance_clipped;
    double *posterior_mean_coef1, *posterior_mean_coef2;
} gd_diffusion;

/* "linear" or "cosine"; betas has T entries. Returns 0 or -1 (unknown name, T < 2). */
int gd_beta_schedule(const char *name, int T, double *betas);
/* Respacing as guided-diffusion's space_timesteps: "" (all), "N", "ddimN", or comma-separated
 * section counts. keep[T] is set to 1 for kept steps. Returns the count K, or -1 with err. */
int gd_space_timesteps(int T, const char *spec, unsigned char *keep, char *err, size_t errlen);
gd_diffusion *gd_diffusion_new(const char *schedule, int T, const char *respacing, char *err, size_t errlen);
void gd_diffusion_free(gd_diffusion *d);
#endif
