/* Diffusion schedules against the spec's independent test vectors (adm-reference 5.8, 5.9), and
 * the samplers and guidance against closed forms: Gaussian data (exact epsilon predictor) and a
 * two-Gaussian mixture (exact classifier), where the sample statistics are known in advance. */
#include "gd_guidance.h"
#include "gd_sample.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-300 ? fabs(b) : 1); }

static gd_diffusion *diff(const char *sched, const char *resp) {
    char err[256];
    gd_diffusion *d = gd_diffusion_new(sched, 1000, resp, err, sizeof err);
    CHECK(d != NULL, "%s", err);
    return d;
}

static void test_schedule_vectors(void) {
    struct {
        const char *sched, *resp;
        const char *what;
        int idx;
        double want;
    } v[] = {
        {"linear", "", "beta", 0, 1e-4},
        {"linear", "", "beta", 1, 1.1991991991991993e-4},
        {"linear", "", "beta", 999, 0.02},
        {"linear", "", "abar", 0, 0.9999},
        {"linear", "", "abar", 499, 0.07858724288177824},
        {"linear", "", "abar", 999, 4.035829765375676e-05},
        {"linear", "", "plvc", 0, -9.81672513529567},
        {"linear", "", "plvc", 999, -3.912023829100455},
        {"cosine", "", "beta", 0, 4.128422482196914e-05},
        {"cosine", "", "beta", 1, 4.614175273665033e-05},
        {"cosine", "", "beta", 999, 0.999},
        {"cosine", "", "abar", 0, 0.999958715775178},
        {"cosine", "", "abar", 499, 0.4938435904406382},
        {"cosine", "", "abar", 999, 2.4287669070348567e-09},
        {"cosine", "", "plvc", 0, -10.734082532465003},
        {"cosine", "", "plvc", 999, -0.0010029266746731796},
        {"linear", "250", "beta", 0, 9.999999999998899e-05},
        {"linear", "250", "beta", 1, 5.990655644756426e-04},
        {"linear", "250", "beta", 249, 0.07751934499235003},
        {"linear", "250", "plvc", 0, -9.364628159803084},
        {"linear", "250", "plvc", 249, -2.557231152560974},
        {"cosine", "250", "beta", 0, 4.128422482196914e-05},
        {"cosine", "250", "beta", 1, 2.1369723387476558e-04},
        {"cosine", "250", "beta", 249, 0.9999374992411221},
        {"cosine", "250", "plvc", 0, -10.271626109313454},
        {"cosine", "250", "plvc", 249, -1.0136083710146037e-04},
        {"linear", "ddim25", "beta", 1, 0.02013508946067577},
        {"linear", "ddim25", "beta", 24, 0.5326018230995546},
        {"linear", "ddim25", "abar", 24, 8.741305391053614e-05},
        {"cosine", "ddim25", "beta", 1, 0.005623664058181266},
        {"cosine", "ddim25", "beta", 24, 0.7553555484248476},
        {"cosine", "ddim25", "abar", 24, 0.003689611469036907},
        {"linear", "25", "beta", 1, 0.021950284036596157},
        {"linear", "25", "beta", 24, 0.5643941915982558},
        {"cosine", "25", "beta", 1, 0.006107473408492936},
        {"cosine", "25", "beta", 24, 0.9999994322968777},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        gd_diffusion *d = diff(v[i].sched, v[i].resp);
        if (!d) continue;
        double got = !strcmp(v[i].what, "beta")   ? d->betas[v[i].idx]
                     : !strcmp(v[i].what, "abar") ? d->alphas_cumprod[v[i].idx]
                                                  : d->posterior_log_variance_clipped[v[i].idx];
        double e = rel(got, v[i].want);
        if (e > worst) worst = e;
        CHECK(e < 1e-12, "%s %s %s[%d] = %.17g, spec %.17g", v[i].sched, v[i].resp, v[i].what, v[i].idx, got, v[i].want);
        gd_diffusion_free(d);
    }
    printf("    %zu spec values, worst relative error %.1e\n", sizeof v / sizeof *v, worst);
}

