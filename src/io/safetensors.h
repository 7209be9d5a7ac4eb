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

/* A file made by another reader of the I/O layer (io/pt.c): takes over tensors[0..count) (the
 * array and each malloc()ed name), the malloc()ed blocks owned[0..nowned) (and the array) and,
 * when map is not NULL, the mapping map[0..map_len), all released by gd_st_close -- or at once,
 * when this fails (returns NULL: out of memory). No metadata. */
gd_st_file *st_file_adopt(gd_st_tensor *tensors, int count, void **owned, int nowned, void *map, size_t map_len);
#endif
