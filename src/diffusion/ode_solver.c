/* DPM-Solver++ (2M, 3M, 2S) and UniPC (bh1/bh2) in data prediction over the float32 schedule of
 * ode_schedule.c (spec fast-solvers.md §4, §6, §8, §9). Scalars and element updates are float32
 * in the reference's order of operations, so a run matches the PyTorch reference to float
 * rounding; every buffer is planned in gd_solver_new and the run allocates nothing.
 *
 * Guidance enters as the spec's model wrapper does: eps~ = eps - sigma_t g with g the chain's
 * score-space sum (already scaled), then x0 = (x - sigma_t eps~) / alpha_t is corrected (clip or
 * dynamic thresholding). So the solvers clip the guided x0, where guided-diffusion's DDIM clips the
 * unguided one and shifts epsilon afterwards. */
#include "gd_solver.h"
#include "gd_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct gd_solver {
    gd_solver_params p;
    gd_vp_schedule vp;
    int64_t n, per;
    int outer, nfe, evals;
    float *grid;             /* [outer+1] continuous t of the outer steps */
    int *orders;             /* [outer] order of each outer step (2S: 1 or 2) */
    float *eval_t;           /* [nfe] model timesteps, in order */
    float *out, *eps, *g, *work;
    double *sortbuf;         /* |x0| of one sample, for the thresholding quantile */
    float *hist[3];          /* multistep history of x0, newest last */
    float hist_t[3];
    float *xt_, *m_new;      /* UniPC base step, the corrector's x0; 2S: x at s1, its x0 */
};

/* ---- the model wrapper: guided, corrected data prediction at (x, t) ---- */

/* Imagen's dynamic thresholding as dpm-solver applies it: per sample, s = max(quantile(|x0|,
 * ratio), max_val) with torch.quantile's linear interpolation, then x0 = clamp(x0, -s, s) / s. */
static void dynamic_threshold(gd_solver *s, float *x0) {
    const int64_t per = s->per;
    const float q = (float)s->p.thr_ratio, floor_ = (float)s->p.thr_max;
    const float rank = q * (float)(per - 1);
    const int64_t below = (int64_t)floorf(rank);
    const float w = rank - (float)below;
    for (int b = 0; b < s->p.N; b++) {
        float *v = x0 + b * per;
        for (int64_t i = 0; i < per; i++) s->sortbuf[i] = fabsf(v[i]);
        float lo = (float)gd_select_kth(s->sortbuf, per, below), hi = lo;
        if (below + 1 < per) { /* the next order statistic: the smallest of the part above */
            hi = INFINITY;
            for (int64_t i = below + 1; i < per; i++)
                if (s->sortbuf[i] < hi) hi = (float)s->sortbuf[i];
        }
        const float qv = w < 0.5f ? lo + w * (hi - lo) : hi - (hi - lo) * (1.0f - w); /* torch.lerp */
        const float sc = qv > floor_ ? qv : floor_;
        for (int64_t i = 0; i < per; i++) {
            float c = v[i] < -sc ? -sc : v[i] > sc ? sc : v[i];
            v[i] = c / sc;
        }
    }
}

