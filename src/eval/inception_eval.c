/* Inception input preprocessing (the TF graph's own, or pytorch-fid's) and batching of any
 * number of images through the network. ../shared/spec/inception-fid.md section 2.
 *
 * Bit-exactness of the TF path rests on doing exactly TF1's float32 operations in its order, with
 * no fused multiply-add: the project compiles with -std=c11, under which gcc does not contract
 * a + b * c (-ffp-contract=off); the test compares the bytes' sha256 with the numpy reference. */
#include "gd_eval.h"
#include "gd_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* TF1 legacy ResizeBilinear (align_corners=False, half_pixel_centers=False) weights of one axis. */
typedef struct {
    int64_t lo, hi;
    float lerp;
} tap;

static void tf_taps(int n_in, int n_out, tap *t) {
    float scale = (float)n_in / (float)n_out;
    for (int i = 0; i < n_out; i++) {
        float s = (float)i * scale, f = floorf(s);
        t[i].lo = f > 0 ? (int64_t)f : 0;
        t[i].hi = (int64_t)ceilf(s) < n_in - 1 ? (int64_t)ceilf(s) : n_in - 1;
        t[i].lerp = s - f;
    }
}

/* PyTorch's F.interpolate(bilinear, align_corners=False): half-pixel centres, clamped at 0. */
static void pt_taps(int n_in, int n_out, tap *t) {
    float scale = (float)n_in / (float)n_out;
    for (int i = 0; i < n_out; i++) {
        float s = ((float)i + 0.5f) * scale - 0.5f;
        if (s < 0) s = 0;
        int64_t lo = (int64_t)s;
        t[i].lo = lo;
        t[i].hi = lo + 1 < n_in ? lo + 1 : n_in - 1;
        t[i].lerp = s - (float)lo;
    }
}

void gd_inception_preprocess(gd_inception_resize mode, const uint8_t *nhwc, int n, int h, int w, int c, float *out) {
    enum { S = GD_INCEPTION_SIZE };
    tap ty[S], tx[S];
    if (mode == GD_INCEPTION_RESIZE_TF) {
        tf_taps(h, S, ty);
        tf_taps(w, S, tx);
    } else {
        pt_taps(h, S, ty);
        pt_taps(w, S, tx);
    }
#pragma omp parallel for collapse(2) if ((int64_t)n * S > 256)
    for (int i = 0; i < n; i++)
        for (int oy = 0; oy < S; oy++) {
            const uint8_t *img = nhwc + (size_t)i * h * w * c;
            for (int ch = 0; ch < 3; ch++) {
                int cc = c == 1 ? 0 : ch;
                float *o = out + (((size_t)i * 3 + ch) * S + oy) * S;
                const uint8_t *r0 = img + (size_t)ty[oy].lo * w * c, *r1 = img + (size_t)ty[oy].hi * w * c;
                float ly = ty[oy].lerp;
                for (int ox = 0; ox < S; ox++) {
                    int64_t x0 = tx[ox].lo * c + cc, x1 = tx[ox].hi * c + cc;
                    float lx = tx[ox].lerp;
                    if (mode == GD_INCEPTION_RESIZE_TF) {
                        float tl = r0[x0], tr = r0[x1], bl = r1[x0], br = r1[x1];
                        float top = tl + (tr - tl) * lx, bottom = bl + (br - bl) * lx;
                        float v = top + (bottom - top) * ly;
                        o[ox] = (v - 128.0f) * 0.0078125f; /* the graph's Sub then Mul */
                    } else {
                        float tl = r0[x0] / 255.0f, tr = r0[x1] / 255.0f, bl = r1[x0] / 255.0f, br = r1[x1] / 255.0f;
                        float v = (1.0f - ly) * ((1.0f - lx) * tl + lx * tr) + ly * ((1.0f - lx) * bl + lx * br);
                        o[ox] = 2.0f * v - 1.0f;
                    }
                }
            }
        }
}

struct gd_inception_eval {
    gd_inception *m;
    gd_inception_resize mode;
    float *x; /* one batch of network input */
};

gd_inception_eval *gd_inception_eval_new(gd_inception *m, gd_inception_resize mode, char *err, size_t errlen) {
    gd_inception_eval *e = calloc(1, sizeof *e);
    size_t per = (size_t)3 * GD_INCEPTION_SIZE * GD_INCEPTION_SIZE;
    if (!e || !(e->x = malloc(sizeof(float) * per * (size_t)gd_inception_batch(m)))) {
        free(e);
        gd_errf(err, errlen, "out of memory for the Inception input batch");
        return NULL;
    }
    e->m = m;
    e->mode = mode;
    return e;
}

void gd_inception_eval_free(gd_inception_eval *e) {
    if (!e) return;
    free(e->x);
    free(e);
}

int gd_inception_eval_run(gd_inception_eval *e, const uint8_t *nhwc, int64_t n, int h, int w, int c, float *pool,
                          float *spatial, float *logits, char *err, size_t errlen) {
    if (h < 1 || w < 1 || (c != 1 && c != 3)) {
        gd_errf(err, errlen, "inception: images must be HxWx3 (or x1), got %dx%dx%d", h, w, c);
        return -1;
    }
    int B = gd_inception_batch(e->m);
    for (int64_t i = 0; i < n; i += B) {
        int k = (int)(n - i < B ? n - i : B);
        gd_inception_preprocess(e->mode, nhwc + (size_t)i * h * w * c, k, h, w, c, e->x);
        if (gd_inception_forward(e->m, e->x, k, pool ? pool + i * GD_INCEPTION_POOL : NULL,
                                 spatial ? spatial + i * GD_INCEPTION_SPATIAL : NULL,
                                 logits ? logits + i * GD_INCEPTION_CLASSES : NULL, err, errlen) != 0)
            return -1;
    }
    return 0;
}
