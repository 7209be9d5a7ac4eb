/* Read-only file mappings (include/gd_util.h). */
#include "gd_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int gd_map_file(const char *path, void **map, size_t *len, char *err, size_t errlen) {
    *map = NULL, *len = 0;
    if (!path) {
        gd_errf(err, errlen, "(null): no path given");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        gd_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        gd_errf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        gd_errf(err, errlen, "%s: file too large to map", path);
        close(fd);
        return -1;
    }
    if (st.st_size == 0) { /* mmap refuses an empty mapping */
        close(fd);
        return 0;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (m == MAP_FAILED) {
        gd_errf(err, errlen, "%s: mmap failed: %s", path, strerror(map_errno));
        return -1;
    }
    *map = m, *len = (size_t)st.st_size;
    return 0;
}

void gd_unmap_file(void *map, size_t len) {
    if (map) munmap(map, len);
}