static int model_x0(gd_solver *s, const float *x, float t, float *x0, char *err, size_t errlen) {
    const gd_solver_params *p = &s->p;
    const float t_in = gd_vp_model_t(&s->vp, t);
    const float alpha = gd_vp_alpha(&s->vp, t), sigma = gd_vp_sigma(&s->vp, t);
    if (s->evals < s->nfe) s->eval_t[s->evals] = t_in;
    s->evals++;
    /* the net denoiser checks its output itself; a denoiser from elsewhere may not */
    const int failed = p->model->eval(p->model, x, (double)t_in, s->out, err, errlen);
    if (failed || !gd_all_finite(s->out, s->n * (p->model->learned_sigma ? 2 : 1))) {
        char why[512];
        snprintf(why, sizeof why, "%s", failed && err ? err : "the model produced non-finite values (NaN/Inf)");
        gd_errf(err, errlen, "evaluation %d of %d (t=%.3f): %s", s->evals, s->nfe, t_in, why);
        return -1;
    }
    const int ls = p->model->learned_sigma;
    for (int b = 0; b < p->N; b++) memcpy(s->eps + b * s->per, s->out + b * s->per * (ls ? 2 : 1), sizeof(float) * (size_t)s->per);
    if (p->guidance) {
        for (int64_t i = 0; i < s->n; i++) x0[i] = (x[i] - sigma * s->eps[i]) / alpha; /* the unguided x0 terms may read */
        gd_step st = {.x = x, .t = t_in, .eps = s->eps, .x0 = x0, .alpha = alpha, .sigma = sigma, .y = p->y,
                      .N = p->N, .C = p->C, .H = p->H, .W = p->W};
        if (gd_guidance_score(p->guidance, &st, s->g, s->work, err, errlen)) return -1;
        if (!gd_all_finite(s->g, s->n)) {
            gd_errf(err, errlen, "evaluation %d of %d (t=%.3f): the guidance produced non-finite values (NaN/Inf); a classifier's weights may be corrupt",
                    s->evals, s->nfe, t_in);
            return -1;
        }
        for (int64_t i = 0; i < s->n; i++) s->eps[i] = s->eps[i] - sigma * s->g[i];
    }
    for (int64_t i = 0; i < s->n; i++) x0[i] = (x[i] - sigma * s->eps[i]) / alpha;
    if (p->correct == GD_X0_CLIP)
        for (int64_t i = 0; i < s->n; i++) x0[i] = x0[i] < -1.0f ? -1.0f : x0[i] > 1.0f ? 1.0f : x0[i];
    else if (p->correct == GD_X0_DYNAMIC)
        dynamic_threshold(s, x0);
    return 0;
}

/* ---- DPM-Solver++ multistep ---- */

/* One update from the newest history entry (time s) to t with order k (1..3). */
static void dpmpp_multistep(gd_solver *s, float *x, float t, int k, int nh) {
    const gd_vp_schedule *vp = &s->vp;
    const float *m0 = s->hist[nh - 1], *m1 = nh > 1 ? s->hist[nh - 2] : NULL, *m2 = nh > 2 ? s->hist[nh - 3] : NULL;
    const float t0 = s->hist_t[nh - 1];
    const float lam_t = gd_vp_lambda(vp, t), lam0 = gd_vp_lambda(vp, t0);
    const float sig0 = gd_vp_sigma(vp, t0), sig_t = gd_vp_sigma(vp, t), alpha_t = gd_vp_alpha(vp, t);
    const float h = lam_t - lam0, phi1 = expm1f(-h);
    const float a = sig_t / sig0, b1 = alpha_t * phi1;
    if (k == 1) {
        for (int64_t i = 0; i < s->n; i++) x[i] = a * x[i] - b1 * m0[i];
    } else if (k == 2) {
        const float lam1 = gd_vp_lambda(vp, s->hist_t[nh - 2]);
        const float h0 = lam0 - lam1, r0 = h0 / h, ir0 = 1.0f / r0;
        for (int64_t i = 0; i < s->n; i++) {
            const float d = ir0 * (m0[i] - m1[i]);
            x[i] = a * x[i] - b1 * m0[i] - 0.5f * b1 * d;
        }
    } else {
        const float lam1 = gd_vp_lambda(vp, s->hist_t[nh - 2]), lam2 = gd_vp_lambda(vp, s->hist_t[nh - 3]);
        const float h1 = lam1 - lam2, h0 = lam0 - lam1;
        const float r0 = h0 / h, r1 = h1 / h, ir0 = 1.0f / r0, ir1 = 1.0f / r1;
        const float c1 = r0 / (r0 + r1), c2 = 1.0f / (r0 + r1);
        const float phi2 = phi1 / h + 1.0f, phi3 = phi2 / h - 0.5f;
        const float b2 = alpha_t * phi2, b3 = alpha_t * phi3;
        for (int64_t i = 0; i < s->n; i++) {
            const float d10 = ir0 * (m0[i] - m1[i]), d11 = ir1 * (m1[i] - m2[i]);
            const float D1 = d10 + c1 * (d10 - d11), D2 = c2 * (d10 - d11);
            x[i] = a * x[i] - b1 * m0[i] + b2 * D1 - b3 * D2;
        }
    }
}

