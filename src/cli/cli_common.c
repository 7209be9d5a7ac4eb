/* Shared error and flag-parsing helpers of the command-line tools (include/gd_cli.h). */
#include "gd_cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *program = "gd";
static const char *outputs[16];
static int n_outputs;

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
    for (int i = 0; i < n_outputs; i++) unlink(outputs[i]);
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
