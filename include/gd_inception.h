/* The FID Inception-v3 (the TF 2015 graph guided-diffusion's evaluator.py runs, as pytorch-fid
 * ports it): network in src/nn/inception.c, TF/PyTorch input preprocessing and batching in
 * src/eval/inception_eval.c (declared in gd_eval.h). ../shared/spec/inception-fid.md has the layer
 * table. */
#ifndef GD_INCEPTION_H
#define GD_INCEPTION_H
#include <stddef.h>
#include <stdint.h>

#define GD_INCEPTION_SIZE 299
#define GD_INCEPTION_POOL 2048    /* pool_3 */
#define GD_INCEPTION_SPATIAL 2023 /* mixed_6/conv: Mixed_6d.branch1x1, channels 0..6, 17x17, NHWC order */
#define GD_INCEPTION_CLASSES 1008 /* softmax/logits, without the bias */

typedef struct gd_inception gd_inception;

/* Loads pytorch-fid's pt_inception-2015-12-05 weights (472 tensors by their state-dict names) from
 * a .safetensors file (scripts/convert_inception.py) or the released .pth itself, and folds each
 * BatchNorm (eps 0.001) into its conv. The graph runs `batch` images at a time (planned once). */
gd_inception *gd_inception_load(const char *path, int batch, char *err, size_t errlen);
/* Same network with the deterministic random weights of tests/reference/inception.py (gdrand:
 * conv U(+-sqrt(6/fan_in)), BN gamma U[0.8,1.2), beta and mean U[-0.1,0.1), var U[0.5,1.5), fc
 * U(+-sqrt(3/2048)), bias U[-0.1,0.1)): tests and benchmarks, since no real weights can be
 * downloaded here. */
gd_inception *gd_inception_random(int batch, char *err, size_t errlen);
void gd_inception_free(gd_inception *m);
int gd_inception_batch(const gd_inception *m);
/* 16 hex digits identifying the weights (FNV-1a of the folded tensors): cache keys. */
const char *gd_inception_weights_id(const gd_inception *m);
/* Forward FLOPs of one full batch (multiply-adds x 2), and the bytes of its planned activations. */
double gd_inception_flops(const gd_inception *m);
size_t gd_inception_arena_bytes(const gd_inception *m);
/* Writes the random weights of gd_inception_random as a safetensors file in the released names
 * (unfolded), so the tools can be run end to end without the real file. */
int gd_inception_write_random(const char *path, char *err, size_t errlen);

/* x: n <= batch images, float NCHW [n,3,299,299], already preprocessed. Any output may be NULL:
 * pool [n,2048], spatial [n,2023], logits [n,1008] (pool . fc.weight^T, no bias, as the IS uses). */
int gd_inception_forward(gd_inception *m, const float *x, int n, float *pool, float *spatial, float *logits,
                         char *err, size_t errlen);

/* Diagnostics: with GD_INCEPTION_PROBES=1 in the environment when the network is built, the output
 * of layer LAYER (pytorch-fid's module names: Conv2d_1a_3x3 .. Mixed_7c, maxpool1, maxpool2) of
 * the last forward of n images, NCHW; *numel = values per image. NULL otherwise. */
const float *gd_inception_probe(const gd_inception *m, const char *layer, int n, int64_t *numel);

#endif
