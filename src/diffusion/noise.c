/* Gaussian noise for the samplers from PyTorch-compatible generators (see gd_sample.h). */
#include "gd_sample.h"

#include <stdlib.h>
#include <string.h>

static int fill(gd_noise *self, int draw, float *out) {
    (void)draw; /* generators advance with every call; draws come in order */
    gd_rng_noise *z = (gd_rng_noise *)self;
    if (!z->per_sample) {
        gd_rng_randn(&z->gens[0], out, (int64_t)z->N * z->per);
        return 0;
    }
    for (int i = 0; i < z->N; i++) gd_rng_randn(&z->gens[i], out + (int64_t)i * z->per, z->per);
    return 0;
}

int gd_rng_noise_init(gd_rng_noise *z, int N, int per, int per_sample) {
    memset(z, 0, sizeof *z);
    z->gens = calloc((size_t)(per_sample ? N : 1), sizeof(gd_rng));
    if (!z->gens) return -1;
    z->base.fill = fill;
    z->N = N;
    z->per = per;
    z->per_sample = per_sample;
    return 0;
}

void gd_rng_noise_seed(gd_rng_noise *z, const uint64_t *seeds) {
    for (int i = 0; i < (z->per_sample ? z->N : 1); i++) gd_rng_seed(&z->gens[i], seeds[i]);
}

void gd_rng_noise_free(gd_rng_noise *z) {
    free(z->gens);
    memset(z, 0, sizeof *z);
}