/* ---- UniPC ---- */

/* Solves the k x k system A r = b in place (Gaussian elimination with partial pivoting) in double:
 * the reference's float32 LAPACK solve is itself off the exact rho by cond(R) ulps, and the
 * correctly rounded rho lands closer to it than a float32 elimination in another order. */
static void solve_small(float Af[3][3], float *bf, int k) {
    double A[3][3], b[3];
    for (int r = 0; r < k; r++) {
        for (int c = 0; c < k; c++) A[r][c] = Af[r][c];
        b[r] = bf[r];
    }
    for (int c = 0; c < k; c++) {
        int piv = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(A[r][c]) > fabs(A[piv][c])) piv = r;
        if (piv != c) {
            for (int j = 0; j < k; j++) {
                double t = A[c][j];
                A[c][j] = A[piv][j], A[piv][j] = t;
            }
            double t = b[c];
            b[c] = b[piv], b[piv] = t;
        }
        for (int r = c + 1; r < k; r++) {
            const double f = A[r][c] / A[c][c];
            for (int j = c; j < k; j++) A[r][j] -= f * A[c][j];
            b[r] -= f * b[c];
        }
    }
    for (int c = k - 1; c >= 0; c--) {
        double v = b[c];
        for (int j = c + 1; j < k; j++) v -= A[c][j] * b[j];
        b[c] = v / A[c][c];
    }
    for (int r = 0; r < k; r++) bf[r] = (float)b[r];
}

/* UniP (and UniC when corrector) from the newest history entry to t with order k. The corrector's
 * model value (at the predicted x) goes to s->m_new; x receives the corrected x_t. */
static int unipc_update(gd_solver *s, float *x, float t, int k, int nh, int corrector, char *err, size_t errlen) {
    const gd_vp_schedule *vp = &s->vp;
    const float t0 = s->hist_t[nh - 1];
    const float *m0 = s->hist[nh - 1];
    const float lam0 = gd_vp_lambda(vp, t0), lam_t = gd_vp_lambda(vp, t);
    const float sig0 = gd_vp_sigma(vp, t0), sig_t = gd_vp_sigma(vp, t), alpha_t = gd_vp_alpha(vp, t);
    const float h = lam_t - lam0, hh = -h;
    float rks[3];
    const float *mk[2] = {NULL, NULL};
    for (int i = 1; i < k; i++) {
        rks[i - 1] = (gd_vp_lambda(vp, s->hist_t[nh - 1 - i]) - lam0) / h;
        mk[i - 1] = s->hist[nh - 1 - i];
    }
    rks[k - 1] = 1.0f;
    const float h_phi_1 = expm1f(hh);
    const float B = s->p.unipc_bh1 ? hh : expm1f(hh);
    float R[3][3], bvec[3], h_phi_k = h_phi_1 / hh - 1.0f;
    double fact = 1;
    for (int i = 1; i <= k; i++) {
        for (int j = 0; j < k; j++) R[i - 1][j] = i == 1 ? 1.0f : powf(rks[j], (float)(i - 1));
        bvec[i - 1] = h_phi_k * (float)fact / B;
        fact *= (i + 1);
        h_phi_k = h_phi_k / hh - (float)(1.0 / fact);
    }
    float rho_p[3] = {0.5f}, rho_c[3] = {0.5f};
    if (k > 2) {
        float A[3][3], bb[3];
        for (int r = 0; r < k - 1; r++) {
            for (int c = 0; c < k - 1; c++) A[r][c] = R[r][c];
            bb[r] = bvec[r];
        }
        solve_small(A, bb, k - 1);
        for (int r = 0; r < k - 1; r++) rho_p[r] = bb[r];
    }
    if (corrector && k > 1) {
        float A[3][3], bb[3];
        for (int r = 0; r < k; r++) {
            for (int c = 0; c < k; c++) A[r][c] = R[r][c];
            bb[r] = bvec[r];
        }
        solve_small(A, bb, k);
        for (int r = 0; r < k; r++) rho_c[r] = bb[r];
    }
    const float a = sig_t / sig0, b1 = alpha_t * h_phi_1, aB = alpha_t * B;
    for (int64_t i = 0; i < s->n; i++) {
        const float base = a * x[i] - b1 * m0[i];
        s->xt_[i] = base;
        float pred = 0;
        for (int j = 0; j < k - 1; j++) pred = j ? pred + rho_p[j] * ((mk[j][i] - m0[i]) / rks[j]) : rho_p[0] * ((mk[0][i] - m0[i]) / rks[0]);
        x[i] = k > 1 ? base - aB * pred : base;
    }
    if (!corrector) return 0;
    if (model_x0(s, x, t, s->m_new, err, errlen)) return -1;
    for (int64_t i = 0; i < s->n; i++) {
        float corr = 0;
        for (int j = 0; j < k - 1; j++) corr = j ? corr + rho_c[j] * ((mk[j][i] - m0[i]) / rks[j]) : rho_c[0] * ((mk[0][i] - m0[i]) / rks[0]);
        const float d1t = s->m_new[i] - m0[i];
        x[i] = s->xt_[i] - aB * (corr + rho_c[k - 1] * d1t);
    }
    return 0;
}

