/* Presets: a released checkpoint with its recommended settings (configs/presets/NAME.json), found
 * here or beside the executable so the tools work from any working directory. */
#include "diffusion/pipeline_internal.h"
#include "gd_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int gd_file_exists(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int dir_exists(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

/* The folder of this executable's parent (build/ddpm-sample -> the project root). */
static const char *exe_root(void) {
    static char root[PATH_MAX];
    if (root[0]) return root;
    ssize_t n = readlink("/proc/self/exe", root, sizeof root - 1);
    if (n <= 0) return strcpy(root, ".");
    root[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(root, '/');
        if (!s) return strcpy(root, ".");
        *s = 0;
    }
    if (!root[0]) strcpy(root, "/");
    return root;
}

static const char *presets_dir(void) {
    static char d[PATH_MAX + 32];
    if (dir_exists("configs/presets")) return "configs/presets";
    snprintf(d, sizeof d, "%s/configs/presets", exe_root());
    return dir_exists(d) ? d : NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "a, b, c" of the preset names in dir (or "" when there is none). */
static void preset_names(const char *dir, char *buf, size_t n) {
    buf[0] = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    char *names[256];
    int k = 0;
    for (struct dirent *e; d && (e = readdir(d)) && k < 256;) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) names[k++] = strndup(e->d_name, l - 5);
    }
    if (d) closedir(d);
    qsort(names, (size_t)k, sizeof *names, cmp_str);
    for (int i = 0; i < k; i++) {
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? ", " : "", names[i]);
        free(names[i]);
    }
}

static char *slurp_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = 2 * cap + 8192;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

