/* Shared helpers of the command-line tools (include/gd_cli.h): one-line errors, strict numbers,
 * and the files a run reads and writes (no output onto an input, all outputs or none). */
#include "gd_cli.h"
#include "gd_tensor.h"

#include "gd_util.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *program = "gd";
static const char *outputs[16];
static int n_outputs;

/* The files of this run (gd_cli_input / gd_cli_output / gd_cli_output_pattern). */
typedef struct {
    char *label, *path;
    char *staged;  /* outputs: the temporary name the tool writes; NULL for inputs */
    char *glob;    /* patterns: path is the directory */
    int cleaned;   /* stale temporaries of this output already removed */
} cli_file;

static cli_file *files;
static size_t n_files, cap_files;
static int committed;

/* Replaces every staged name in msg by its output's name: the user knows the file as -o X, not
 * as the temporary the writer was given. */
static void unstage_names(char *msg) {
    for (size_t i = 0; i < n_files; i++) {
        const char *st = files[i].staged;
        if (!st) continue;
        size_t sl = strlen(st), pl = strlen(files[i].path);
        for (char *p = strstr(msg, st); p; p = strstr(p + pl, st)) {
            memmove(p + pl, p + sl, strlen(p + sl) + 1);
            memcpy(p, files[i].path, pl);
        }
    }
}

void gd_cli_set_program(const char *name) { program = name; }

void gd_cli_remove_on_error(const char *path) {
    if (n_outputs < (int)(sizeof outputs / sizeof *outputs)) outputs[n_outputs++] = path;
}

_Noreturn void gd_cli_die(const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : '?';
    if (!committed) unstage_names(msg);
    for (int i = 0; i < n_outputs; i++) unlink(outputs[i]);
    for (size_t i = 0; i < n_files && !committed; i++)
        if (files[i].staged) unlink(files[i].staged);
    fflush(stdout);
    fprintf(stderr, "%s: %s\n", program, msg);
    exit(2);
}

long gd_cli_long(const char *flag, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) gd_cli_die("%s: '%s' is not an integer in [%ld, %ld]", flag, v, lo, hi);
    return x;
}

double gd_cli_double(const char *flag, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= hi)) gd_cli_die("%s: '%s' is not a number in [%g, %g]", flag, v, lo, hi);
    return x;
}

void gd_cli_precision(const char *v) {
    if (!v) return;
    if (strcmp(v, "fp32") && strcmp(v, "bf16")) gd_cli_die("--precision: '%s' is not fp32 or bf16", v);
    if (gd_set_precision(strcmp(v, "bf16") ? GD_PRECISION_F32 : GD_PRECISION_BF16))
        fprintf(stderr, "%s: warning: --precision bf16 needs AVX512-BF16, which this CPU lacks: running fp32\n", program);
}

/* ---- the files a run reads and writes --------------------------------------------------------- */

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) gd_cli_die("out of memory");
    return d;
}

static cli_file *add_file(const char *label, const char *path) {
    if (n_files == cap_files) {
        size_t cap = cap_files ? 2 * cap_files : 16;
        cli_file *nf = realloc(files, cap * sizeof *nf);
        if (!nf) gd_cli_die("out of memory");
        files = nf, cap_files = cap;
    }
    cli_file *f = &files[n_files];
    *f = (cli_file){xstrdup(label), xstrdup(path), NULL, NULL, 0};
    n_files++;
    return f;
}

void gd_cli_input(const char *label, const char *path) {
    if (path && *path) add_file(label, path);
}

const char *gd_cli_output(const char *label, const char *path) {
    if (!path || !*path) gd_cli_die("%s: empty output path", label);
    size_t n = strlen(path) + 32;
    char *staged = malloc(n);
    if (!staged) gd_cli_die("out of memory");
    snprintf(staged, n, "%s.tmp.%ld", path, (long)getpid());
    cli_file *f = add_file(label, path);
    f->staged = staged;
    return staged;
}

void gd_cli_output_pattern(const char *label, const char *dir, const char *glob) {
    add_file(label, dir)->glob = xstrdup(glob);
}

