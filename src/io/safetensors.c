/* The dtype table and UTF-8 check shared by the safetensors reader and writer (io/safetensors.h). */
#include "io/safetensors.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [GD_ST_F32] = {"F32", 4}, [GD_ST_F16] = {"F16", 2}, [GD_ST_BF16] = {"BF16", 2},
    [GD_ST_F64] = {"F64", 8}, [GD_ST_I64] = {"I64", 8}, [GD_ST_I32] = {"I32", 4},
    [GD_ST_U8] = {"U8", 1}, [GD_ST_I8] = {"I8", 1},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

int st_dtype_valid(gd_st_dtype t) { return (int)t >= 0 && (int)t < N_DTYPES; }

size_t gd_st_dtype_size(gd_st_dtype t) { return st_dtype_valid(t) ? dtype_info[t].size : 0; }

const char *gd_st_dtype_name(gd_st_dtype t) { return st_dtype_valid(t) ? dtype_info[t].name : "?"; }

int st_dtype_parse(const char *s, gd_st_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (gd_st_dtype)i;
            return 1;
        }
    return 0;
}

size_t st_utf8_check(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1; cp = c & 0x1F; min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2; cp = c & 0x0F; min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n + 1;
    }
    return len;
}