static void check_steps(const char *resp, int n, const int *want, long want_sum) {
    gd_diffusion *d = diff("linear", resp);
    if (!d) return;
    long sum = 0;
    for (int k = 0; k < d->K; k++) sum += d->timestep_map[k];
    CHECK(want_sum < 0 || sum == want_sum, "\"%s\": sum of steps %ld, want %ld", resp, sum, want_sum);
    CHECK(d->K == n, "\"%s\": %d steps, want %d", resp, d->K, n);
    for (int k = 0; want && k < n && k < d->K; k++)
        CHECK(d->timestep_map[k] == want[k], "\"%s\": step %d is %d, want %d", resp, k, d->timestep_map[k], want[k]);
    gd_diffusion_free(d);
}

static void test_respacing_lists(void) {
    /* Python's round-half-to-even: "25" takes 166, 500, 832 where C's round() would take 167, 833 */
    const int s25[] = {0,   42,  83,  125, 166, 208, 250, 291, 333, 375, 416, 458, 500,
                       541, 583, 624, 666, 708, 749, 791, 832, 874, 916, 957, 999};
    const int s50[] = {0,   20,  41,  61,  82,  102, 122, 143, 163, 183, 204, 224, 245, 265, 285, 306, 326,
                       347, 367, 387, 408, 428, 449, 469, 489, 510, 530, 550, 571, 591, 612, 632, 652, 673,
                       693, 714, 734, 754, 775, 795, 816, 836, 856, 877, 897, 917, 938, 958, 979, 999};
    int ddim25[25];
    for (int i = 0; i < 25; i++) ddim25[i] = 40 * i;
    check_steps("25", 25, s25, -1);
    check_steps("50", 50, s50, -1);
    check_steps("250", 250, NULL, 124875);
    check_steps("100", 100, NULL, 49950);
    check_steps("ddim25", 25, ddim25, -1);
    check_steps("", 1000, NULL, 499500);
    check_steps("1000", 1000, NULL, 499500);
    char err[256];
    unsigned char keep[1000];
    CHECK(gd_space_timesteps(1000, "ddim999", keep, err, sizeof err) < 0, "ddim999 has no integer stride");
    CHECK(gd_space_timesteps(1000, "2000", keep, err, sizeof err) < 0, "more steps than exist");
    CHECK(gd_space_timesteps(1000, "abc", keep, err, sizeof err) < 0, "garbage respacing");
    CHECK(gd_space_timesteps(1000, "10,10,5", keep, err, sizeof err) == 25, "sections");
}

/* ---- closed-form denoisers ----
 * Every element is an independent 1-D problem, so one "image" of 64x64 gives 4096 samples. */

typedef struct {
    gd_denoiser base;
    const gd_diffusion *d;
    int n;
    double mu[2], s2; /* one Gaussian (mu[0]) or an equal mixture of two */
    int mixture;
} exact_model;

/* E[x0 | x_t] for the data distribution, and p(component 1 | x_t) */
static double posterior_x0(const exact_model *m, double a, double x, double *p1) {
    double v = a * m->s2 + 1 - a, sa = sqrt(a);
    if (!m->mixture) {
        *p1 = 0;
        return m->mu[0] + sa * m->s2 / v * (x - sa * m->mu[0]);
    }
    double l0 = -(x - sa * m->mu[0]) * (x - sa * m->mu[0]) / (2 * v), l1 = -(x - sa * m->mu[1]) * (x - sa * m->mu[1]) / (2 * v);
    double mx = l0 > l1 ? l0 : l1, w1 = exp(l1 - mx) / (exp(l0 - mx) + exp(l1 - mx));
    *p1 = w1;
    double e0 = m->mu[0] + sa * m->s2 / v * (x - sa * m->mu[0]), e1 = m->mu[1] + sa * m->s2 / v * (x - sa * m->mu[1]);
    return (1 - w1) * e0 + w1 * e1;
}

