/* The source tree's shape, checked on every test run: no file of src/ or include/ includes a
 * header of a higher layer (or of another layer of the same rank), no file is over 800 lines and
 * no function over 150. Paths are relative to the project root (the runner's cwd). */
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* Lowest first. A file may include headers of its own folder and of lower ranks only; folders of
 * one rank (core and io, eval and train) are independent of each other. */
static const struct {
    const char *dir;
    int rank;
} layers[] = {{"util", 0}, {"core", 1}, {"io", 1}, {"nn", 2}, {"diffusion", 3}, {"eval", 4}, {"train", 4}, {"cli", 5}};

/* The public headers' layers (include/ is flat so users include "gd_x.h" alone). A new header
 * must be added here, or the test fails. */
static const struct {
    const char *header, *layer;
} headers[] = {
    {"gd_util.h", "util"},         {"gd_rng.h", "util"},           {"gd_tensor.h", "core"},
    {"gd_alloc.h", "core"},        {"gd_safetensors.h", "io"},     {"gd_image.h", "io"},
    {"gd_dataset.h", "io"},        {"gd_pt.h", "io"},              {"gd_model.h", "nn"},
    {"gd_diffusion.h", "diffusion"}, {"gd_sample.h", "diffusion"}, {"gd_solver.h", "diffusion"}, {"gd_guidance.h", "diffusion"},
    {"gd_pipeline.h", "diffusion"}, {"gd_eval.h", "eval"},         {"gd_inception.h", "nn"},         {"gd_train.h", "train"},
    {"gd_optim.h", "train"},       {"gd_quant.h", "train"},       {"gd_cli.h", "cli"},
};

/* Where problems are listed; the checker's self-test silences it. */
static int quiet;
#define REPORT(...) (quiet ? 0 : fprintf(stderr, __VA_ARGS__))

#define MAX_FILE_LINES 800
#define MAX_FUNCTION_LINES 150

static int rank_of(const char *layer) {
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++)
        if (!strcmp(layers[i].dir, layer)) return layers[i].rank;
    return -1;
}

/* The layer of an included name: "core/gd_internal.h" by its folder, "gd_model.h" by the table. */
static const char *layer_of_include(const char *inc) {
    const char *slash = strchr(inc, '/');
    if (slash) {
        static char dir[64];
        size_t n = (size_t)(slash - inc) < sizeof dir - 1 ? (size_t)(slash - inc) : sizeof dir - 1;
        memcpy(dir, inc, n);
        dir[n] = 0;
        return rank_of(dir) >= 0 ? dir : NULL;
    }
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++)
        if (!strcmp(headers[i].header, inc)) return headers[i].layer;
    return NULL;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) s[n] = 0, *len = (size_t)n;
    return s;
}

/* Checks one file's includes against its layer; returns the number of violations printed. */
static int check_includes(const char *path, const char *layer, const char *text) {
    int bad = 0, line = 1;
    for (const char *p = text; *p; p++) {
        if (*p == '\n') line++;
        if ((p == text || p[-1] == '\n') && !strncmp(p, "#include \"", 10)) {
            char inc[128];
            const char *q = p + 10, *e = strchr(q, '"');
            if (!e || (size_t)(e - q) >= sizeof inc) continue;
            memcpy(inc, q, (size_t)(e - q));
            inc[e - q] = 0;
            const char *il = layer_of_include(inc);
            if (!strncmp(path, "tests/", 6)) continue;
            if (!il) {
                REPORT("    %s:%d includes \"%s\", which has no layer (tests/test_layers.c's table)\n", path, line, inc);
                bad++;
            } else if (strcmp(il, layer) && rank_of(il) >= rank_of(layer)) {
                REPORT("    %s:%d (layer %s) includes \"%s\" of layer %s\n", path, line, layer, inc, il);
                bad++;
            }
        }
    }
    return bad;
}

/* Function bodies: a top-level brace block whose declaration has a parameter list and no '='
 * (which would make it an initializer). Strings, characters and comments are skipped. */
