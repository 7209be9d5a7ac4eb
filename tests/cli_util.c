/* Process helpers for the command-line tests (see cli_util.h). */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "cli_util.h"
#include "test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *cli_tool(const char *name) {
    static char p[1024];
    const char *b = getenv("BUILD");
    snprintf(p, sizeof p, "./%s/%s", b && *b ? b : "build", name);
    return p;
}

int cli_tool_available(const char *name) {
    int ok = access(cli_tool(name), X_OK) == 0;
    CHECK(ok, "%s is missing; build it first (make)", cli_tool(name));
    return ok;
}

int cli_mkdtemp(char *out, size_t n) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(out, n, "%s/gd_cli_test_XXXXXX", base);
    return mkdtemp(out) ? 0 : -1;
}

void cli_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p) != 0) cli_rmtree(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

int cli_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

int cli_file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

size_t cli_file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (size_t)st.st_size : 0;
}

char *cli_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    if (f) {
        for (;;) {
            if (n + 4096 + 1 > cap) {
                cap = cap ? 2 * cap : 8192;
                char *nb = realloc(buf, cap);
                if (!nb) break;
                buf = nb;
            }
            size_t r = fread(buf + n, 1, 4096, f);
            n += r;
            if (r == 0) break;
        }
        fclose(f);
    }
    if (!buf) buf = malloc(1);
    if (buf) buf[n] = 0;
    return buf;
}

unsigned char *cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) *len = (size_t)(n > 0 ? n : 0);
    return b;
}

int cli_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int cli_count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

cli_result cli_run(const char *tool, const char *dir, const char *args) {
    char cmd[8192], po[1100], pe[1100];
    snprintf(po, sizeof po, "%s/stdout.txt", dir);
    snprintf(pe, sizeof pe, "%s/stderr.txt", dir);
    snprintf(cmd, sizeof cmd, "%s %s >'%s' 2>'%s'", cli_tool(tool), args, po, pe);
    int rc = system(cmd);
    cli_result r;
    r.status = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.out = cli_slurp(po);
    r.err = cli_slurp(pe);
    unlink(po);
    unlink(pe);
    return r;
}

void cli_run_free(cli_result *r) {
    free(r->out);
    free(r->err);
}

void cli_write_tiny_idx(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/img", dir);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    const unsigned char hi[16] = {0, 0, 8, 3, 0, 0, 0, 12, 0, 0, 0, 8, 0, 0, 0, 8};
    fwrite(hi, 1, 16, f);
    for (int i = 0; i < 12 * 64; i++) fputc((i * 37 + i / 64 * 11) & 255, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/lab", dir);
    f = fopen(p, "wb");
    if (!f) return;
    const unsigned char hl[8] = {0, 0, 8, 1, 0, 0, 0, 12};
    fwrite(hl, 1, 8, f);
    for (int i = 0; i < 12; i++) fputc(i % 3, f);
    fclose(f);
}
