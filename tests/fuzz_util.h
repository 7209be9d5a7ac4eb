/* Shared by the libFuzzer targets tests/fuzz_{npz,idx,image}.c and by tests/test_fuzz_corpus.c,
 * which replays the seed corpora through the same entries in the normal test build (it includes
 * those files with GD_FUZZ_NO_MAIN defined, so they must compile with gcc -Wall -Wextra too).
 * Readers that take a path get the input through a scratch file in /dev/shm (else $TMPDIR or
 * /tmp): a few per process, rewritten for every input and removed at exit. */
#ifndef GD_FUZZ_UTIL_H
#define GD_FUZZ_UTIL_H
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_SLOTS 4

static inline void fuzz_must(int cond) {
    if (!cond) abort();
}

/* A rejected input: a non-empty, NUL-terminated, one-line message. */
static inline int fuzz_one_line(const char *err, size_t cap) {
    return memchr(err, '\0', cap) != NULL && err[0] != '\0' && strchr(err, '\n') == NULL;
}

static char fuzz_paths[FUZZ_SLOTS][256];

static inline void fuzz_scratch_remove(void) {
    for (int slot = 0; slot < FUZZ_SLOTS; slot++)
        if (fuzz_paths[slot][0]) unlink(fuzz_paths[slot]);
}

/* Writes data to scratch file `slot` (0 .. FUZZ_SLOTS-1) and returns its path, or NULL. */
static inline const char *fuzz_scratch_file(int slot, const void *data, size_t size) {
    static int registered;
    if (slot < 0 || slot >= FUZZ_SLOTS) return NULL;
    if (!fuzz_paths[slot][0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(fuzz_paths[slot], sizeof fuzz_paths[slot], "%s/gd_fuzz_%ld_%d", dir, (long)getpid(), slot);
        if (!registered) registered = atexit(fuzz_scratch_remove) == 0;
    }
    int fd = open(fuzz_paths[slot], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return NULL;
    const char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t k = write(fd, p, left);
        if (k <= 0) {
            close(fd);
            return NULL;
        }
        p += k, left -= (size_t)k;
    }
    close(fd);
    return fuzz_paths[slot];
}
#endif
