/* Internal: where a model's config comes from (include/gd_model.h, "config sources"): guided-
 * diffusion flags, the released-checkpoint table, the tensors a config's network has, inference
 * from tensor shapes, and the order that picks one. Configs are pj dicts so that what is embedded
 * in a converted file is byte for byte what scripts/convert_checkpoint.py embeds. */
#ifndef GD_CONFIG_SRC_H
#define GD_CONFIG_SRC_H
#include "gd_model.h"
#include "gd_safetensors.h"
#include "nn/pyjson.h"

/* One tensor a network has (the converter's expected_tensors). */
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
} cfg_tensor;

/* config_from_flags: a config dict from guided-diffusion's command-line flags. */
pj *cfg_from_flags(const char *flags, int classifier, char *err, size_t errlen);

/* configs/ here, else beside the executable (NULL when neither exists); dir overrides. */
const char *cfg_dir(const char *dir);
/* configs/checkpoints.json without its "_" keys (NULL with err when unreadable). */
pj *cfg_table(const char *dir, char *err, size_t errlen);
/* A table entry's config: configs/<entry.config> updated with entry.set. */
pj *cfg_released(const char *dir, const pj *entry, char *err, size_t errlen);
/* pj_parse of a whole file; err "PATH: reason". */
pj *cfg_load_json(const char *path, char *err, size_t errlen);

/* The tensors of a config's network, in state-dict order (malloc'ed into *out); -1 with err
 * ("config: ..." or the ValueError text) when the config is not valid. */
int cfg_expected(const pj *cfg, cfg_tensor **out, int *n, char *err, size_t errlen);
/* The first difference between a state dict and a network's tensors (as the converter words it),
 * or 0 when they agree. */
int cfg_mismatch(const gd_st_tensor *sd, int nsd, const cfg_tensor *want, int nwant, char *msg, size_t n);

/* The converter's class_names_for: adds "class_names" (file, or configs/imagenet_classes.txt for
 * a labelled 1000-class config without them) unless none; returns the count added (0: none) or -1. */
int cfg_add_class_names(pj *cfg, const char *file, int none, const char *dir, char *err, size_t errlen);

/* Inference from names and shapes (src/nn/config_infer.c): a config dict, with one line per rule
 * applied appended to notes; NULL with err naming what cannot be told. */
pj *cfg_infer(const gd_st_tensor *sd, int n, const char *dir, char *notes, size_t notes_len, char *err, size_t errlen);

/* A weights file by its content: a PyTorch checkpoint (gd_pt_sniff) or safetensors. */
gd_st_file *nn_open_weights(const char *path, int *is_pt, char *err, size_t errlen);
/* Its tensors as a state dict (shallow copies; a .pt's "module." prefixes dropped); free() it. */
gd_st_tensor *nn_state_dict(const gd_st_file *f, int is_pt, int *n);
/* The config by the order (a) .. (e); source says where it came from (the converter's words),
 * notes gets the rules inference applied (empty otherwise). */
/* The model loader's config (gd_model_load_opts): parsed into cfg; *notes (malloc'ed) says where
 * it came from and the rules applied. A .pt's 1000-class model gets the ImageNet class names. */
int nn_load_config(const char *path, const gd_st_file *f, int is_pt, const gd_load_opts *o, gd_config *cfg, char **notes,
                   char *err, size_t errlen);
/* "  {json}\n": a config without its class names, for -v (malloc'ed; NULL when not JSON). */
char *nn_brief_json(const char *json);
pj *nn_choose_config(const char *path, const gd_st_file *f, const gd_st_tensor *sd, int n, const gd_load_opts *o, char *source,
                     size_t slen, char *notes, size_t nlen, char *err, size_t errlen);
#endif
