/* PyTorch-compatible CPU random numbers: torch.manual_seed(s) followed by torch.randn(...) on the
 * default CPU generator gives the same float32 values as gd_rng_seed(&r, s) + gd_rng_randn(&r, ...).
 * The sampler uses one generator per sample (seed + index, so the batch size never changes an
 * image) or, with --rng torch, one generator for the batch as guided-diffusion does. */
#ifndef GD_RNG_H
#define GD_RNG_H
#include <stdint.h>

typedef struct {
    uint32_t mt[624];
    int idx;
    /* cached second value of torch's scalar Box-Muller (torch's next_double_normal_sample) */
    int has_next_normal;
    double next_normal;
} gd_rng;

void gd_rng_seed(gd_rng *r, uint64_t seed);
/* n values as torch.randn(n) (any shape with n elements, contiguous) would draw them. */
void gd_rng_randn(gd_rng *r, float *out, int64_t n);
/* torch.randint(0, high, (n,)) */
void gd_rng_randint(gd_rng *r, int64_t high, int64_t *out, int64_t n);
uint32_t gd_rng_u32(gd_rng *r);
#endif
