/* guided-diffusion's schedules (gaussian_diffusion.py) and respacing (respace.py), in double. */
#include "gd_diffusion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double cosine_alpha_bar(double tau) {
    double c = cos((tau + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

int gd_beta_schedule(const char *name, int T, double *betas) {
    if (T < 2) return -1;
    if (!strcmp(name, "linear")) {
        /* numpy.linspace: start + i * step, with the last element set exactly to the end */
        double scale = 1000.0 / T, start = scale * 0.0001, end = scale * 0.02, step = (end - start) / (T - 1);
        for (int i = 0; i < T; i++) betas[i] = i * step + start;
        betas[T - 1] = end;
        return 0;
    }
    if (!strcmp(name, "cosine")) {
        for (int i = 0; i < T; i++) {
            double b = 1 - cosine_alpha_bar((double)(i + 1) / T) / cosine_alpha_bar((double)i / T);
            betas[i] = b < 0.999 ? b : 0.999;
        }
        return 0;
    }
    return -1;
}

int gd_space_timesteps(int T, const char *spec, unsigned char *keep, char *err, size_t errlen) {
    if (T < 1 || T > 100000) { /* (size_t)T below would turn a negative count into a huge write */
        snprintf(err, errlen, "diffusion_steps %d out of range [1, 100000]", T);
        return -1;
    }
    memset(keep, 0, (size_t)T);
    if (!spec || !*spec) {
        memset(keep, 1, (size_t)T);
        return T;
    }
    char *end;
    if (!strncmp(spec, "ddim", 4)) {
        long n = strtol(spec + 4, &end, 10);
        if (end == spec + 4 || *end || n < 1) {
            snprintf(err, errlen, "respacing \"%s\": want ddimN with N a positive integer", spec);
            return -1;
        }
        /* the smallest stride whose range(0, T, stride) has exactly n elements */
        for (int stride = 1; stride < T; stride++)
            if ((T + stride - 1) / stride == n) {
                for (int i = 0; i < T; i += stride) keep[i] = 1;
                return (int)n;
            }
        snprintf(err, errlen, "respacing \"%s\": no integer stride gives %ld of %d steps", spec, n, T);
        return -1;
    }
    int counts[256], ns = 0;
    const char *s = spec;
    while (*s) {
        long c = strtol(s, &end, 10);
        if (end == s || c < 0 || ns == 256 || (*end && *end != ',')) {
            snprintf(err, errlen, "respacing \"%s\": want N, ddimN or comma-separated section counts", spec);
            return -1;
        }
        counts[ns++] = (int)c;
        s = *end ? end + 1 : end;
    }
    int size_per = T / ns, extra = T % ns, start = 0, total = 0;
    for (int i = 0; i < ns; i++) {
        int size = size_per + (i < extra ? 1 : 0), count = counts[i];
        if (size < count) {
            snprintf(err, errlen, "respacing \"%s\": cannot take %d steps from a section of %d", spec, count, size);
            return -1;
        }
        double frac = count <= 1 ? 1.0 : (double)(size - 1) / (count - 1), cur = 0.0;
        for (int j = 0; j < count; j++) {
            /* Python's round(): half to even, on a stride accumulated by repeated addition */
            int idx = start + (int)nearbyint(cur);
            if (!keep[idx]) total++;
            keep[idx] = 1;
            cur += frac;
        }
        start += size;
    }
    if (total == 0) {
        snprintf(err, errlen, "respacing \"%s\" keeps no steps", spec);
        return -1;
    }
    return total;
}

void gd_diffusion_free(gd_diffusion *d) {
    if (!d) return;
    free(d->timestep_map);
    free(d->betas); /* one block holds every double array */
    free(d);
}

gd_diffusion *gd_diffusion_new(const char *schedule, int T, const char *respacing, char *err, size_t errlen) {
    if (T < 2 || T > 100000) {
        snprintf(err, errlen, "diffusion_steps %d out of range [2, 100000]", T);
        return NULL;
    }
    double *base = malloc(sizeof(double) * (size_t)T);
    unsigned char *keep = malloc((size_t)T);
    gd_diffusion *d = calloc(1, sizeof *d);
    if (!base || !keep || !d) goto oom;
    if (gd_beta_schedule(schedule, T, base)) {
        snprintf(err, errlen, "unknown noise_schedule \"%s\" (linear, cosine)", schedule);
        goto fail;
    }
    int K = gd_space_timesteps(T, respacing, keep, err, errlen);
    if (K < 0) goto fail;
    d->T = T;
    d->K = K;
    d->timestep_map = malloc(sizeof(int) * (size_t)K);
    double *blk = malloc(sizeof(double) * (size_t)K * 10);
    if (!d->timestep_map || !blk) {
        free(blk);
        goto oom;
    }
    double **arr[10] = {&d->betas, &d->alphas_cumprod, &d->alphas_cumprod_prev, &d->sqrt_recip_alphas_cumprod,
                        &d->sqrt_recipm1_alphas_cumprod, &d->posterior_variance, &d->posterior_log_variance_clipped,
                        &d->posterior_mean_coef1, &d->posterior_mean_coef2, NULL};
    for (int i = 0; i < 9; i++) *arr[i] = blk + (size_t)i * K;
    /* SpacedDiffusion: new betas from the kept cumulative products */
    double ac = 1.0, last = 1.0;
    int k = 0;
    for (int i = 0; i < T; i++) {
        ac *= 1.0 - base[i];
        if (keep[i]) {
            d->betas[k] = 1.0 - ac / last;
            last = ac;
            d->timestep_map[k++] = i;
        }
    }
    for (k = 0; k < K; k++) {
        if (!(d->betas[k] > 0 && d->betas[k] <= 1)) {
            snprintf(err, errlen, "respaced beta %d = %g outside (0, 1]", k, d->betas[k]);
            goto fail;
        }
    }
    double prod = 1.0;
    for (k = 0; k < K; k++) {
        prod *= 1.0 - d->betas[k];
        d->alphas_cumprod[k] = prod;
    }
    for (k = 0; k < K; k++) {
        double a = d->alphas_cumprod[k], ap = k ? d->alphas_cumprod[k - 1] : 1.0, b = d->betas[k];
        d->alphas_cumprod_prev[k] = ap;
        d->sqrt_recip_alphas_cumprod[k] = sqrt(1.0 / a);
        d->sqrt_recipm1_alphas_cumprod[k] = sqrt(1.0 / a - 1);
        d->posterior_variance[k] = b * (1.0 - ap) / (1.0 - a);
        d->posterior_mean_coef1[k] = b * sqrt(ap) / (1.0 - a);
        d->posterior_mean_coef2[k] = (1.0 - ap) * sqrt(1.0 - b) / (1.0 - a);
    }
    /* index 0 uses posterior_variance[1] (the variance at 0 is 0) */
    for (k = 0; k < K; k++)
        d->posterior_log_variance_clipped[k] = log(k == 0 && K > 1 ? d->posterior_variance[1] : d->posterior_variance[k]);
    free(base);
    free(keep);
    return d;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(base);
    free(keep);
    gd_diffusion_free(d);
    return NULL;
}
