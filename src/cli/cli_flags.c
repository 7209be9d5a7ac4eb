/* Flag tables (include/gd_cli.h): a tool names each flag once, and parsing, its errors and --help
 * all read that one table, so they cannot drift apart. */
#include "gd_cli.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FLAGS 128   /* strict mode counts appearances per entry */
#define MAX_LABEL_COL 30 /* longer flag labels put their help two spaces after, not in the column */

static const gd_cli_flag help_flag = {"-h", "--help", NULL, GD_CLI_SWITCH, 0, .help = "this help"};

/* The entry "-x", "--long" or "--long=V" names, or NULL; *val is V (NULL without '='). */
static const gd_cli_flag *lookup(const gd_cli_flag *flags, const char *a, const char **val) {
    const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    *val = NULL;
    for (const gd_cli_flag *f = flags; f->kind != GD_CLI_END; f++) {
        if (f->kind == GD_CLI_SECTION) continue;
        if (!eq && f->shortname && !strcmp(a, f->shortname)) return f;
        if (f->longname && strlen(f->longname) == len && !strncmp(a, f->longname, len)) {
            *val = eq ? eq + 1 : NULL;
            return f;
        }
    }
    return NULL;
}

static void store(const gd_cli_flag *f, void *opts, const char *name, const char *v) {
    char *p = (char *)opts + f->off;
    switch (f->kind) {
    case GD_CLI_SWITCH: *(int *)p = 1; break;
    case GD_CLI_STR: *(const char **)p = v; break;
    case GD_CLI_INT: *(int *)p = (int)gd_cli_long(name, v, (long)f->lo, (long)f->hi); break;
    case GD_CLI_DOUBLE: *(double *)p = gd_cli_double(name, v, f->lo, f->hi); break;
    case GD_CLI_CALL: f->call(opts, name, v); break;
    default: break;
    }
    if (f->given) *(int *)((char *)opts + f->given - 1) = 1;
}

int gd_cli_parse(const gd_cli_spec *spec, int argc, char **argv, void *opts, const char **pos, int max_pos) {
    unsigned char seen[MAX_FLAGS] = {0};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!a[0]) gd_cli_die("an empty argument '' (see --help)");
        if (a[0] != '-' || !a[1]) {
            if (npos >= max_pos) gd_cli_die("unexpected argument '%.200s' (see --help)", a);
            pos[npos++] = a;
            continue;
        }
        if (!strcmp(a, help_flag.shortname) || !strcmp(a, help_flag.longname)) {
            gd_cli_usage(spec, stdout);
            exit(0);
        }
        const gd_cli_flag *f = lookup(spec->flags, a, &v);
        if (!f) gd_cli_die("unknown option '%.200s' (see --help)", a);
        /* errors name the flag as typed (-t or --threads), without an "=V" */
        const char *name = v ? f->longname : a, *canon = f->longname ? f->longname : f->shortname;
        if (v && !f->arg) gd_cli_die("option '%s' takes no value", name);
        if (f->arg && !v) {
            if (i + 1 >= argc) gd_cli_die("option '%s' needs a value (see --help)", name);
            v = argv[++i];
        }
        if (spec->strict) {
            ptrdiff_t k = f - spec->flags;
            if (k >= MAX_FLAGS) gd_cli_die("internal error: a flag table of over %d entries", MAX_FLAGS);
            if (f->kind != GD_CLI_CALL && seen[k]++) gd_cli_die("option '%s' given more than once", canon);
        }
        /* '' is a mistake wherever it comes from (an unset shell variable): no flag takes it */
        if (v && !*v) gd_cli_die("%s: empty value", name);
        store(f, opts, name, v);
    }
    return npos;
}

/* "  -m, --model PATH", "      --seed S" or "  -o OUT"; returns its length. */
static int label(const gd_cli_flag *f, char *buf, size_t n) {
    const char *s = f->shortname, *l = f->longname, *arg = f->arg ? f->arg : "";
    return snprintf(buf, n, "  %s%s%s%s%s", s ? s : "  ", s && l ? ", " : l ? "  " : "", l ? l : "", *arg ? " " : "", arg);
}

static void print_flag(FILE *out, const gd_cli_flag *f, int col) {
    char buf[256];
    int n = label(f, buf, sizeof buf);
    fprintf(out, "%s%*s", buf, n + 2 <= col ? col - n : 2, "");
    for (const char *h = f->help ? f->help : ""; *h; h++) {
        fputc(*h, out);
        if (*h == '\n' && h[1]) fprintf(out, "%*s", col, "");
    }
    fputc('\n', out);
}

void gd_cli_usage(const gd_cli_spec *spec, FILE *out) {
    char buf[256];
    int col = label(&help_flag, buf, sizeof buf);
    for (const gd_cli_flag *f = spec->flags; f->kind != GD_CLI_END; f++) {
        int n = f->kind == GD_CLI_SECTION ? 0 : label(f, buf, sizeof buf);
        if (n > col && n <= MAX_LABEL_COL) col = n;
    }
    col += 2;
    fprintf(out, "usage: %s\n", spec->usage);
    if (spec->about) fprintf(out, "\n%s", spec->about);
    fputc('\n', out);
    for (const gd_cli_flag *f = spec->flags; f->kind != GD_CLI_END; f++) {
        if (f->kind == GD_CLI_SECTION) fprintf(out, "%s\n", f->help);
        else print_flag(out, f, col);
    }
    print_flag(out, &help_flag, col);
    if (spec->footer) fprintf(out, "\n%s", spec->footer);
}