/* path made absolute without "." and ".." components, by its text alone (for a directory that
 * does not exist, where realpath cannot help). */
static void lexical_abs(const char *path, char *out, size_t n) {
    char buf[2 * PATH_MAX + 2], cwd[PATH_MAX];
    if (path[0] == '/' || !getcwd(cwd, sizeof cwd)) snprintf(buf, sizeof buf, "%s", path);
    else snprintf(buf, sizeof buf, "%s/%s", cwd, path);
    size_t k = 0;
    out[0] = 0;
    for (char *save, *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, ".")) continue;
        if (!strcmp(c, "..")) {
            while (k > 0 && out[k - 1] != '/') k--;
            k -= k > 0;
            out[k] = 0;
            continue;
        }
        k += (size_t)snprintf(out + k, k < n ? n - k : 0, "/%s", c);
        if (k >= n) k = n - 1;
    }
    if (!k) snprintf(out, n, "/");
}

/* The directory entry path names, as an absolute path: the directory resolved (symlinks, "./",
 * "..") by realpath, the last component as given. */
static char *entry_name(const char *path) {
    char dir[PATH_MAX], real[PATH_MAX], out[2 * PATH_MAX + 2];
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    int plain = *base && strcmp(base, ".") && strcmp(base, "..") && (size_t)(base - path) < sizeof dir;
    if (plain) {
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == path) snprintf(dir, sizeof dir, "/");
        else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    }
    if (plain && realpath(dir, real)) snprintf(out, sizeof out, "%s/%s", strcmp(real, "/") ? real : "", base);
    else lexical_abs(path, out, sizeof out);
    return xstrdup(out);
}

/* What decides whether two entries are one file. */
typedef struct {
    int exists;
    dev_t dev;
    ino_t ino;
    char *name; /* entry_name() */
    size_t idx; /* into files */
} file_id;

