/* Which config a weights file gets (include/gd_model.h, gd_config_choose): in order
 *   (a) an explicit config file, (b) guided-diffusion flags, (c) the config embedded in a
 *   safetensors file, (d) the released checkpoint of that file name (configs/checkpoints.json),
 *   (d') the released architecture whose tensors exactly these are, (e) inference from the
 *   tensor names and shapes (config_infer.c).
 * (a), (b), (d), (d') are scripts/convert_checkpoint.py's choose_config, source texts included.
 * Also: opening a weights file by its content (.pt or safetensors) and its state-dict view. */
#include "gd_pt.h"
#include "nn/config_src.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gd_st_file *nn_open_weights(const char *path, int *is_pt, char *err, size_t errlen) {
    unsigned char head[512];
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        n = fread(head, 1, sizeof head, f);
        fclose(f);
    }
    *is_pt = f && gd_pt_sniff(head, n);
    if (!*is_pt && n >= 4 && !memcmp(head, "PK\3\4", 4)) {
        snprintf(err, errlen, "%s: a zip archive but not a PyTorch checkpoint (torch.save's data.pkl first); want a .pt or "
                 "safetensors file", path);
        return NULL;
    }
    return *is_pt ? gd_pt_open(path, err, errlen) : gd_st_open(path, err, errlen);
}