/* A string member, NULL when absent; -1 (with err) when present but not a non-empty string. */
static int pstr(const cJSON *o, const char *key, const char *path, const char **out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsString(v) || !v->valuestring[0]) {
        gd_errf(err, errlen, "preset %s: \"%s\" must be a non-empty string", path, key);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

static int preset_path(const char *arg, gd_preset *p, char *err, size_t errlen) {
    size_t l = strlen(arg);
    if (strchr(arg, '/') || (l > 5 && !strcmp(arg + l - 5, ".json"))) {
        snprintf(p->path, sizeof p->path, "%s", arg);
        const char *b = strrchr(arg, '/');
        snprintf(p->name, sizeof p->name, "%s", b ? b + 1 : arg);
        char *dot = strrchr(p->name, '.');
        if (dot && !strcmp(dot, ".json")) *dot = 0;
        return 0;
    }
    const char *dir = presets_dir();
    if (!dir) {
        gd_errf(err, errlen, "--preset %s: no configs/presets folder here or beside the executable", arg);
        return -1;
    }
    snprintf(p->path, sizeof p->path, "%s/%s.json", dir, arg);
    snprintf(p->name, sizeof p->name, "%s", arg);
    if (!gd_file_exists(p->path)) {
        char names[4096];
        preset_names(dir, names, sizeof names);
        gd_errf(err, errlen, "unknown preset '%s'; the presets are: %s", arg, names);
        return -1;
    }
    return 0;
}

int gd_preset_load(const char *arg, gd_preset *p, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    if (!arg || !*arg) {
        gd_errf(err, errlen, "--preset needs a name (see --list-presets)");
        return -1;
    }
    if (preset_path(arg, p, err, errlen)) return -1;
    char *txt = slurp_text(p->path);
    if (!txt) {
        gd_errf(err, errlen, "--preset: cannot read %s", p->path);
        return -1;
    }
    p->js = cJSON_Parse(txt);
    free(txt);
    if (!cJSON_IsObject(p->js)) {
        gd_errf(err, errlen, "preset %s is not a JSON object", p->path);
        return -1;
    }
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(p->js, "expect");
    if (pstr(p->js, "description", p->path, &p->description, err, errlen) ||
        pstr(p->js, "model", p->path, &p->model, err, errlen) ||
        pstr(p->js, "classifier", p->path, &p->classifier, err, errlen) ||
        pstr(p->js, "upsampler", p->path, &p->upsampler, err, errlen) ||
        pstr(p->js, "guidance", p->path, &p->guidance, err, errlen) ||
        pstr(p->js, "sampler", p->path, &p->sampler, err, errlen) ||
        pstr(p->js, "respacing", p->path, &p->respacing, err, errlen) ||
        pstr(p->js, "upsampler_respacing", p->path, &p->up_respacing, err, errlen) ||
        pstr(p->js, "time_schedule", p->path, &p->time_schedule, err, errlen) ||
        pstr(p->js, "thresholding", p->path, &p->thresholding, err, errlen) ||
        pstr(p->js, "download", p->path, &p->download, err, errlen))
        return -1;
    if (!p->model) {
        gd_errf(err, errlen, "preset %s: no \"model\"", p->path);
        return -1;
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p->js, "scale");
    if (s && !cJSON_IsNumber(s)) {
        gd_errf(err, errlen, "preset %s: \"scale\" must be a number", p->path);
        return -1;
    }
    if (s) p->scale = s->valuedouble, p->has_scale = 1;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(p->js, "steps");
    if (st && !(cJSON_IsNumber(st) && st->valuedouble >= 1 && st->valuedouble <= 100000 && st->valuedouble == (int)st->valuedouble)) {
        gd_errf(err, errlen, "preset %s: \"steps\" must be an integer in [1, 100000]", p->path);
        return -1;
    }
    p->steps = st ? st->valueint : 0;
    if (ex && pstr(ex, "noise_schedule", p->path, &p->expect_schedule, err, errlen)) return -1;
    const cJSON *dep = ex ? cJSON_GetObjectItemCaseSensitive(ex, "classifier_depth") : NULL;
    p->expect_depth = cJSON_IsNumber(dep) ? dep->valueint : 0;
    return 0;
}

int gd_presets_list(FILE *f, char *err, size_t errlen) {
    const char *dir = presets_dir();
    if (!dir) {
        gd_errf(err, errlen, "--list-presets: no configs/presets folder here or beside the executable");
        return -1;
    }
    char names[4096];
    preset_names(dir, names, sizeof names);
    for (char *save = NULL, *tok = strtok_r(names, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        gd_preset p;
        if (gd_preset_load(tok, &p, err, errlen)) {
            cJSON_Delete(p.js);
            return -1;
        }
        fprintf(f, "%-30s %s\n", tok, p.description ? p.description : "");
        char how[160];
        if (p.steps) /* an ODE solver: model evaluations, grid, thresholding */
            snprintf(how, sizeof how, "%d NFE %s%s%s", p.steps, p.time_schedule ? p.time_schedule : "", p.thresholding ? " thresholding " : "",
                     p.thresholding ? p.thresholding : "");
        else
            snprintf(how, sizeof how, "%s", p.respacing ? p.respacing : "250");
        fprintf(f, "%-30s   %s%s%s%s%s, %s %s, guidance %s", "", p.model, p.classifier ? " + " : "",
                p.classifier ? p.classifier : "", p.upsampler ? " -> " : "", p.upsampler ? p.upsampler : "",
                p.sampler ? p.sampler : "ddpm", how, p.guidance ? p.guidance : "none");
        if (p.has_scale && p.guidance && strcmp(p.guidance, "none")) fprintf(f, " scale %g", p.scale);
        fprintf(f, "\n");
        cJSON_Delete(p.js);
    }
    return 0;
}

/* DIR/<stem>.safetensors, else DIR/<stem>.pt (the released file, read as it is). */
static int find_in(const char *dir, const char *stem, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s.safetensors", dir, stem);
    if (gd_file_exists(buf)) return 1;
    snprintf(buf, n, "%s/%s.pt", dir, stem);
    return gd_file_exists(buf);
}

void gd_preset_model_file(const char *models_dir, const char *stem, char *buf, size_t n) {
    char alt[PATH_MAX + 200];
    snprintf(alt, sizeof alt, "%s/models", exe_root());
    if (models_dir ? find_in(models_dir, stem, buf, n) : find_in("models", stem, buf, n) || find_in(alt, stem, buf, n)) return;
    snprintf(buf, n, "%s/%s.safetensors", models_dir ? models_dir : "models", stem); /* what the "missing" message names */
}