/* ---- DPM-Solver++(2S) ---- */

static int dpmpp_2s_step(gd_solver *s, float *x, float ts, float t, int order, char *err, size_t errlen) {
    const gd_vp_schedule *vp = &s->vp;
    float *ms = s->hist[0], *xs1 = s->xt_, *ms1 = s->m_new;
    if (model_x0(s, x, ts, ms, err, errlen)) return -1;
    const float lam_s = gd_vp_lambda(vp, ts), lam_t = gd_vp_lambda(vp, t);
    const float h = lam_t - lam_s;
    const float sig_s = gd_vp_sigma(vp, ts), sig_t = gd_vp_sigma(vp, t), alpha_t = gd_vp_alpha(vp, t);
    const float phi1 = expm1f(-h);
    if (order == 1) {
        const float a = sig_t / sig_s, b1 = alpha_t * phi1;
        for (int64_t i = 0; i < s->n; i++) x[i] = a * x[i] - b1 * ms[i];
        return 0;
    }
    /* r1 from the inner grid of this outer step, as the reference's get_time_steps(s, t, 2) */
    float inner[3];
    gd_vp_time_grid(vp, s->p.time_schedule, (double)ts, (double)t, 2, inner);
    const float li0 = gd_vp_lambda(vp, inner[0]), li1 = gd_vp_lambda(vp, inner[1]), li2 = gd_vp_lambda(vp, inner[2]);
    const float r1 = (li1 - li0) / (li2 - li0);
    const float s1 = gd_vp_inverse_lambda(vp, lam_s + r1 * h);
    const float sig_s1 = gd_vp_sigma(vp, s1), alpha_s1 = gd_vp_alpha(vp, s1);
    const float phi11 = expm1f(-r1 * h);
    const float a1 = sig_s1 / sig_s, c1 = alpha_s1 * phi11;
    for (int64_t i = 0; i < s->n; i++) xs1[i] = a1 * x[i] - c1 * ms[i];
    if (model_x0(s, xs1, s1, ms1, err, errlen)) return -1;
    const float a = sig_t / sig_s, b1 = alpha_t * phi1, half = 0.5f / r1;
    for (int64_t i = 0; i < s->n; i++) x[i] = a * x[i] - b1 * ms[i] - half * b1 * (ms1[i] - ms[i]);
    return 0;
}