static int cmp_id(const void *pa, const void *pb) {
    const file_id *a = pa, *b = pb;
    if (a->exists != b->exists) return b->exists - a->exists;
    int c = a->exists ? (a->dev > b->dev) - (a->dev < b->dev) : strcmp(a->name, b->name);
    if (!c && a->exists) c = (a->ino > b->ino) - (a->ino < b->ino);
    return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

static int same_id(const file_id *a, const file_id *b) {
    if (a->exists != b->exists) return 0;
    return a->exists ? a->dev == b->dev && a->ino == b->ino : !strcmp(a->name, b->name);
}

static _Noreturn void die_same(const cli_file *out, const char *via, const cli_file *other) {
    const char *kind = other->staged || other->glob ? "output" : "input";
    if (via) gd_cli_die("output '%s' (%s) is also the %s %s", out->path, via, kind, other->label);
    gd_cli_die("output '%s' is also the %s %s", out->path, kind, other->label);
}

/* One group of entries that are the same file: fine when all are inputs; otherwise names the
 * first output and, preferably, an input it would destroy. */
static void check_group(const file_id *ids, size_t n) {
    const cli_file *out = NULL, *in = NULL, *out2 = NULL;
    for (size_t k = 0; k < n; k++) {
        const cli_file *f = &files[ids[k].idx];
        if (!f->staged) in = in ? in : f;
        else if (!out) out = f;
        else out2 = out2 ? out2 : f;
    }
    if (out && in) die_same(out, NULL, in);
    if (out2) die_same(out2, NULL, out);
}

/* An input or output whose name a pattern output may take (other than the pattern's own files). */
static void check_patterns(const file_id *ids, size_t n) {
    for (size_t p = 0; p < n_files; p++) {
        const cli_file *pf = &files[p];
        char real[PATH_MAX];
        if (!pf->glob || !realpath(pf->path, real)) continue;
        size_t rl = strlen(real);
        for (size_t k = 0; k < n; k++) {
            const cli_file *f = &files[ids[k].idx];
            const char *nm = ids[k].name;
            if (!strcmp(f->label, pf->label) && f->staged) continue;
            if (!strncmp(nm, real, rl) && nm[rl] == '/' && !strchr(nm + rl + 1, '/') && !fnmatch(pf->glob, nm + rl + 1, FNM_PERIOD)) {
                if (f->staged) die_same(f, NULL, pf);
                char shown[PATH_MAX + 300];
                snprintf(shown, sizeof shown, "%s/%s", pf->path, nm + rl + 1);
                cli_file as_out = {pf->label, shown, shown, NULL, 0};
                die_same(&as_out, pf->label, f);
            }
        }
    }
}

typedef struct {
    const file_id *ids;
    size_t n;
} keep_ctx;

/* A stale-looking temporary that is also a file of this run (an input named "X.tmp.123") stays. */
static int keep_registered(const char *path, void *ctx) {
    const keep_ctx *k = ctx;
    struct stat st;
    if (stat(path, &st)) return 0;
    for (size_t i = 0; i < k->n; i++)
        if (k->ids[i].exists && k->ids[i].dev == st.st_dev && k->ids[i].ino == st.st_ino) return 1;
    return 0;
}

/* Whether a pattern of the same label covers output f (its stale files go by the pattern). */
static int under_pattern(const cli_file *f, const file_id *id) {
    for (size_t p = 0; p < n_files; p++) {
        char real[PATH_MAX];
        if (!files[p].glob || strcmp(files[p].label, f->label) || !realpath(files[p].path, real)) continue;
        size_t rl = strlen(real);
        if (!strncmp(id->name, real, rl) && id->name[rl] == '/' && !fnmatch(files[p].glob, id->name + rl + 1, FNM_PERIOD)) return 1;
    }
    return 0;
}

static void remove_stale(const file_id *ids, size_t n) {
    keep_ctx kc = {ids, n};
    for (size_t k = 0; k < n; k++) {
        cli_file *f = &files[ids[k].idx];
        if (f->staged && !f->cleaned && !under_pattern(f, &ids[k])) gd_atomic_remove_stale(f->path, 0, keep_registered, &kc);
        f->cleaned = 1;
    }
    for (size_t p = 0; p < n_files; p++) {
        cli_file *f = &files[p];
        if (!f->glob || f->cleaned) continue;
        char pat[2 * PATH_MAX];
        snprintf(pat, sizeof pat, "%s/%s", f->path, f->glob);
        gd_atomic_remove_stale(pat, 1, keep_registered, &kc);
        f->cleaned = 1;
    }
}

void gd_cli_check_files(void) {
    file_id *ids = malloc((n_files ? n_files : 1) * sizeof *ids);
    if (!ids) gd_cli_die("out of memory");
    size_t n = 0;
    for (size_t i = 0; i < n_files; i++) {
        if (files[i].glob) continue;
        struct stat st;
        int ex = stat(files[i].path, &st) == 0;
        if (ex && files[i].staged && S_ISDIR(st.st_mode)) gd_cli_die("output '%s' is a directory", files[i].path);
        ids[n++] = (file_id){ex, ex ? st.st_dev : 0, ex ? st.st_ino : 0, entry_name(files[i].path), i};
    }
    qsort(ids, n, sizeof *ids, cmp_id);
    for (size_t a = 0, b; a < n; a = b) {
        for (b = a + 1; b < n && same_id(&ids[a], &ids[b]);) b++;
        if (b - a > 1) check_group(ids + a, b - a);
    }
    check_patterns(ids, n);
    remove_stale(ids, n);
    for (size_t k = 0; k < n; k++) free(ids[k].name);
    free(ids);
}

void gd_cli_commit(void) {
    for (size_t i = 0; i < n_files; i++) {
        cli_file *f = &files[i];
        if (!f->staged || rename(f->staged, f->path) == 0) continue;
        int e = errno;
        /* all or none: the outputs renamed so far go too */
        for (size_t k = 0; k < n_files; k++)
            if (files[k].staged) unlink(k < i ? files[k].path : files[k].staged);
        committed = 1;
        gd_cli_die("%s: cannot rename the finished '%s' onto it: %s", f->path, f->staged, strerror(e));
    }
    committed = 1;
}
