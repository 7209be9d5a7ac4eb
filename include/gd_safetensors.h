/* safetensors reader (mmap, cJSON header) and writer.
 * Format: u64 little-endian header length L, L bytes of JSON, then the data section.
 * The JSON maps tensor names to {"dtype","shape","data_offsets":[begin,end]} (offsets relative to the
 * data section) plus an optional "__metadata__" object of string values. */
#ifndef GD_SAFETENSORS_H
#define GD_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GD_ST_F32, GD_ST_F16, GD_ST_BF16, GD_ST_F64, GD_ST_I64, GD_ST_I32, GD_ST_U8, GD_ST_I8,
} gd_st_dtype;

typedef struct {
    char *name;
    gd_st_dtype dtype;
    int ndim;              /* 0..8 */
    int64_t shape[8];
    int64_t numel;
    const void *data;      /* points into the mapping; may be unaligned for its dtype */
    size_t nbytes;
} gd_st_tensor;

typedef struct gd_st_file gd_st_file;

/* Opens and validates a whole file. On any problem returns NULL and writes one line (no newline)
 * naming the file and the first bad item into err. Never crashes on malformed input. */
gd_st_file *gd_st_open(const char *path, char *err, size_t errlen);
/* Same, on a buffer the caller keeps alive (used by the fuzzer). */
gd_st_file *gd_st_open_mem(const void *buf, size_t len, char *err, size_t errlen);
void gd_st_close(gd_st_file *f);

int gd_st_count(const gd_st_file *f);
const gd_st_tensor *gd_st_get(const gd_st_file *f, int i);
const gd_st_tensor *gd_st_find(const gd_st_file *f, const char *name);   /* NULL if absent */
const char *gd_st_metadata(const gd_st_file *f, const char *key);        /* NULL if absent */

size_t gd_st_dtype_size(gd_st_dtype t);
const char *gd_st_dtype_name(gd_st_dtype t);

/* Writer: collect tensors, then write atomically (temporary file + rename). Data is copied. */
typedef struct gd_st_writer gd_st_writer;
gd_st_writer *gd_st_writer_new(void);
int gd_st_writer_add(gd_st_writer *w, const char *name, gd_st_dtype dtype, int ndim,
                     const int64_t *shape, const void *data);
int gd_st_writer_meta(gd_st_writer *w, const char *key, const char *value);
int gd_st_writer_save(gd_st_writer *w, const char *path, char *err, size_t errlen);
void gd_st_writer_free(gd_st_writer *w);
#endif
