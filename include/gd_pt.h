/* A safe native reader of PyTorch checkpoints (torch.save of a state dict, PyTorch >= 1.6's zip
 * container), so released guided-diffusion / ED-DPM .pt files load without Python.
 *
 * The result is the safetensors reader's gd_st_file (include/gd_safetensors.h): one gd_st_tensor
 * per tensor entry of the pickled dict, named by its key, in the pickle's order, with dtype,
 * shape, numel, data and nbytes filled; gd_st_metadata answers NULL to everything; gd_st_close
 * releases it. So whatever reads safetensors reads .pt unchanged.
 *
 * What is accepted
 *  - The zip container as torch.save writes it: members `<prefix>/data.pkl`,
 *    `<prefix>/data/<key>` (one per storage), `<prefix>/version`, `<prefix>/byteorder` (must say
 *    "little" when present); any prefix without '/'. Stored or deflated members, zip64. CRC-32s
 *    of the members used are checked. The legacy format (PyTorch < 1.6 or
 *    _use_new_zipfile_serialization=False) is recognised and refused with one line.
 *  - data.pkl is run by a restricted unpickler (pickle protocols 2 to 5, only the opcodes a
 *    state dict needs) whose only globals are collections.OrderedDict,
 *    torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter /
 *    _rebuild_parameter_with_state and torch.{Float,Half,BFloat16,Double,Long,Int,Byte}Storage.
 *    Any other opcode or global is refused, naming it, before any tensor data is read.
 *  - The pickled object must be a dict (or OrderedDict) with string keys. Entries whose value is
 *    not a tensor (an int, a string, a nested dict, ...) are skipped; a dict with no tensor but
 *    other entries (a wrapper such as {"model": ...}) is refused. Duplicate keys are refused.
 *  - Tensors (storage, storage_offset, size, stride): sizes, strides and the offset must be
 *    >= 0, at most 8 dimensions, under 2^40 elements, and the view inside its storage, whose
 *    member must hold exactly its declared numel elements. Many tensors may view one storage (as
 *    guided-diffusion's fp16 trainer saves them), but two tensors' spans may not partly overlap
 *    (identical views -- tied weights -- are allowed).
 *  - data points into the file (mmap, or the caller's buffer) for a contiguous view of a stored
 *    member; a deflated member is inflated once into memory the file owns, and a non-contiguous
 *    view is copied into contiguous memory. Allocations are bounded by 64 MiB plus 32 times the
 *    file size; stacks, memo, strings and counts have fixed limits.
 *
 * Errors: NULL and one line (no newline) naming the file and the first bad item, e.g.
 * "x.pt: data.pkl: global 'posix.system' is not allowed". Never crashes on malformed input. */
#ifndef GD_PT_H
#define GD_PT_H
#include "gd_safetensors.h"

#include <stddef.h>

/* Opens a .pt file (mmapped). */
gd_st_file *gd_pt_open(const char *path, char *err, size_t errlen);
/* Same, on a buffer the caller keeps alive while the file is open (used by the fuzzer). */
gd_st_file *gd_pt_open_mem(const void *buf, size_t len, char *err, size_t errlen);

/* 1 when head[0..n) starts a PyTorch checkpoint: a zip whose first member is a torch record
 * (`<prefix>/data.pkl`, `<prefix>/version`, `<prefix>/data/...`, ...) or the legacy format's
 * pickled magic number; 0 otherwise (safetensors, .npz, anything else). It needs the zip's
 * first 30 bytes and the first member's name: pass the first 512 bytes (or the whole file). */
int gd_pt_sniff(const void *head, size_t n);
#endif
