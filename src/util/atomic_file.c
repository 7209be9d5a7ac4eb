/* Atomic output files: a temporary name, then fsync and rename (include/gd_util.h). */
#include "gd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Creates "<path>.tmp.<pid>" for writing. On success *tmp_out is its malloc()ed name. */
FILE *gd_atomic_open(const char *path, char **tmp_out, char *err, size_t errlen) {
    *tmp_out = NULL;
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) {
        gd_errf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        gd_errf(err, errlen, "%s: cannot create temporary file '%s': %s", path, tmp, strerror(errno));
        free(tmp);
        return NULL;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        gd_errf(err, errlen, "%s: fdopen of '%s' failed: %s", path, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return NULL;
    }
    *tmp_out = tmp;
    return f;
}

/* Finishes a file from gd_atomic_open: with ok != 0, flushes, fsyncs, closes and renames it to
 * path; otherwise (or if any of that fails) closes and removes it. err is only written when this
 * function itself detects the failure (ok != 0 on entry); a caller passing ok = 0 has already
 * filled err. Frees tmp. Returns 0 on success, -1 otherwise. */
int gd_atomic_commit(FILE *f, char *tmp, const char *path, int ok, char *err, size_t errlen) {
    const char *what = NULL;
    int saved = 0;
    if (ok) {
        if (fflush(f) != 0 || ferror(f)) {
            what = "write";
            saved = errno;
        } else if (fsync(fileno(f)) != 0 && errno != EINVAL && errno != ENOTSUP) {
            what = "fsync";
            saved = errno;
        }
    }
    if (fclose(f) != 0 && ok && !what) {
        what = "close";
        saved = errno;
    }
    if (ok && !what && rename(tmp, path) != 0) {
        what = "rename";
        saved = errno;
    }
    if (!ok || what) {
        if (ok) gd_errf(err, errlen, "%s: %s of '%s' failed: %s", path, what, tmp, strerror(saved));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    if (err && errlen) err[0] = '\0';
    return 0;
}
