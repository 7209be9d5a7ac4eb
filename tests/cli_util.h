/* Helpers for tests that run the command-line tools as processes from the project root. The tools
 * live in $BUILD (default "build"); `make test` builds them before the test binary. */
#ifndef GD_CLI_UTIL_H
#define GD_CLI_UTIL_H
#include <stddef.h>

typedef struct {
    int status; /* exit status, or -1 when the process did not exit normally */
    char *out, *err;
} cli_result;

const char *cli_tool(const char *name); /* ./$BUILD/name */
int cli_tool_available(const char *name); /* CHECKs that it exists */
int cli_mkdtemp(char *out, size_t n);
void cli_rmtree(const char *dir);
int cli_count_entries(const char *dir);
int cli_file_exists(const char *p);
char *cli_slurp(const char *path);       /* whole file, NUL-terminated ("" if unreadable); free it */
/* whole file and its length (NULL if unreadable); free it */
unsigned char *cli_read_file(const char *path, size_t *len);
int cli_write_file(const char *path, const void *data, size_t len); /* 0 or -1 */
size_t cli_file_size(const char *path);
int cli_count_lines(const char *s);
/* Runs `tool args` (args already shell-quoted), capturing stdout and stderr via files in dir. */
cli_result cli_run(const char *tool, const char *dir, const char *args);
void cli_run_free(cli_result *r);
/* DIR/img and DIR/lab: 12 8x8 IDX images of 3 classes, the training tests' tiny dataset. */
void cli_write_tiny_idx(const char *dir);
#endif
