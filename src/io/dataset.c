/* Training datasets: IDX files (Fashion-MNIST / MNIST layout) and folders of images, the epoch
 * permutation and float batches. See include/gd_dataset.h for the API contract.
 *
 * Design notes
 *  - IDX: a big-endian header, magic 0x00000803 (unsigned bytes, 3 dimensions: n, rows, cols) for
 *    images and 0x00000801 (1 dimension: n) for labels, then the bytes. Files are read with zlib's
 *    gzread, which reads gzip and plain files alike. Rejected, with one line naming the file: a
 *    wrong magic (any other type byte or dimension count), a header shorter than it says, n = 0
 *    or n > 1e8, rows or cols of 0 or > 4096, label and image counts that differ, data shorter
 *    than the header says (or a gzip stream cut short / corrupt), and data after the last image
 *    or label. Labels are unsigned bytes (the magic fixes that), so they are always < 256;
 *    num_classes = max label + 1 and class_names = NULL; c = 1. Both headers are checked before
 *    any pixel is read, and the pixel buffer grows as data arrives (from 64 MiB, doubling), so a
 *    short file that claims to be huge costs no huge allocation.
 *  - Folders: dir/<class>/<file>. Names starting with '.' are ignored everywhere (".", "..",
 *    .DS_Store, editor files). Every other entry of dir must be a folder (a class), and every
 *    other entry of a class folder must be a regular file of at most 256 MiB whose first bytes
 *    are a PNG, JPEG, BMP or GIF signature (GIF: the first frame; guided-diffusion's loader
 *    takes GIFs too), so no other file is mistaken for, e.g., a headerless TGA. Image files are
 *    untrusted: io/image_decode.h checks each in full before anything decodes it (our own PNG
 *    reader; stb_image for the others, on checked data only). Anything else is an error that
 *    names the entry. Symbolic links are followed. Classes are the subfolder names
 *    sorted by strcmp (byte order = Python's sorted() on UTF-8 names), labelled 0, 1, ... in that
 *    order; files are sorted the same way within each class, and images are stored class by
 *    class in that order. An empty class folder, or a dir without classes, is an error (so
 *    num_classes = number of subfolders = max label + 1).
 *  - Each image must be exactly size x size pixels (checked from the header before decoding). It
 *    is decoded in its own channel count and converted to `channels` as PIL's convert() does:
 *    gray -> RGB replicates, alpha is dropped (not composited), RGB -> gray is PIL's
 *    convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16, the fixed-point form of ITU-R 601
 *    (299 R + 587 G + 114 B) / 1000 that Pillow uses (checked equal to Pillow 9.4 on all 2^24
 *    colours; plain rounding of the /1000 form differs on 9040 of them). 16-bit PNGs are reduced
 *    to 8 bits (v >> 8, as stb_image did). Files are decoded in parallel (OpenMP); when several
 *    fail, the error reported is that of the first in load order, so messages do not depend on
 *    timing.
 *  - Permutation: Fisher-Yates (for i = n-1 down to 1: j uniform in [0, i], swap perm[i] and
 *    perm[j]) on a splitmix64 stream (state += 0x9E3779B97F4A7C15; output = mix(state), mix being
 *    splitmix64's finaliser) whose state starts at seed XOR mix(epoch + 0x9E3779B97F4A7C15), i.e.
 *    seed XOR the first output of splitmix64 seeded with epoch. j is drawn without modulo bias:
 *    outputs r < 2^64 mod (i+1) are rejected and j = r mod (i+1). tests/data/dataset/make_data.py
 *    holds an independent Python implementation and its reference permutations.
 *  - Batches: x = (float)v / 127.5f - 1.0f in float32 (image_datasets.py's
 *    arr.astype(np.float32) / 127.5 - 1), NHWC uint8 -> NCHW float. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_dataset.h"
#include "gd_image.h"
#include "gd_util.h"
#include "io/image_decode.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAX_N 100000000u
#define IDX_MAX_DIM 4096u
#define FOLDER_MAX_SIZE 4096
#define IMAGE_MAX_FILE ((uint64_t)256 << 20) /* bytes of one image file */
#define READ_CHUNK ((size_t)1 << 30)  /* gzread takes an unsigned and returns an int */
#define GROW_START ((size_t)64 << 20) /* first pixel buffer; doubles as data arrives */

