/* The NaN/Inf check the samplers run on every network output (a corrupt file would otherwise give
 * black images and success). */
#include "gd_util.h"

#include <string.h>

int gd_all_finite(const float *v, int64_t n) {
    /* an exponent of all ones, tested on the bits with an OR that vectorizes: next to nothing
     * beside a network pass */
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    return !bad;
}
