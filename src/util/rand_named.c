/* Values that are a pure function of (name, index): tests and benchmarks fill large random-weight
 * networks (Inception's 23.9M parameters) identically here and in the Python reference
 * (tests/reference/inception.py), so no weight file needs to be stored. */
#include "gd_util.h"

uint64_t gd_fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double gd_rand_named_u(uint64_t name_hash, uint64_t i) {
    return (double)(splitmix64(name_hash + i * 0x9E3779B97F4A7C15ull) >> 40) * 0x1p-24;
}

void gd_rand_named_fill(const char *name, float *dst, int64_t n, double lo, double hi) {
    uint64_t h = gd_fnv1a64(name);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) dst[i] = (float)(lo + (hi - lo) * gd_rand_named_u(h, (uint64_t)i));
}