/* ---- plan and run ---- */

gd_solver *gd_solver_new(const gd_solver_params *p, char *err, size_t errlen) {
    if (p->steps < 1 || p->steps > 100000) {
        gd_errf(err, errlen, "--steps: %d model evaluations is out of range for an ODE solver [1, 100000]", p->steps);
        return NULL;
    }
    const int order = p->kind == GD_SOLVER_DPMPP_3M ? 3 : p->kind == GD_SOLVER_UNIPC ? (p->order ? p->order : 2) : 2;
    if (order < 1 || order > 3) {
        gd_errf(err, errlen, "UniPC order %d is not 1, 2 or 3", order);
        return NULL;
    }
    if (p->kind != GD_SOLVER_DPMPP_2S && p->steps < order) {
        gd_errf(err, errlen, "--steps %d: an order-%d multistep solver needs at least %d steps", p->steps, order, order);
        return NULL;
    }
    if (p->correct == GD_X0_DYNAMIC && !(p->thr_ratio > 0 && p->thr_ratio <= 1 && p->thr_max > 0 && isfinite(p->thr_max))) {
        gd_errf(err, errlen, "--thresholding: ratio must be in (0, 1] and max > 0");
        return NULL;
    }
    gd_solver *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->p = *p;
    s->p.order = order;
    if (gd_vp_schedule_init(&s->vp, p->alphas_cumprod, p->T, err, errlen)) {
        free(s);
        return NULL;
    }
    s->per = (int64_t)p->C * p->H * p->W;
    s->n = s->per * p->N;
    const int S = p->steps;
    s->nfe = S;
    s->outer = p->kind == GD_SOLVER_DPMPP_2S ? (S + 1) / 2 : S;
    s->grid = malloc(sizeof(float) * (size_t)(S + 1));
    s->orders = malloc(sizeof(int) * (size_t)s->outer);
    s->eval_t = malloc(sizeof(float) * (size_t)s->nfe);
    const size_t n = (size_t)s->n;
    s->out = malloc(sizeof(float) * n * (p->model->learned_sigma ? 2 : 1));
    s->eps = malloc(sizeof(float) * n);
    s->g = malloc(sizeof(float) * n);
    s->work = malloc(sizeof(float) * n);
    s->sortbuf = malloc(sizeof(double) * (size_t)s->per);
    s->xt_ = malloc(sizeof(float) * n);
    s->m_new = malloc(sizeof(float) * n);
    for (int i = 0; i < 3; i++) s->hist[i] = malloc(sizeof(float) * n);
    if (!s->grid || !s->orders || !s->eval_t || !s->out || !s->eps || !s->g || !s->work || !s->sortbuf || !s->xt_ ||
        !s->m_new || !s->hist[0] || !s->hist[1] || !s->hist[2]) {
        gd_solver_free(s);
        goto oom;
    }
    const double t_end = 1.0 / s->vp.n;
    if (p->kind == GD_SOLVER_DPMPP_2S) {
        for (int k = 0; k < s->outer; k++) s->orders[k] = (S % 2 && k == s->outer - 1) ? 1 : 2;
        if (p->time_schedule == GD_TIME_LOGSNR) {
            gd_vp_time_grid(&s->vp, p->time_schedule, 1.0, t_end, s->outer, s->grid);
        } else { /* the S+1-point grid taken at the cumulative orders */
            float *full = malloc(sizeof(float) * (size_t)(S + 1));
            if (!full) {
                gd_solver_free(s);
                goto oom;
            }
            gd_vp_time_grid(&s->vp, p->time_schedule, 1.0, t_end, S, full);
            s->grid[0] = full[0];
            for (int k = 0, c = 0; k < s->outer; k++) c += s->orders[k], s->grid[k + 1] = full[c];
            free(full);
        }
    } else {
        gd_vp_time_grid(&s->vp, p->time_schedule, 1.0, t_end, S, s->grid);
        const int lof = p->lower_order_final && (p->kind == GD_SOLVER_UNIPC || S < 10);
        for (int i = 1; i <= S; i++) s->orders[i - 1] = i < order ? i : lof ? (order < S + 1 - i ? order : S + 1 - i) : order;
    }
    return s;
oom:
    gd_errf(err, errlen, "out of memory for the ODE solver's buffers");
    return NULL;
}