gd_st_tensor *nn_state_dict(const gd_st_file *f, int is_pt, int *n) {
    *n = gd_st_count(f);
    gd_st_tensor *sd = malloc(sizeof *sd * (size_t)(*n ? *n : 1));
    for (int i = 0; sd && i < *n; i++) {
        sd[i] = *gd_st_get(f, i);
        if (is_pt && !strncmp(sd[i].name, "module.", 7)) sd[i].name += 7; /* nn.DataParallel's prefix */
    }
    return sd;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* (d) by file name (or its stem + ".pt"), (d') by tensors: NULL when neither (no error). */
static pj *from_table(const char *path, const gd_st_tensor *sd, int n, const char *dir, char *source, size_t slen) {
    char e[400], stem_pt[600];
    pj *table = cfg_table(dir, e, sizeof e), *cfg = NULL;
    if (!table) return NULL;
    const char *base = base_name(path), *dot = strrchr(base, '.');
    snprintf(stem_pt, sizeof stem_pt, "%.*s.pt", dot ? (int)(dot - base) : (int)strlen(base), base);
    const char *names[2] = {base, stem_pt};
    for (int k = 0; k < 2 && !cfg; k++) {
        const pj *entry = pj_get(table, names[k]);
        if (entry && (cfg = cfg_released(dir, entry, e, sizeof e)))
            snprintf(source, slen, "%s (configs/%s)", names[k], pj_get(entry, "config")->s);
    }
    for (int i = 0; i < table->n && !cfg; i++) {
        pj *c = cfg_released(dir, table->v[i], e, sizeof e);
        cfg_tensor *want = NULL;
        int nw;
        char msg[8];
        if (c && !cfg_expected(c, &want, &nw, e, sizeof e) && !cfg_mismatch(sd, n, want, nw, msg, sizeof msg)) {
            cfg = c, c = NULL;
            snprintf(source, slen, "the architecture of %s (configs/%s; matched by tensor shapes)", table->k[i],
                     pj_get(table->v[i], "config")->s);
        }
        free(want);
        pj_free(c);
    }
    pj_free(table);
    return cfg;
}

pj *nn_choose_config(const char *path, const gd_st_file *f, const gd_st_tensor *sd, int n, const gd_load_opts *o, char *source,
                     size_t slen, char *notes, size_t nlen, char *err, size_t errlen) {
    const char *dir = o ? o->configs_dir : NULL;
    if (notes && nlen) notes[0] = 0;
    if (o && o->config_path) {
        pj *c = cfg_load_json(o->config_path, err, errlen);
        if (c && c->t != PJ_DICT) snprintf(err, errlen, "%s: not a JSON object", o->config_path), pj_free(c), c = NULL;
        snprintf(source, slen, "%s", o->config_path);
        return c;
    }
    if (o && o->flags) {
        int classifier = 1;
        for (int i = 0; i < n && classifier; i++) classifier = strncmp(sd[i].name, "output_blocks.", 14) != 0;
        snprintf(source, slen, "--flags");
        return cfg_from_flags(o->flags, classifier, err, errlen);
    }
    const char *js = f ? gd_st_metadata(f, "config") : NULL;
    if (js) {
        char e2[300];
        pj *c = pj_parse(js, strlen(js), e2, sizeof e2);
        if (!c || c->t != PJ_DICT) snprintf(err, errlen, "%s: embedded config: %s", path, c ? "not a JSON object" : e2), pj_free(c), c = NULL;
        snprintf(source, slen, "the config embedded in %s", base_name(path));
        return c;
    }
    pj *c = from_table(path, sd, n, dir, source, slen);
    if (c) return c;
    char e2[600];
    c = cfg_infer(sd, n, dir, notes, nlen, e2, sizeof e2);
    if (!c) {
        snprintf(err, errlen, "%s: not a released checkpoint name or architecture, and %s%s", path, e2,
                 strstr(e2, "; pass ") ? "" : "; pass a config file or the model's guided-diffusion flags");
        return NULL;
    }
    snprintf(source, slen, "the tensor shapes (inferred)");
    return c;
}

/* "  {config}\n" without its class names (NULL out of memory). */
char *nn_brief_json(const char *json) {
    pj *c = pj_parse(json, strlen(json), NULL, 0);
    pj_free(pj_pop(c, "class_names"));
    char *s = c ? pj_dumps(c, 0) : NULL, *line = s ? malloc(strlen(s) + 4) : NULL;
    if (line) sprintf(line, "  %s\n", s);
    free(s);
    pj_free(c);
    return line;
}

static char *join_notes(const char *source, const char *json, const char *rules) {
    char *brief = nn_brief_json(json);
    size_t len = strlen(source) + (brief ? strlen(brief) : 0) + strlen(rules) + 32;
    char *s = malloc(len);
    if (s) snprintf(s, len, "config: from %s\n%s%s", source, brief ? brief : "", rules);
    free(brief);
    return s;
}

int nn_load_config(const char *path, const gd_st_file *f, int is_pt, const gd_load_opts *o, gd_config *cfg, char **notes,
                   char *err, size_t errlen) {
    const char *cp = o ? o->config_path : NULL, *js = gd_st_metadata(f, "config");
    char line[700];
    *notes = NULL;
    if (!is_pt && (cp || (js && !(o && o->flags)))) { /* as before: a config file, or the embedded one */
        char e2[400];
        int rc = cp ? gd_config_load(cp, cfg, err, errlen) : gd_config_parse(js, cfg, e2, sizeof e2);
        if (rc && !cp) snprintf(err, errlen, "%s: embedded %s", path, e2);
        snprintf(line, sizeof line, "%s", cp ? cp : "the file's __metadata__.config");
        if (!rc) *notes = join_notes(line, cfg->json, "");
        return rc;
    }
    int n;
    gd_st_tensor *sd = nn_state_dict(f, is_pt, &n);
    char source[600], rules[4096], e2[600];
    pj *c = sd ? nn_choose_config(path, f, sd, n, o, source, sizeof source, rules, sizeof rules, err, errlen) : NULL;
    free(sd);
    if (!c) return -1;
    if (is_pt && cfg_add_class_names(c, NULL, 0, o ? o->configs_dir : NULL, e2, sizeof e2) < 0) /* names are a convenience */
        snprintf(rules + strlen(rules), sizeof rules - strlen(rules), "  no class names embedded: %s\n", e2);
    char *json = pj_dumps(c, 0);
    pj_free(c);
    int rc = json ? gd_config_parse(json, cfg, e2, sizeof e2) : -1;
    if (rc) snprintf(err, errlen, "%s: the config from %s: %s", path, source, json ? e2 : "out of memory");
    else *notes = join_notes(source, json, rules);
    free(json);
    return rc;
}

/* ---- the public forms (include/gd_model.h) --------------------------------------------------- */

static char *dumped(pj *c, char *err, size_t errlen) {
    char *s = c ? pj_dumps(c, 0) : NULL;
    if (c && !s) snprintf(err, errlen, "out of memory");
    pj_free(c);
    return s;
}

char *gd_config_from_flags(const char *flags, int classifier, char *err, size_t errlen) {
    return dumped(cfg_from_flags(flags, classifier, err, errlen), err, errlen);
}

char *gd_config_infer(const gd_st_tensor *t, int n, const char *configs_dir, char *notes, size_t notes_len, char *err, size_t errlen) {
    if (notes && notes_len) notes[0] = 0;
    return dumped(cfg_infer(t, n, configs_dir, notes, notes_len, err, errlen), err, errlen);
}

char *gd_config_choose(const char *path, const gd_st_file *f, const gd_load_opts *o, char *source, size_t slen, char *notes,
                       size_t nlen, char *err, size_t errlen) {
    int n;
    gd_st_tensor *sd = nn_state_dict(f, 0, &n);
    if (!sd) return snprintf(err, errlen, "out of memory"), NULL;
    char *s = dumped(nn_choose_config(path, f, sd, n, o, source, slen, notes, nlen, err, errlen), err, errlen);
    free(sd);
    return s;
}
