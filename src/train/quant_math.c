/* The quantizer's formulas (include/gd_quant.h), kept apart from the calibration so that a numpy
 * port (tests/reference/gen_quant_fixtures.py) can check them number for number. Sums in double,
 * rint = nearbyint under the default rounding mode (half to even, as numpy's rint). */
#include "gd_quant.h"

#include <math.h>
#include <string.h>

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

double gd_quant_weight_scale(const float *w, int64_t n, double p) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)w[i]) > m) m = fabs((double)w[i]);
    if (!(m > 0.0)) return 1.0;
    double best = INFINITY, best_s = m / 127.0;
    for (int c = 0; c < GD_QUANT_CANDIDATES; c++) {
        double s = m * (1.0 - 0.01 * c) / 127.0, e = 0.0;
        for (int64_t i = 0; i < n; i++) e += pow(fabs((double)w[i] - clampd(nearbyint((double)w[i] / s), -127, 127) * s), p);
        if (e < best) best = e, best_s = s;
    }
    return best_s;
}

void gd_quant_weight_row(const float *w, int64_t n, float scale, int8_t *q) {
    for (int64_t i = 0; i < n; i++) q[i] = (int8_t)clampd(nearbyint((double)w[i] / (double)scale), -127, 127);
}

void gd_qhist_reset(gd_qhist *h) { memset(h, 0, sizeof *h); }

void gd_qhist_range(gd_qhist *h, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v)) continue;
        if (v < h->lo) h->lo = v;
        if (v > h->hi) h->hi = v;
    }
}

void gd_qhist_add(gd_qhist *h, const float *x, int64_t n) {
    const double w = h->hi - h->lo;
    if (!(w > 0.0)) return;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v)) continue;
        double b = floor((v - h->lo) / w * GD_QHIST_BINS);
        int k = b < 0 ? 0 : b >= GD_QHIST_BINS ? GD_QHIST_BINS - 1 : (int)b;
        h->count[k]++;
        h->n++;
    }
}

double gd_quant_act_params(const gd_qhist *h, double p, double *scale, int *zero) {
    const double w = h->hi - h->lo;
    *scale = 1.0, *zero = 0;
    if (!(w > 0.0) || h->n == 0) return 0.0;
    double best = INFINITY;
    for (int c = 0; c < GD_QUANT_CANDIDATES; c++) {
        double a = 1.0 - 0.01 * c, lo = a * h->lo, s = a * w / 255.0;
        int z = (int)clampd(nearbyint(-lo / s), 0, 255);
        double e = 0.0;
        for (int k = 0; k < GD_QHIST_BINS; k++) {
            if (!h->count[k]) continue;
            double x = h->lo + (k + 0.5) * w / GD_QHIST_BINS;
            double xq = (clampd(nearbyint(x / s) + z, 0, 255) - z) * s;
            e += (double)h->count[k] * pow(fabs(x - xq), p);
        }
        if (e < best) best = e, *scale = s, *zero = z;
    }
    return best;
}

int gd_quant_keep_float(const char *name) {
    return !strcmp(name, "input_blocks.0.0.weight") || !strncmp(name, "out.", 4);
}
