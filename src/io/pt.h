/* The restricted unpickler under the PyTorch checkpoint reader (pt.c); internal to the I/O layer.
 * See include/gd_pt.h for what is accepted. */
#ifndef GD_IO_PT_H
#define GD_IO_PT_H
#include "gd_safetensors.h"

#include <stddef.h>
#include <stdint.h>

#define PT_MAX_DIMS 8

/* One persistent id ('storage', torch.<T>Storage, key, location, numel). */
typedef struct {
    const char *key; /* into the pickle bytes, not terminated */
    size_t keylen;
    gd_st_dtype dtype;
    uint64_t numel; /* elements */
} pt_storage_ref;

/* One _rebuild_tensor_v2 call, checked: the view lies inside the declared storage. */
typedef struct {
    uint32_t storage; /* index into pt_pickle.storages */
    uint64_t offset;  /* elements */
    int ndim;
    int64_t size[PT_MAX_DIMS], stride[PT_MAX_DIMS];
    uint64_t numel;
    uint64_t span; /* 1 + the largest element index the view reaches, relative to offset; 0 if empty */
} pt_tensor_ref;

/* A top-level entry whose value is a tensor. */
typedef struct {
    const char *name; /* into the pickle bytes, not terminated */
    size_t namelen;
    uint32_t tensor; /* index into pt_pickle.tensors */
} pt_entry;

typedef struct {
    pt_storage_ref *storages;
    size_t nstorages;
    pt_tensor_ref *tensors;
    size_t ntensors;
    pt_entry *entries; /* in the pickle's order */
    size_t nentries;
    size_t skipped;    /* entries whose value is not a tensor */
    const char *first_skipped; /* key of the first of them (NULL if not a string) */
    size_t first_skipped_len;
    size_t used;       /* bytes allocated, for the caller's budget */
} pt_pickle;

/* Runs pkl[0..len) (which must outlive out) through the restricted unpickler; allocates at most
 * budget bytes. On failure writes "<label>: data.pkl: <why>" and returns -1; pt_pickle_free must
 * follow either way. */
int pt_unpickle(const uint8_t *pkl, size_t len, size_t budget, pt_pickle *out, const char *label, char *err,
                size_t errlen);
void pt_pickle_free(pt_pickle *p);
#endif
