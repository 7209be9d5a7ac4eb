/* What the command-line tools share: one-line errors that exit with status 2 and take back the
 * outputs written so far, the files a run reads and writes (an output is never an input, and a run
 * leaves all of its outputs or none), strict parsing of numeric flags, and flag tables
 * (src/cli/cli_flags.c). */
#ifndef GD_CLI_H
#define GD_CLI_H

#include <stddef.h>
#include <stdio.h>

/* The name errors start with ("ddpm-sample: ..."). */
void gd_cli_set_program(const char *name);

/* gd_cli_die removes this file (kept by pointer: the string must outlive the program's run), so
 * a failed run leaves nothing half-written. At most 16 paths. */
void gd_cli_remove_on_error(const char *path);

/* Prints "PROGRAM: MESSAGE" as exactly one line (newline, CR and tab become spaces; other control
 * characters, e.g. from names read out of files, '?'; an output's temporary name reads as the
 * output's) after flushing stdout, removes the registered outputs, exits with status 2. */
_Noreturn void gd_cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the files a run reads and writes (src/cli/cli_common.c) ----
 * A tool names every file it reads (gd_cli_input) and writes (gd_cli_output) before any work and
 * then calls gd_cli_check_files, which refuses (gd_cli_die, status 2) an output that is a directory
 * or the same file as an input or as another output: the same device and inode where the file
 * exists (so also a symlink or hard link to it), else the same absolute path with the directory's
 * symlinks resolved ("./X" is "X"). It also removes what killed runs left for these outputs:
 * temporaries of gd_atomic_open's naming whose process is gone (gd_atomic_remove_stale).
 * Each output is written under the temporary name gd_cli_output returns, and gd_cli_commit renames
 * them all onto their names at the end, so a run leaves all of its outputs or none: gd_cli_die
 * before the commit removes them. Labels ("--model", "'in.npz'") name a file in the messages
 * ("output 'X' is also the input --model"); label and path are copied; a NULL path is ignored. */
void gd_cli_input(const char *label, const char *path);
const char *gd_cli_output(const char *label, const char *path);
/* Outputs known before the run only by a pattern (fnmatch(3) glob, e.g. ddpm-sample's
 * "sample_*.png" in --save-each DIR): gd_cli_check_files refuses an input or output of that name in
 * dir, and removes the stale temporaries of such names; the files themselves are then registered
 * with gd_cli_output under the same label once their names are known (and checked again). */
void gd_cli_output_pattern(const char *label, const char *dir, const char *glob);
void gd_cli_check_files(void);
/* Renames every output onto its name; should one rename fail, those done are removed too. */
void gd_cli_commit(void);

/* The whole of v as a base-10 integer / a finite number in [lo, hi], or gd_cli_die naming flag. */
long gd_cli_long(const char *flag, const char *v, long lo, long hi);
double gd_cli_double(const char *flag, const char *v, double lo, double hi);
/* --precision fp32|bf16 (NULL: leave fp32): sets gd_set_precision, dies on another value, and
 * warns on stderr when this CPU cannot run bf16 (the run goes on in fp32). */
void gd_cli_precision(const char *v);

/* ---- flag tables: each flag is named once, and parsing, errors and --help come from the table --- */

typedef enum {
    GD_CLI_END,     /* ends a table: {0} */
    GD_CLI_SECTION, /* a heading in --help: {.kind = GD_CLI_SECTION, .help = "sampling"} */
    GD_CLI_SWITCH,  /* no value; sets the int at off to 1 */
    GD_CLI_STR,     /* const char * at off: the argv string itself */
    GD_CLI_INT,     /* int at off, gd_cli_long in [lo, hi] */
    GD_CLI_DOUBLE,  /* double at off, gd_cli_double in [lo, hi] */
    GD_CLI_CALL,    /* call(opts, flag as typed, value; NULL when arg is NULL), on every appearance */
} gd_cli_kind;

/* One flag; entries read {"-t", "--threads", "N", GD_CLI_INT, offsetof(options, threads), .lo = 1,
 * .hi = 1024, .help = "worker threads"} (a designator keeps -Wextra quiet about the fields left 0). */
typedef struct {
    const char *shortname, *longname; /* "-m", "--model"; either may be NULL */
    const char *arg;                  /* "PATH" in --help; NULL: a switch (takes no value) */
    gd_cli_kind kind;
    size_t off;     /* offsetof(options, field) */
    double lo, hi;  /* GD_CLI_INT / GD_CLI_DOUBLE range */
    size_t given;   /* GD_CLI_GIVEN(options, field): an int set to 1 when the flag appears; 0: none */
    void (*call)(void *opts, const char *flag, const char *value);
    const char *help; /* may hold '\n': further lines are indented under the first */
} gd_cli_flag;

/* The offset is stored plus one so that the zero a table entry leaves out means "no marker". */
#define GD_CLI_GIVEN(type, field) (offsetof(type, field) + 1)

typedef struct {
    const char *usage;        /* after "usage: "; more lines as "\n       tool ..." */
    const char *about;        /* what the tool does, before the flags (optional) */
    const gd_cli_flag *flags; /* ends with {0} */
    const char *footer;       /* after the flags: notes, examples (optional) */
    int strict;               /* each flag but GD_CLI_CALL at most once */
} gd_cli_spec;

/* Parses argv[1..argc-1] into opts by spec, in order: "-x V", "--long V", "--long=V"; -h/--help
 * prints the help on stdout and exits 0. Arguments that do not start with '-' (and "-") go to
 * pos[0..max_pos-1]; returns their count. Unknown flags, a missing value, an empty value or
 * argument (''), a bad number and more than max_pos arguments are one-line gd_cli_die errors
 * (status 2). Options keep the defaults the
 * caller stored in opts before the call. */
int gd_cli_parse(const gd_cli_spec *spec, int argc, char **argv, void *opts, const char **pos, int max_pos);

/* The --help text: usage line, about, the flags (aligned, -h/--help last), footer. */
void gd_cli_usage(const gd_cli_spec *spec, FILE *f);

#endif