void gd_solver_free(gd_solver *s) {
    if (!s) return;
    gd_vp_schedule_free(&s->vp);
    free(s->grid);
    free(s->orders);
    free(s->eval_t);
    free(s->out);
    free(s->eps);
    free(s->g);
    free(s->work);
    free(s->sortbuf);
    free(s->xt_);
    free(s->m_new);
    for (int i = 0; i < 3; i++) free(s->hist[i]);
    free(s);
}

int gd_solver_outer_steps(const gd_solver *s) { return s->outer; }
int gd_solver_nfe(const gd_solver *s) { return s->nfe; }
double gd_solver_eval_t(const gd_solver *s, int i) { return i >= 0 && i < s->evals && i < s->nfe ? s->eval_t[i] : NAN; }
double gd_solver_grid_t(const gd_solver *s, int j) { return j >= 0 && j <= s->outer ? gd_vp_model_t(&s->vp, s->grid[j]) : NAN; }

/* Appends a history slot for time t, dropping the oldest when all `order` slots are full;
 * returns the slot to fill. The buffers rotate, nothing is copied. */
static float *push_slot(gd_solver *s, int *nh, float t) {
    const int cap = s->p.order < 1 ? 1 : s->p.order > 3 ? 3 : s->p.order;
    if (*nh >= cap) {
        float *old = s->hist[0];
        for (int i = 0; i + 1 < cap; i++) s->hist[i] = s->hist[i + 1], s->hist_t[i] = s->hist_t[i + 1];
        s->hist[cap - 1] = old;
        (*nh)--;
    }
    s->hist_t[*nh] = t;
    return s->hist[(*nh)++];
}

static int run_multistep(gd_solver *s, float *x, char *err, size_t errlen) {
    const int S = s->p.steps, unipc = s->p.kind == GD_SOLVER_UNIPC;
    int nh = 0;
    if (model_x0(s, x, s->grid[0], push_slot(s, &nh, s->grid[0]), err, errlen)) return -1;
    for (int i = 1; i <= S; i++) {
        const float t = s->grid[i];
        const int k = s->orders[i - 1];
        if (unipc) {
            const int corrector = i < S;
            if (unipc_update(s, x, t, k, nh, corrector, err, errlen)) return -1;
            if (corrector) { /* the corrector's x0 (at the predicted x) becomes the history entry */
                float *slot = push_slot(s, &nh, t);
                s->hist[nh - 1] = s->m_new, s->m_new = slot;
            }
        } else {
            dpmpp_multistep(s, x, t, k, nh);
            if (i < S && model_x0(s, x, t, push_slot(s, &nh, t), err, errlen)) return -1;
        }
        if (s->p.on_step) s->p.on_step(s->p.user, i, S, s->hist[nh - 1]);
        if (s->p.on_x) s->p.on_x(s->p.user, i, x);
    }
    return 0;
}

int gd_solver_run(gd_solver *s, float *x, char *err, size_t errlen) {
    s->evals = 0;
    if (s->p.noise->fill(s->p.noise, 0, x)) {
        gd_errf(err, errlen, "noise source failed");
        return -1;
    }
    if (s->p.kind != GD_SOLVER_DPMPP_2S) return run_multistep(s, x, err, errlen);
    for (int k = 0; k < s->outer; k++) {
        if (dpmpp_2s_step(s, x, s->grid[k], s->grid[k + 1], s->orders[k], err, errlen)) return -1;
        if (s->p.on_step) s->p.on_step(s->p.user, k + 1, s->outer, s->hist[0]);
        if (s->p.on_x) s->p.on_x(s->p.user, k + 1, x);
    }
    return 0;
}