/* The respaced index of original timestep t. */
static int step_of(const gd_diffusion *d, double t) {
    int k = 0;
    while (k < d->K - 1 && d->timestep_map[k] != t) k++;
    return k;
}

static int exact_eval(gd_denoiser *self, const float *x, double t, float *out, char *err, size_t errlen) {
    exact_model *m = (exact_model *)self;
    double a = m->d->alphas_cumprod[step_of(m->d, t)], p1;
    for (int i = 0; i < m->n; i++) {
        double x0 = posterior_x0(m, a, x[i], &p1);
        out[i] = (float)((x[i] - sqrt(a) * x0) / sqrt(1 - a));
    }
    return 0;
}

/* Exact classifier for the mixture: s * d/dx log p(y = 1 | x_t), per element. */
typedef struct {
    gd_guidance base;
    const exact_model *m;
    const gd_diffusion *d;
    double scale;
} exact_guidance;

static int exact_grad(gd_guidance *self, const gd_step *st, float *g, char *err, size_t errlen) {
    exact_guidance *e = (exact_guidance *)self;
    const float *x = st->x;
    double a = e->d->alphas_cumprod[step_of(e->d, st->t)], v = a * e->m->s2 + 1 - a, sa = sqrt(a), p1;
    for (int i = 0; i < e->m->n; i++) {
        posterior_x0(e->m, a, x[i], &p1);
        /* d/dx log p(1|x) = (1 - p1) * (d l1 - d l0), d l_y = (sa mu_y - x) / v */
        g[i] += (float)(e->scale * (1 - p1) * (sa * (e->m->mu[1] - e->m->mu[0])) / v);
    }
    return 0;
}

typedef struct {
    gd_noise base;
    uint64_t s;
    int n;
} xs_noise;

static int xs_fill(gd_noise *self, int draw, float *out) {
    (void)draw;
    xs_noise *z = (xs_noise *)self;
    for (int i = 0; i < z->n; i += 2) { /* Box-Muller on xorshift uniforms */
        double u[2];
        for (int j = 0; j < 2; j++) {
            z->s ^= z->s << 13, z->s ^= z->s >> 7, z->s ^= z->s << 17;
            u[j] = ((double)(z->s >> 11) + 0.5) / 9007199254740992.0;
        }
        double r = sqrt(-2 * log(u[0]));
        out[i] = (float)(r * cos(2 * M_PI * u[1]));
        if (i + 1 < z->n) out[i + 1] = (float)(r * sin(2 * M_PI * u[1]));
    }
    return 0;
}

static void run_exact(const char *resp, int ddim, gd_var_type vt, exact_model *m, gd_guidance *guide, float *x, int n) {
    gd_diffusion *d = diff("linear", resp);
    m->d = d;
    m->n = n;
    if (guide) ((exact_guidance *)guide)->d = d;
    xs_noise z = {{xs_fill}, 0x1234567887654321ull, n};
    gd_sampler_params p = {.diffusion = d, .var_type = vt, .ddim = ddim, .eta = 0, .clip_denoised = 0,
                           .N = 1, .C = 1, .H = 1, .W = n, .model = &m->base, .guidance = guide, .noise = &z.base};
    gd_sampler *s = gd_sampler_new(&p);
    char err[256] = "";
    CHECK(s && gd_sampler_run(s, x, err, sizeof err) == 0, "sampler run: %s", err);
    gd_sampler_free(s);
    gd_diffusion_free(d);
}

static void moments(const float *x, int n, double *mean, double *var) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *var = ss / (n - 1);
}

/* The sampler's map is affine for Gaussian data with the exact predictor, so the mean and
 * variance it must produce follow in closed form, step by step (DDIM and fixed-small DDPM are
 * biased at finite step counts; this prediction includes that bias). */
