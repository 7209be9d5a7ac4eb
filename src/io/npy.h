/* The .npy members of an .npz, as read by npz_read.c (gd_read_npz) and npz_stream.c (the
 * streaming reader, gd_npz_read_f64); internal to the I/O layer. The functions live in
 * npz_read.c; every failure writes one line into the zip_reader's err. */
#ifndef GD_IO_NPY_H
#define GD_IO_NPY_H
#include "io/zip.h"

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef struct {
    char descr[16];
    int fortran;
    int ndim;
    uint64_t shape[NPY_MAX_DIMS];
} npy_info;

/* Reads and parses the .npy preamble at the start of member s (v1.0, 2.0 or 3.0 header, the
 * Python dict numpy writes); fortran_order True is refused. *prefix = the preamble's length. */
int npy_read_header(zip_stream *s, npy_info *info, uint64_t *prefix);

/* The shape's element count times itemsize, overflow-checked; the data must fill the rest of the
 * member exactly (usize - prefix) and fit in size_t. */
int npy_check_payload(zip_stream *s, const npy_info *info, uint64_t prefix, size_t itemsize, uint64_t *nbytes);

/* The header of arr_0: uint8 ('|u1', '<u1', '>u1'), 4-D NHWC or 3-D NHW (c = 1), every dimension
 * 1..INT_MAX; dims = {n, h, w, c}, *nbytes = the pixel bytes that follow. */
int npy_read_image_header(zip_stream *s, int dims[4], uint64_t *nbytes);
/* A .npy v1.0 header exactly as numpy 1.24's format.write_array writes it: the dict, numpy's room
 * for the first axis to grow to 21 digits, spaces and '\n' to a multiple of 64 bytes (npz_write.c).
 * Returns its length, or 0 if it does not fit in cap. */
size_t npy_write_header(char *out, size_t cap, const char *descr, const int64_t *shape, int ndim);

#endif