static int check_functions(const char *path, const char *text) {
    int bad = 0, line = 1, depth = 0, start = 0, is_fn = 0;
    const char *decl = text; /* where the current top-level declaration began */
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            line++;
            continue;
        }
        if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            for (const char *q = p; q < (e ? e : p + strlen(p)); q++) line += *q == '\n';
            if (!e) break;
            p = e + 1;
            continue;
        }
        if (p[0] == '/' && p[1] == '/') {
            while (p[1] && p[1] != '\n') p++;
            continue;
        }
        if (*p == '"' || *p == '\'') {
            char qc = *p;
            for (p++; *p && *p != qc; p++) {
                if (*p == '\\' && p[1]) p++;
                if (*p == '\n') line++;
            }
            if (!*p) break;
            continue;
        }
        if (depth == 0 && *p == '#') { /* preprocessor line */
            while (p[1] && !(p[1] == '\n' && p[0] != '\\')) p++;
            decl = p + 1;
            continue;
        }
        if (*p == '{') {
            if (depth++ == 0) {
                int paren = 0, eq = 0;
                for (const char *q = decl; q < p; q++) paren |= *q == '(', eq |= *q == '=';
                is_fn = paren && !eq;
                start = line;
            }
        } else if (*p == '}') {
            if (--depth == 0) {
                if (is_fn && line - start + 1 > MAX_FUNCTION_LINES) {
                    REPORT("    %s:%d: a function of %d lines (limit %d)\n", path, start, line - start + 1,
                            MAX_FUNCTION_LINES);
                    bad++;
                }
                decl = p + 1;
            }
        } else if (depth == 0 && *p == ';') {
            decl = p + 1;
        }
    }
    return bad;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int check_file(const char *path, const char *layer, int *files) {
    size_t len;
    char *text = slurp(path, &len);
    if (!text) {
        fprintf(stderr, "    cannot read %s\n", path);
        return 1;
    }
    (*files)++;
    int bad = check_includes(path, layer, text) + check_functions(path, text);
    int lines = count_lines(text);
    if (lines > MAX_FILE_LINES) {
        fprintf(stderr, "    %s: %d lines (limit %d)\n", path, lines, MAX_FILE_LINES);
        bad++;
    }
    free(text);
    return bad;
}

static int is_source(const char *name) {
    size_t l = strlen(name);
    return l > 2 && name[l - 2] == '.' && (name[l - 1] == 'c' || name[l - 1] == 'h');
}

static int check_dir(const char *dir, const char *layer, int *files) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int bad = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_source(e->d_name)) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        const char *l = layer;
        if (!l) { /* include/: by the table */
            l = layer_of_include(e->d_name);
            if (!l) {
                fprintf(stderr, "    %s has no layer (tests/test_layers.c's table)\n", path);
                bad++;
                continue;
            }
        }
        bad += check_file(path, l, files);
    }
    closedir(d);
    return bad;
}

static void test_layer_includes_and_limits(void) {
    int bad = 0, files = 0;
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) {
        char dir[64];
        snprintf(dir, sizeof dir, "src/%s", layers[i].dir);
        bad += check_dir(dir, layers[i].dir, &files);
    }
    bad += check_dir("include", NULL, &files);
    /* nothing may sit in src/ itself, outside the layers */
    DIR *d = opendir("src");
    for (struct dirent *e; d && (e = readdir(d));)
        if (is_source(e->d_name)) {
            fprintf(stderr, "    src/%s is outside the layer folders\n", e->d_name);
            bad++;
        }
    if (d) closedir(d);
    printf("    %d files checked, %d problems\n", files, bad);
    CHECK(files > 40, "only %d source files found (run from the project root)", files);
    CHECK(bad == 0, "%d layering or size problems (listed above)", bad);
}

/* The checker itself: a planted violation of each kind is found. */
static void test_layer_checker_finds_violations(void) {
    quiet = 1;
    const char *up = "#include \"gd_model.h\"\n#include \"core/gd_internal.h\"\n";
    CHECK(check_includes("src/io/x.c", "io", up) == 2, "io including nn and core not both reported");
    CHECK(check_includes("src/nn/x.c", "nn", up) == 0, "nn including nn and core reported");
    CHECK(check_includes("src/eval/x.c", "eval", "#include \"gd_train.h\"\n") == 1, "eval including train not reported");
    CHECK(check_includes("src/core/x.c", "core", "#include \"unknown.h\"\n") == 1, "unknown header not reported");
    char fn[8192] = "static int f(void) {\n";
    for (int i = 0; i < MAX_FUNCTION_LINES; i++) strcat(fn, "  x++; /* { */ \"}\";\n");
    strcat(fn, "}\nstatic const int t[] = {\n1,\n};\n");
    CHECK(check_functions("x.c", fn) == 1, "a %d-line function not reported", MAX_FUNCTION_LINES + 2);
    CHECK(check_functions("x.c", "int g(int a) {\n return a;\n}\n") == 0, "a short function reported");
    quiet = 0;
}

GD_TEST_TABLE(gd_tests_layers) = {
    {"layers_includes_and_limits", test_layer_includes_and_limits},
    {"layers_checker_finds_violations", test_layer_checker_finds_violations},
    {NULL, NULL},
};
