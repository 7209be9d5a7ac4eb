/* What the command-line tools share: one-line errors that exit with status 2 and take back the
 * outputs written so far, and strict parsing of numeric flags. */
#ifndef GD_CLI_H
#define GD_CLI_H

/* The name errors start with ("ddpm-sample: ..."). */
void gd_cli_set_program(const char *name);

/* gd_cli_die removes this file (kept by pointer: the string must outlive the program's run), so
 * a failed run leaves nothing half-written. At most 16 paths. */
void gd_cli_remove_on_error(const char *path);

/* Prints "PROGRAM: MESSAGE" as exactly one line (newline, CR and tab become spaces; other control
 * characters, e.g. from names read out of files, '?') after flushing stdout, removes the registered
 * outputs, exits with status 2. */
_Noreturn void gd_cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The whole of v as a base-10 integer / a finite number in [lo, hi], or gd_cli_die naming flag. */
long gd_cli_long(const char *flag, const char *v, long lo, long hi);
double gd_cli_double(const char *flag, const char *v, double lo, double hi);

#endif
