/* Pieces of the safetensors format that the reader (safetensors_read.c) and the writer
 * (safetensors_write.c) share; internal to the I/O layer. See include/gd_safetensors.h for the
 * format. */
#ifndef GD_IO_SAFETENSORS_H
#define GD_IO_SAFETENSORS_H
#include "gd_safetensors.h"

#define ST_MAX_HEADER   (100u * 1024u * 1024u)   /* header length must be below this */
#define ST_MAX_NUMEL    ((uint64_t)1 << 40)      /* per tensor element limit */
#define ST_MAX_DIMS     8

int st_dtype_valid(gd_st_dtype t);
/* The dtype named s ("F32", ...); 0 if there is none. */
int st_dtype_parse(const char *s, gd_st_dtype *out);

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF). Returns the offset of the first
 * bad byte, or len if the whole buffer is valid. */
size_t st_utf8_check(const uint8_t *s, size_t len);
#endif