static void predict(const gd_diffusion *d, int ddim, gd_var_type vt, double mu, double s2, double *pm, double *pv) {
    double m = 0, v = 1;
    for (int k = d->K - 1; k >= 0; k--) {
        double a = d->alphas_cumprod[k], ap = d->alphas_cumprod_prev[k], vt_ = a * s2 + 1 - a;
        double f[2];
        for (int j = 0; j < 2; j++) {
            double x = m + j, x0 = mu + sqrt(a) * s2 / vt_ * (x - sqrt(a) * mu);
            double eps = (x - sqrt(a) * x0) / sqrt(1 - a);
            f[j] = ddim ? sqrt(ap) * x0 + sqrt(1 - ap) * eps
                        : d->posterior_mean_coef1[k] * x0 + d->posterior_mean_coef2[k] * x;
        }
        double noise = 0;
        if (!ddim && k > 0) noise = vt == GD_VAR_FIXED_LARGE ? d->betas[k] : d->posterior_variance[k];
        m = f[0];
        v = (f[1] - f[0]) * (f[1] - f[0]) * v + noise;
    }
    *pm = m;
    *pv = v;
}

static void test_gaussian_data(void) {
    enum { N = 20000 };
    static float x[N];
    const double mu = 0.3, s2 = 0.04; /* data N(0.3, 0.2^2) */
    struct {
        const char *name, *resp;
        int ddim;
        gd_var_type vt;
        double bias_tol; /* how far the sampler itself may be from the data (relative variance) */
    } c[] = {{"DDPM 1000 fixed-small", "", 0, GD_VAR_FIXED_SMALL, 0.05},
             {"DDPM 1000 fixed-large", "", 0, GD_VAR_FIXED_LARGE, 0.02},
             {"DDPM 50 fixed-large", "50", 0, GD_VAR_FIXED_LARGE, 0.3},
             {"DDIM 1000", "", 1, GD_VAR_FIXED_SMALL, 0.02},
             {"DDIM 25", "ddim25", 1, GD_VAR_FIXED_SMALL, 1}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        exact_model m = {{exact_eval, 0}, NULL, N, {mu, 0}, s2, 0};
        run_exact(c[i].resp, c[i].ddim, c[i].vt, &m, NULL, x, N);
        gd_diffusion *d = diff("linear", c[i].resp);
        double mean, var, pm, pv;
        predict(d, c[i].ddim, c[i].vt, mu, s2, &pm, &pv);
        gd_diffusion_free(d);
        moments(x, N, &mean, &var);
        /* standard errors: sd/sqrt(N) for the mean, var*sqrt(2/N) for the variance */
        double se_m = sqrt(pv / N), se_v = pv * sqrt(2.0 / N);
        printf("    %-22s mean %.4f (predicted %.4f, %.1f se)  var %.5f (predicted %.5f, %.1f se; data %.5f)\n",
               c[i].name, mean, pm, fabs(mean - pm) / se_m, var, pv, fabs(var - pv) / se_v, s2);
        CHECK(fabs(mean - pm) < 5 * se_m, "%s: mean %.5f vs %.5f", c[i].name, mean, pm);
        CHECK(fabs(var - pv) < 5 * se_v, "%s: variance %.5f vs predicted %.5f", c[i].name, var, pv);
        CHECK(fabs(pm - mu) < 1e-3 && fabs(pv - s2) < c[i].bias_tol * s2, "%s: sampler predicts %.5f, %.5f for data %.3f, %.5f",
              c[i].name, pm, pv, mu, s2);
    }
}

/* Standard normal CDF */
static double Phi(double z) { return 0.5 * erfc(-z / sqrt(2)); }