void gd_dataset_free(gd_dataset *d) {
    if (!d) return;
    free(d->images);
    free(d->labels);
    if (d->class_names)
        for (int k = 0; k < d->num_classes; k++)
            free(d->class_names[k]);
    free(d->class_names);
    memset(d, 0, sizeof *d);
}

/* ---- IDX ---------------------------------------------------------------------------------- */

/* zlib's message for the last error, without the "path: " it prefixes. */
static const char *gz_errstr(gzFile f, const char *path) {
    int code = 0;
    const char *msg = gzerror(f, &code);
    if (code == Z_ERRNO) return strerror(errno);
    if (!msg || !*msg) return "read error";
    size_t lp = strlen(path);
    if (!strncmp(msg, path, lp) && msg[lp] == ':' && msg[lp + 1] == ' ') msg += lp + 2;
    return msg;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* 1 when the last read hit the end of a gzip stream that was cut short (zlib reports that as the
 * end of the data, with Z_BUF_ERROR kept for gzerror). */
static int gz_cut_short(gzFile f) {
    int code = Z_OK;
    gzerror(f, &code);
    return code == Z_BUF_ERROR;
}

/* Reads up to len bytes; returns how many (fewer only at the end of the data), or -1 after a read
 * error (a corrupt gzip stream, an I/O error), with the error in err. */
static long long gz_read_full(gzFile f, const char *path, void *buf, size_t len, char *err, size_t errlen) {
    size_t got = 0;
    while (got < len) {
        size_t want = len - got < READ_CHUNK ? len - got : READ_CHUNK;
        int r = gzread(f, (uint8_t *)buf + got, (unsigned)want);
        if (r < 0) {
            gd_errf(err, errlen, "%s: read failed: %s", path, gz_errstr(f, path));
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

/* Opens an IDX file and reads its header: magic, then ndim big-endian sizes into dims. */
static gzFile idx_open(const char *path, uint32_t magic, int ndim, uint32_t *dims, char *err, size_t errlen) {
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        gd_errf(err, errlen, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    gzbuffer(f, 1u << 17);
    uint8_t hdr[16];
    size_t hlen = 4 + 4 * (size_t)ndim;
    long long got = gz_read_full(f, path, hdr, hlen, err, errlen);
    if (got < 0) goto fail;
    if (got >= 4) {
        uint32_t m = be32(hdr);
        if (m != magic) {
            const char *hint = m == IDX_MAGIC_LABELS       ? " (a label file)"
                               : m == IDX_MAGIC_IMAGES     ? " (an image file)"
                               : (m >> 16) != 0            ? " (not an IDX file)"
                               : ((m >> 8) & 0xff) != 0x08 ? " (elements are not unsigned bytes)"
                                                           : " (wrong number of dimensions)";
            gd_errf(err, errlen, "%s: bad IDX magic 0x%08x%s, expected 0x%08x (unsigned-byte %s)", path, (unsigned)m,
                    hint, (unsigned)magic, magic == IDX_MAGIC_IMAGES ? "images, 3 dimensions" : "labels, 1 dimension");
            goto fail;
        }
    }
    if ((size_t)got < hlen) {
        gd_errf(err, errlen, "%s: truncated: the IDX header needs %zu bytes, the file has %lld%s", path, hlen, got,
                gz_cut_short(f) ? " (the gzip stream ends early)" : "");
        goto fail;
    }
    for (int k = 0; k < ndim; k++)
        dims[k] = be32(hdr + 4 + 4 * k);
    return f;
fail:
    gzclose(f);
    return NULL;
}

/* Reads exactly total payload bytes (what = "images"/"labels" for messages) and checks that nothing
 * follows. The buffer grows as data arrives, so a short file cannot force a huge allocation. */
static uint8_t *idx_payload(gzFile f, const char *path, size_t total, const char *what, char *err, size_t errlen) {
    size_t cap = total < GROW_START ? total : GROW_START, got = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) {
        gd_errf(err, errlen, "%s: out of memory (%zu bytes of %s)", path, cap, what);
        return NULL;
    }
    while (got < total) {
        if (got == cap) {
            size_t nc = cap > total / 2 ? total : cap * 2;
            uint8_t *nb = realloc(buf, nc);
            if (!nb) {
                gd_errf(err, errlen, "%s: out of memory (%zu bytes of %s)", path, total, what);
                free(buf);
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        long long r = gz_read_full(f, path, buf + got, cap - got, err, errlen);
        if (r < 0) {
            free(buf);
            return NULL;
        }
        got += (size_t)r;
        if (got < cap) break; /* end of data */
    }
    if (got < total) {
        gd_errf(err, errlen, "%s: truncated: %zu of the %zu bytes of %s the header announces%s", path, got, total, what,
                gz_cut_short(f) ? " (the gzip stream ends early)" : "");
        free(buf);
        return NULL;
    }
    /* One more byte: there must be none, and for gzip this also checks the stream's CRC trailer. */
    uint8_t extra;
    long long r = gz_read_full(f, path, &extra, 1, err, errlen);
    if (r == 0 && gz_cut_short(f)) {
        gd_errf(err, errlen, "%s: truncated: the gzip stream ends early (after all %zu bytes of %s)", path, total,
                what);
        r = -1;
    } else if (r > 0) {
        gd_errf(err, errlen, "%s: unexpected data after the %zu bytes of %s", path, total, what);
    }
    if (r != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

int gd_dataset_load_idx(const char *images_path, const char *labels_path, gd_dataset *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    uint32_t idims[3], ldims[1];
    uint8_t *pix = NULL, *lab = NULL;
    gzFile fl = NULL, fi = idx_open(images_path, IDX_MAGIC_IMAGES, 3, idims, err, errlen);
    if (!fi) return -1;
    if (idims[0] == 0 || idims[0] > IDX_MAX_N) {
        gd_errf(err, errlen, "%s: image count %u is out of range (1 to %u)", images_path, (unsigned)idims[0],
                (unsigned)IDX_MAX_N);
        goto fail;
    }
    if (idims[1] == 0 || idims[1] > IDX_MAX_DIM || idims[2] == 0 || idims[2] > IDX_MAX_DIM) {
        gd_errf(err, errlen, "%s: image size %ux%u is out of range (1 to %u)", images_path, (unsigned)idims[1],
                (unsigned)idims[2], (unsigned)IDX_MAX_DIM);
        goto fail;
    }
    fl = idx_open(labels_path, IDX_MAGIC_LABELS, 1, ldims, err, errlen);
    if (!fl) goto fail;
    if (ldims[0] != idims[0]) {
        gd_errf(err, errlen, "%s: %u labels, but %s has %u images", labels_path, (unsigned)ldims[0], images_path,
                (unsigned)idims[0]);
        goto fail;
    }
    size_t n = idims[0], h = idims[1], w = idims[2];
    pix = idx_payload(fi, images_path, n * h * w, "images", err, errlen);
    if (!pix) goto fail;
    lab = idx_payload(fl, labels_path, n, "labels", err, errlen);
    if (!lab) goto fail;
    d->labels = malloc(n * sizeof *d->labels);
    if (!d->labels) {
        gd_errf(err, errlen, "%s: out of memory", labels_path);
        goto fail;
    }
    int maxl = 0;
    for (size_t i = 0; i < n; i++) {
        d->labels[i] = lab[i];
        if (lab[i] > maxl) maxl = lab[i];
    }
    free(lab);
    gzclose(fi);
    gzclose(fl);
    d->images = pix;
    d->n = (int)n;
    d->h = (int)h;
    d->w = (int)w;
    d->c = 1;
    d->num_classes = maxl + 1;
    d->class_names = NULL;
    return 0;
fail:
    free(pix);
    free(lab);
    if (fi) gzclose(fi);
    if (fl) gzclose(fl);
    gd_dataset_free(d);
    return -1;
}

/* ---- folders ------------------------------------------------------------------------------ */

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static void strvec_free(strvec *s) {
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* Takes ownership of x (freed on failure). */
static int strvec_push(strvec *s, char *x) {
    if (!x) return -1;
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 16;
        char **nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) {
            free(x);
            return -1;
        }
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = x;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] != '/';
    char *p = malloc(la + (size_t)slash + lb + 1);
    if (!p) return NULL;
    memcpy(p, a, la);
    if (slash) p[la] = '/';
    memcpy(p + la + slash, b, lb + 1);
    return p;
}

/* The non-hidden names in dir, sorted. */
static int list_dir(const char *dir, strvec *out, char *err, size_t errlen) {
    errno = 0;
    DIR *dh = opendir(dir);
    if (!dh) {
        gd_errf(err, errlen, "%s: cannot open folder: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    for (;;) {
        errno = 0;
        e = readdir(dh);
        if (!e) break;
        if (e->d_name[0] == '.') continue;
        if (strvec_push(out, strdup(e->d_name)) != 0) {
            gd_errf(err, errlen, "%s: out of memory listing the folder", dir);
            closedir(dh);
            return -1;
        }
    }
    int saved = errno;
    closedir(dh);
    if (saved) {
        gd_errf(err, errlen, "%s: cannot read folder: %s", dir, strerror(saved));
        return -1;
    }
    if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return 0;
}

/* Reads path whole (after its first bytes show an image format, so that a large non-image file
 * costs one small read) and decodes it into out (size x size x channels); with probed != NULL it
 * only stores the side of a square image there. Returns 0, or -1 with a message in msg. */
static int load_image_ex(const char *path, int channels, int size, uint8_t *out, int *probed, char *msg,
                         size_t msglen) {
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        gd_errf(msg, msglen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    uint8_t head[8], *buf = NULL;
    size_t nh = fread(head, 1, sizeof head, f);
    struct stat st;
    int rc = -1, w, h;
    if (!gd_image_format(head, nh)) {
        gd_errf(msg, msglen, "%s: not a PNG, JPEG, BMP or GIF image", path);
    } else if (fstat(fileno(f), &st) != 0 || st.st_size < (off_t)nh) {
        gd_errf(msg, msglen, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
    } else if ((uint64_t)st.st_size > IMAGE_MAX_FILE) {
        gd_errf(msg, msglen, "%s: file of %lld bytes is too large for a dataset image (limit %d MiB)", path,
                (long long)st.st_size, (int)(IMAGE_MAX_FILE >> 20));
    } else if (!(buf = malloc((size_t)st.st_size))) {
        gd_errf(msg, msglen, "%s: out of memory for a file of %lld bytes", path, (long long)st.st_size);
    } else {
        size_t len = (size_t)st.st_size;
        memcpy(buf, head, nh);
        if (fread(buf + nh, 1, len - nh, f) != len - nh)
            gd_errf(msg, msglen, "%s: read failed (the file changed while being read?)", path);
        else if (gd_image_probe(path, buf, len, &w, &h, msg, msglen) != 0)
            ;
        else if (probed && (w != h || w > FOLDER_MAX_SIZE))
            gd_errf(msg, msglen, "%s: image is %dx%d (width x height); a folder's images must be square, at most %d", path,
                    w, h, FOLDER_MAX_SIZE);
        else if (probed)
            *probed = w, rc = 0;
        else if (w != size || h != size)
            gd_errf(msg, msglen, "%s: image is %dx%d (width x height), expected %dx%d", path, w, h, size, size);
        else
            rc = gd_image_decode(path, buf, len, w, h, channels, out, msg, msglen);
    }
    free(buf);
    fclose(f);
    return rc;
}

static int load_image(const char *path, int channels, int size, uint8_t *out, char *msg, size_t msglen) {
    return load_image_ex(path, channels, size, out, NULL, msg, msglen);
}

/* The image files of a dataset folder, in load order, and their labels. */
typedef struct {
    strvec files;
    int32_t *labels;
    size_t cap; /* of labels; files.n of them are set */
} labelled_files;

/* Appends path (owned from here on, freed on failure) and its label. */
static int push_labelled(labelled_files *l, char *path, int32_t label) {
    if (!path || strvec_push(&l->files, path) != 0) return -1;
    size_t n = l->files.n - 1;
    if (n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        int32_t *nl = realloc(l->labels, nc * sizeof *nl);
        if (!nl) return -1;
        l->labels = nl, l->cap = nc;
    }
    l->labels[n] = label;
    return 0;
}

/* A folder of image files only (ddpm-sample --save-each): one set, labels read from the
 * "classK" part of each name when there is one, else -1. */
static int list_flat(const char *dir, const strvec *names, labelled_files *out, char *err, size_t errlen) {
    for (size_t k = 0; k < names->n; k++) {
        char *p = path_join(dir, names->v[k]), *c = strstr(names->v[k], "class");
        struct stat st;
        long v = c && c[5] >= '0' && c[5] <= '9' ? strtol(c + 5, NULL, 10) : -1;
        if (push_labelled(out, p, v >= 0 && v < INT32_MAX ? (int32_t)v : -1)) {
            gd_errf(err, errlen, "%s: out of memory", dir);
            return -1;
        }
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            gd_errf(err, errlen, "%s: mixes image files and subfolders (expected only images, or <class>/<images>)", dir);
            return -1;
        }
    }
    return 0;
}

/* Appends the image files of the class folder dir/name, labelled label. */
static int list_class(const char *dir, const char *name, int32_t label, labelled_files *out, char *err,
                      size_t errlen) {
    char *cdir = path_join(dir, name);
    struct stat st;
    if (!cdir) {
        gd_errf(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    strvec names = {0};
    int rc = -1;
    if (stat(cdir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (errno = 0, stat(cdir, &st) != 0)
            gd_errf(err, errlen, "%s: cannot stat: %s", cdir, strerror(errno));
        else
            gd_errf(err, errlen, "%s: not a folder (expected %s/<class>/<image files>)", cdir, dir);
        goto done;
    }
    if (list_dir(cdir, &names, err, errlen) != 0) goto done;
    if (names.n == 0) {
        gd_errf(err, errlen, "%s: class folder has no images", cdir);
        goto done;
    }
    for (size_t i = 0; i < names.n; i++) {
        char *p = path_join(cdir, names.v[i]);
        if (push_labelled(out, p, label)) {
            gd_errf(err, errlen, "%s: out of memory", cdir);
            goto done;
        }
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            if (errno = 0, stat(p, &st) != 0)
                gd_errf(err, errlen, "%s: cannot stat: %s", p, strerror(errno));
            else
                gd_errf(err, errlen, "%s: not a regular file (class folders hold only image files)", p);
            goto done;
        }
    }
    rc = 0;
done:
    strvec_free(&names);
    free(cdir);
    return rc;
}

/* Decodes every file into one NHWC buffer; NULL (with err) if any fails. */
static uint8_t *decode_all(const strvec *files, int channels, int size, const char *dir, char *err, size_t errlen) {
    size_t n = files->n, per = (size_t)size * (size_t)size * (size_t)channels;
    if (n > (size_t)INT_MAX || n > SIZE_MAX / per) {
        gd_errf(err, errlen, "%s: too many images (%zu)", dir, n);
        return NULL;
    }
    uint8_t *images = malloc(n * per);
    if (!images) {
        gd_errf(err, errlen, "%s: out of memory (%zu images of %dx%dx%d)", dir, n, size, size, channels);
        return NULL;
    }
    /* Decode in parallel; keep the error of the first failing file in load order. */
    long long first_bad = (long long)n;
    char *first_msg = NULL;
#pragma omp parallel for schedule(dynamic, 4)
    for (long long i = 0; i < (long long)n; i++) {
        long long fb;
#pragma omp atomic read
        fb = first_bad;
        if (i > fb) continue;
        char msg[4096 + 256];
        if (load_image(files->v[i], channels, size, images + (size_t)i * per, msg, sizeof msg) != 0) {
#pragma omp critical(gd_dataset_first_error)
            {
                if (i < first_bad) {
                    free(first_msg);
                    first_msg = strdup(msg);
#pragma omp atomic write
                    first_bad = i;
                }
            }
        }
    }
    if (first_bad < (long long)n) {
        gd_errf(err, errlen, "%s", first_msg ? first_msg : "out of memory");
        free(first_msg);
        free(images);
        return NULL;
    }
    return images;
}

int gd_dataset_load_folder(const char *dir, int channels, int size, gd_dataset *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    if (channels != 1 && channels != 3) {
        gd_errf(err, errlen, "%s: channels must be 1 or 3, not %d", dir, channels);
        return -1;
    }
    if (size < 0 || size > FOLDER_MAX_SIZE) {
        gd_errf(err, errlen, "%s: image size must be 0 (the first image's) to %d, not %d", dir, FOLDER_MAX_SIZE, size);
        return -1;
    }
    strvec classes = {0};
    labelled_files files = {0};
    int rc = -1;
    if (list_dir(dir, &classes, err, errlen) != 0) goto done;
    if (classes.n == 0) {
        gd_errf(err, errlen, "%s: no class subfolders (expected %s/<class>/<image files>)", dir, dir);
        goto done;
    }
    if (classes.n > INT_MAX) {
        gd_errf(err, errlen, "%s: too many class subfolders", dir);
        goto done;
    }
    /* a file (not a class folder) first: dir is a folder of images only (list_flat) */
    int flat = 0;
    {
        char *p0 = path_join(dir, classes.v[0]);
        struct stat st0;
        flat = p0 && stat(p0, &st0) == 0 && S_ISREG(st0.st_mode);
        free(p0);
    }
    if (flat && list_flat(dir, &classes, &files, err, errlen) != 0) goto done;
    for (size_t k = 0; !flat && k < classes.n; k++)
        if (list_class(dir, classes.v[k], (int32_t)k, &files, err, errlen) != 0) goto done;
    if (size == 0 && files.files.n > 0 && load_image_ex(files.files.v[0], channels, 0, NULL, &size, err, errlen) != 0)
        goto done;
    uint8_t *images = decode_all(&files.files, channels, size, dir, err, errlen);
    if (!images) goto done;
    size_t n = files.files.n;
    d->class_names = flat ? NULL : calloc(classes.n, sizeof *d->class_names);
    if (!flat && !d->class_names) {
        gd_errf(err, errlen, "%s: out of memory", dir);
        free(images);
        goto done;
    }
    for (size_t k = 0; !flat && k < classes.n; k++) { /* hand the names over */
        d->class_names[k] = classes.v[k];
        classes.v[k] = NULL;
    }
    d->num_classes = flat ? 0 : (int)classes.n;
    for (size_t i = 0; flat && i < n; i++)
        d->num_classes = files.labels[i] + 1 > d->num_classes ? files.labels[i] + 1 : d->num_classes;
    d->images = images;
    d->labels = files.labels;
    files.labels = NULL;
    d->n = (int)n;
    d->h = d->w = size;
    d->c = channels;
    rc = 0;
done:
    strvec_free(&classes);
    strvec_free(&files.files);
    free(files.labels);
    if (rc != 0) gd_dataset_free(d);
    return rc;
}

/* ---- permutation and batches -------------------------------------------------------------- */

#define SM64_GOLDEN 0x9E3779B97F4A7C15ull

static uint64_t sm64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t sm64_next(uint64_t *state) { return sm64_mix(*state += SM64_GOLDEN); }

void gd_dataset_permutation(int n, uint64_t seed, uint64_t epoch, int32_t *perm) {
    if (n <= 0) return;
    uint64_t state = seed ^ sm64_mix(epoch + SM64_GOLDEN);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        uint64_t bound = (uint64_t)i + 1, threshold = (0 - bound) % bound, r; /* 2^64 mod bound */
        do {
            r = sm64_next(&state);
        } while (r < threshold);
        int j = (int)(r % bound);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void gd_dataset_batch(const gd_dataset *d, const int32_t *idx, int count, float *x, int32_t *y) {
    size_t hw = (size_t)d->h * (size_t)d->w, c = (size_t)d->c;
    for (int b = 0; b < count; b++) {
        assert(idx[b] >= 0 && idx[b] < d->n);
        gd_from_uint8(d->images + (size_t)idx[b] * hw * c, d->c, d->h, d->w, x + (size_t)b * c * hw);
        if (y) y[b] = d->labels[idx[b]];
    }
}
