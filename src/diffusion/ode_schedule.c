/* dpm-solver's NoiseScheduleVP('discrete') and its time grids, in float32 the way the reference
 * computes them (spec fast-solvers.md §2, §3, §5): the networks see (t - 1/N') * 1000 of a float32
 * t, and a logSNR grid built in double would move every interior timestep by up to 0.008 and the
 * final sample by ~1e-2, so parity needs the float32 path here even though the solver could work
 * in double. */
#include "gd_solver.h"
#include "gd_util.h"

#include <math.h>
#include <stdlib.h>

int gd_vp_schedule_init(gd_vp_schedule *s, const double *alphas_cumprod, int T, char *err, size_t errlen) {
    s->n = 0, s->t = s->log_alpha = s->la_rev = s->t_rev = NULL;
    if (T < 2) {
        gd_errf(err, errlen, "the ODE solvers need a schedule of at least 2 steps (got %d)", T);
        return -1;
    }
    /* The trailing knots with lambda < -5.1 are dropped (cosine-1000 keeps 996): near abar = 0 the
     * data prediction (x - sigma eps) / alpha multiplies any eps error by 1/alpha ~ 2e4. */
    int n = T;
    while (n > 2) {
        const double la = 0.5 * log(alphas_cumprod[n - 1]);
        const double lambda = la - 0.5 * log(1.0 - exp(2.0 * la));
        if (!(lambda < -5.1)) break;
        n--;
    }
    s->t = malloc(sizeof(float) * (size_t)n);
    s->log_alpha = malloc(sizeof(float) * (size_t)n);
    s->la_rev = malloc(sizeof(float) * (size_t)n);
    s->t_rev = malloc(sizeof(float) * (size_t)n);
    float *knots = malloc(sizeof(float) * (size_t)(n + 1));
    if (!s->t || !s->log_alpha || !s->la_rev || !s->t_rev || !knots) {
        free(knots);
        gd_vp_schedule_free(s);
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    s->n = n;
    gd_vp_linspace(0.0f, 1.0f, n + 1, knots);
    for (int i = 0; i < n; i++) {
        s->t[i] = knots[i + 1];
        s->log_alpha[i] = (float)(0.5 * log(alphas_cumprod[i]));
    }
    for (int i = 0; i < n; i++) s->la_rev[i] = s->log_alpha[n - 1 - i], s->t_rev[i] = s->t[n - 1 - i];
    free(knots);
    return 0;
}

void gd_vp_schedule_free(gd_vp_schedule *s) {
    free(s->t);
    free(s->log_alpha);
    free(s->la_rev);
    free(s->t_rev);
    s->t = s->log_alpha = s->la_rev = s->t_rev = NULL;
    s->n = 0;
}

/* One element of torch's float32 linspace: counted up from start in the first half, down from end
 * in the second, each a fused multiply-add (the AVX2 kernel's scalar lambda is contracted). */
static float linspace_at(float start, float end, float step, int steps, int i) {
    return i < steps / 2 ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
}

/* torch.linspace for float32 exactly as its CPU kernel computes it (ATen RangeFactoriesKernel, the
 * AVX2 build the fixtures' reference ran on): blocks of 16 are two 8-lane vectors, each
 * base + j*step (not fused) from a base element; the rest element by element. A plain
 * start + i*step differs by an ulp in places, and the networks see these t. Checked against
 * torch for 7..1001 points. */
void gd_vp_linspace(float start, float end, int steps, float *out) {
    if (steps == 1) {
        out[0] = start;
        return;
    }
    const float step = (end - start) / (float)(steps - 1);
    int i = 0;
    for (; i + 16 <= steps; i += 16)
        for (int v = i; v < i + 16; v += 8) {
            const float base = linspace_at(start, end, step, steps, v);
            out[v] = base;
            out[v + 1] = base + step;
            for (int j = 2; j < 8; j++) {
                const float jstep = (float)j * step;
                out[v + j] = base + jstep;
            }
        }
    for (; i < steps; i++) out[i] = linspace_at(start, end, step, steps, i);
}

/* dpm-solver's interpolate_fn: piecewise linear through ascending knots xp, the outer segments
 * extended (no clamping). */
static float interp(float x, const float *xp, const float *yp, int n) {
    /* p = knots at or below x: at a knot the segment starting there (the value is the knot's),
     * the last knot on the last segment; the reference's unstable sort may pick either side,
     * which differs by 1 ulp of log alpha */
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (xp[mid] <= x) lo = mid + 1;
        else hi = mid;
    }
    const int p = lo;
    const int k = p == 0 ? 0 : p >= n ? n - 2 : p - 1;
    const float sx = xp[k], ex = xp[k + 1], sy = yp[k], ey = yp[k + 1];
    return sy + (x - sx) * (ey - sy) / (ex - sx);
}

float gd_vp_log_alpha(const gd_vp_schedule *s, float t) { return interp(t, s->t, s->log_alpha, s->n); }
float gd_vp_alpha(const gd_vp_schedule *s, float t) { return expf(gd_vp_log_alpha(s, t)); }
float gd_vp_sigma(const gd_vp_schedule *s, float t) { return sqrtf(1.0f - expf(2.0f * gd_vp_log_alpha(s, t))); }

float gd_vp_lambda(const gd_vp_schedule *s, float t) {
    const float la = gd_vp_log_alpha(s, t);
    const float log_std = 0.5f * logf(1.0f - expf(2.0f * la));
    return la - log_std;
}

float gd_vp_inverse_lambda(const gd_vp_schedule *s, float lambda) {
    const float y = -2.0f * lambda; /* log alpha = -1/2 logaddexp(0, -2 lambda) */
    const float lae = y > 0 ? y + log1pf(expf(-y)) : log1pf(expf(y));
    const float log_alpha = -0.5f * lae;
    /* the knot table read the other way: log alpha ascends as t descends */
    return interp(log_alpha, s->la_rev, s->t_rev, s->n);
}

float gd_vp_model_t(const gd_vp_schedule *s, float t) { return (t - (float)(1.0 / s->n)) * 1000.0f; }

void gd_vp_time_grid(const gd_vp_schedule *s, gd_time_schedule kind, double t_start, double t_end, int steps, float *grid) {
    switch (kind) {
    case GD_TIME_LOGSNR: {
        gd_vp_linspace(gd_vp_lambda(s, (float)t_start), gd_vp_lambda(s, (float)t_end), steps + 1, grid);
        for (int i = 0; i <= steps; i++) grid[i] = gd_vp_inverse_lambda(s, grid[i]);
        break;
    }
    case GD_TIME_QUADRATIC:
        gd_vp_linspace((float)sqrt(t_start), (float)sqrt(t_end), steps + 1, grid);
        for (int i = 0; i <= steps; i++) grid[i] = grid[i] * grid[i];
        break;
    default:
        gd_vp_linspace((float)t_start, (float)t_end, steps + 1, grid);
    }
}