static void test_mixture_guidance(void) {
    enum { N = 20000 };
    static float x[N];
    const double m1 = 0.25, s2 = 0.0625; /* components N(-0.25, 0.25^2) and N(+0.25, 0.25^2) */
    /* Guidance with scale 1 and the exact classifier turns the unconditional sampler into one for
     * p(x | y=1); the Bayes rule at t=0 (x > 0) then fires with probability Phi(m/s) = 0.841. */
    double want = Phi(m1 / sqrt(s2));
    for (int ddim = 0; ddim < 2; ddim++) {
        for (int guided = 0; guided < 2; guided++) {
            exact_model m = {{exact_eval, 0}, NULL, N, {-m1, m1}, s2, 1};
            exact_guidance g = {{exact_grad, GD_GUIDE_SCORE, NULL}, &m, NULL, 1.0};
            run_exact("", ddim, GD_VAR_FIXED_LARGE, &m, guided ? &g.base : NULL, x, N);
            int pos = 0;
            for (int i = 0; i < N; i++) pos += x[i] > 0;
            double frac = (double)pos / N, target = guided ? want : 0.5, se = sqrt(target * (1 - target) / N);
            printf("    %s %-10s P(class 1) = %.4f, predicted %.4f (%.1f se)\n", ddim ? "DDIM 1000" : "DDPM 1000",
                   guided ? "guided" : "unguided", frac, target, fabs(frac - target) / se);
            CHECK(fabs(frac - target) < 5 * se + 0.01, "%s: fraction %.4f vs %.4f", guided ? "guided" : "unguided", frac,
                  target);
        }
    }
}

/* The same exact classifier stated in eps space (d = -sigma_t * grad): a solver must turn it back
 * into the score-space term, so both give the same samples to float rounding, whatever the sampler. */
static int exact_grad_eps(gd_guidance *self, const gd_step *st, float *d, char *err, size_t errlen) {
    enum { MAXN = 4096 };
    static float g[MAXN];
    const int n = st->N * st->C * st->H * st->W;
    if (n > MAXN) return -1;
    memset(g, 0, sizeof(float) * (size_t)n);
    if (exact_grad(self, st, g, err, errlen)) return -1;
    for (int i = 0; i < n; i++) d[i] += (float)(-st->sigma * g[i]);
    return 0;
}

static void test_guidance_spaces(void) {
    enum { N = 4096 };
    static float xs[N], xe[N];
    const double m1 = 0.25, s2 = 0.0625;
    for (int ddim = 0; ddim < 2; ddim++) {
        exact_model m = {{exact_eval, 0}, NULL, N, {-m1, m1}, s2, 1};
        exact_guidance gs = {{exact_grad, GD_GUIDE_SCORE, NULL}, &m, NULL, 1.0};
        exact_guidance ge = {{exact_grad_eps, GD_GUIDE_EPS, NULL}, &m, NULL, 1.0};
        run_exact("50", ddim, GD_VAR_FIXED_LARGE, &m, &gs.base, xs, N);
        run_exact("50", ddim, GD_VAR_FIXED_LARGE, &m, &ge.base, xe, N);
        double worst = 0;
        for (int i = 0; i < N; i++) worst = fmax(worst, fabs((double)xs[i] - xe[i]));
        printf("    %s 50 steps: score-space vs eps-space term, max |difference| %.2e\n", ddim ? "DDIM" : "DDPM", worst);
        CHECK(worst < 1e-4, "%s: the eps-space term gives other samples (%.3e)", ddim ? "DDIM" : "DDPM", worst);
    }
}

GD_TEST_TABLE(gd_tests_sample) = {
    {"schedules: spec test vectors", test_schedule_vectors},
    {"respacing: step lists", test_respacing_lists},
    {"samplers: Gaussian data reproduces mean and variance", test_gaussian_data},
    {"guidance: exact classifier on a two-Gaussian mixture", test_mixture_guidance},
    {"guidance: score-space and eps-space terms agree", test_guidance_spaces},
    {NULL, NULL},
};
