/* How a W8A8 conv weight sits in a safetensors file (ddpm-quantize writes it, the model loader
 * reads it): NAME.weight as I8 [O, C, KH, KW] in [-127, 127] beside
 *   NAME.weight_scale       F32 [O]  per output channel: w = q * scale
 *   NAME.input_scale        F32 [1]  the conv's input x = (q - zero_point) * input_scale, q in 0..255
 *   NAME.input_zero_point   I32 [1]
 * and the file's __metadata__["quantization"], a JSON record of the scheme, the calibration and
 * which layers are quantized or kept in float. */
#ifndef NN_QUANT_FILE_H
#define NN_QUANT_FILE_H
#include "gd_safetensors.h"
#include "gd_tensor.h"

/* 1, 2, 3 when name is a weight's .weight_scale, .input_scale or .input_zero_point; else 0 */
int nn_quant_companion(const char *name);
/* -1 with err when such a companion has no I8 weight beside it */
int nn_quant_orphan(const gd_st_file *f, const char *name, int kind, char *err, size_t errlen);
/* the I8 weight t and its companions, checked; malloc'ed (w and w_scale too), NULL with err */
gd_quant *nn_quant_read(const gd_st_file *f, const char *path, const gd_st_tensor *t, char *err, size_t errlen);
/* adds the four tensors of weight `name` to w; 0 or -1 */
int nn_quant_write(gd_st_writer *w, const char *name, int ndim, const int64_t *ne, const gd_quant *q);
#endif
