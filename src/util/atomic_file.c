/* Atomic output files: a temporary name, then fsync and rename (include/gd_util.h). */
#include "gd_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* The pid of a ".tmp.<pid>" ending of name[0..*len) as gd_atomic_open prints it (no sign, no
 * leading zero), which is then cut off (*len shrinks); -1 when there is none. */
static long strip_tmp_suffix(const char *name, size_t *len) {
    size_t n = *len, d = n;
    while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9') d--;
    if (d == n || n - d > 10 || name[d] == '0' || d < 5 || memcmp(name + d - 5, ".tmp.", 5)) return -1;
    long pid = 0;
    for (size_t i = d; i < n; i++) pid = pid * 10 + (name[i] - '0');
    if (pid > INT_MAX) return -1;
    *len = d - 5;
    return pid;
}

static int name_is(const char *name, size_t len, const char *base, int glob) {
    if (!glob) return strlen(base) == len && !memcmp(name, base, len);
    char buf[NAME_MAX + 1];
    if (len > NAME_MAX) return 0;
    memcpy(buf, name, len);
    buf[len] = 0;
    return fnmatch(base, buf, FNM_PERIOD) == 0;
}

/* A process we may not signal (EPERM) is alive too: only ESRCH says the writer is gone. */
static int pid_gone(long pid) { return kill((pid_t)pid, 0) != 0 && errno == ESRCH; }

int gd_atomic_remove_stale(const char *path, int glob, int (*keep)(const char *path, void *ctx), void *ctx) {
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    if (!*base || (size_t)(base - path) >= sizeof dir) return 0;
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        long inner = strip_tmp_suffix(e->d_name, &len), outer = -1;
        if (inner < 0) continue;
        if (!name_is(e->d_name, len, base, glob)) {
            outer = strip_tmp_suffix(e->d_name, &len);
            if (outer < 0 || !name_is(e->d_name, len, base, glob)) continue;
        }
        if (!pid_gone(inner) || (outer > 0 && !pid_gone(outer))) continue;
        char full[PATH_MAX + NAME_MAX + 2];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(full, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) continue;
        if (keep && keep(full, ctx)) continue;
        removed += unlink(full) == 0;
    }
    closedir(d);
    return removed;
}
