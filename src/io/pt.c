/* PyTorch checkpoint reader: the zip container (io/zip.h), data.pkl through the restricted
 * unpickler (io/pt.h), then the storages. See include/gd_pt.h for the contract.
 *
 * Order of work: the directory; data.pkl (read whole, CRC checked) is unpickled and every
 * tensor view checked against its declared storage; storage references are merged by key (one
 * key, one dtype and size); views that partly overlap are refused; only then is tensor data
 * touched: each storage member used is checked to hold exactly its declared bytes, viewed in
 * place when stored (CRC checked) or inflated once when deflated; non-contiguous views are
 * copied. */
#define _POSIX_C_SOURCE 200809L
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include "gd_pt.h"
#include "gd_util.h"
#include "io/pt.h"
#include "io/safetensors.h"
#include "io/zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PT_MEM_LABEL "<memory>"
#define PT_MAX_PKL ((uint64_t)1 << 30)
#define PT_BUDGET(len) (((size_t)64 << 20) + 32 * (size_t)(len))

static const uint8_t legacy_magic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

/* The legacy format starts with the pickled magic number (after PROTO and perhaps FRAME). */
static int is_legacy(const uint8_t *p, size_t n) {
    if (n < 2 || p[0] != 0x80 || p[1] < 2 || p[1] > 5) return 0;
    size_t o = 2;
    if (n > o && p[o] == 0x95) o += 9;
    return n >= o + sizeof legacy_magic && memcmp(p + o, legacy_magic, sizeof legacy_magic) == 0;
}

/* A torch record name: "<prefix>/<record>", the prefix without '/'. */
static int is_torch_record(const char *s, size_t n) {
    const char *slash = memchr(s, '/', n);
    if (!slash || slash == s) return 0;
    const char *r = slash + 1;
    size_t rl = n - (size_t)(r - s);
    static const char *const exact[] = {"data.pkl", "version", "byteorder", ".format_version", ".storage_alignment"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (rl == strlen(exact[i]) && memcmp(r, exact[i], rl) == 0) return 1;
    return (rl > 5 && memcmp(r, "data/", 5) == 0) || (rl > 6 && memcmp(r, ".data/", 6) == 0);
}

int gd_pt_sniff(const void *head, size_t n) {
    const uint8_t *p = head;
    if (!p) return 0;
    if (is_legacy(p, n)) return 1;
    if (n < 30 || memcmp(p, "PK\3\4", 4) != 0) return 0;
    size_t nl = get16(p + 26);
    return n >= 30 + nl && is_torch_record((const char *)p + 30, nl);
}

/* ---- state of one open ------------------------------------------------------------------- */

typedef struct {
    const char *name;
    size_t index;
} pt_name;

typedef struct {
    const char *label;
    char *err;
    size_t errlen;
    zip_reader zr;
    zip_dir dir;
    pt_name *sorted;       /* member names, sorted, for lookups */
    char *prefix;          /* "<prefix>/" */
    size_t budget, used;
    uint8_t *pkl;
    pt_pickle pk;
    uint32_t *uniq;        /* storage reference -> the first reference with its key */
    const uint8_t **sdata; /* per storage reference (the first of each key): its bytes, once loaded */
    void **owned;          /* inflated storages and copies: they go to the file */
    int nowned, capowned;
    gd_st_tensor *tensors;
    int ntensors;
} pt_reader;

static int oom(pt_reader *r) {
    gd_errf(r->err, r->errlen, "%s: out of memory", r->label);
    return -1;
}

/* Counts n bytes against the budget. */
static int charge(pt_reader *r, size_t n, const char *what) {
    if (n > r->budget - r->used) {
        gd_errf(r->err, r->errlen, "%s: %s needs %zu bytes, over the reader's limit of %zu for this file", r->label,
                what, n, r->budget);
        return -1;
    }
    r->used += n;
    return 0;
}

/* A malloc() within the budget; plain ones are freed by pt_parse, owned ones go to the file. */
static void *alloc(pt_reader *r, size_t n, const char *what, int owned) {
    if (charge(r, n, what) != 0) return NULL;
    if (owned && r->nowned == r->capowned) {
        int nc = r->capowned ? 2 * r->capowned : 16;
        void **q = realloc(r->owned, (size_t)nc * sizeof *q);
        if (!q) return oom(r), NULL;
        r->owned = q;
        r->capowned = nc;
    }
    void *b = malloc(n ? n : 1);
    if (!b) return oom(r), NULL;
    if (owned) r->owned[r->nowned++] = b;
    return b;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const pt_name *)a)->name, ((const pt_name *)b)->name);
}

static int sort_names(pt_reader *r) {
    r->sorted = alloc(r, (r->dir.count ? r->dir.count : 1) * sizeof *r->sorted, "the member list", 0);
    if (!r->sorted) return -1;
    for (size_t i = 0; i < r->dir.count; i++) r->sorted[i] = (pt_name){r->dir.names[i], i};
    qsort(r->sorted, r->dir.count, sizeof *r->sorted, cmp_name);
    for (size_t i = 1; i < r->dir.count; i++)
        if (strcmp(r->sorted[i - 1].name, r->sorted[i].name) == 0) {
            gd_errf(r->err, r->errlen, "%s: duplicate member %.200s", r->label, r->sorted[i].name);
            return -1;
        }
    return 0;
}

/* The index (into r->dir) of the member called name, or -1. */
static long find_member(pt_reader *r, const char *name) {
    pt_name key = {name, 0};
    const pt_name *hit = bsearch(&key, r->sorted, r->dir.count, sizeof *r->sorted, cmp_name);
    return hit ? (long)hit->index : -1;
}

/* Reads a whole member (CRC checked) into dst, or, dst NULL, into a block of its size allocated
 * once the member's headers have passed (owned: see alloc), returned in *out. */
static int read_member(pt_reader *r, long i, void *dst, void **out, const char *what, int owned) {
    zip_stream *s = malloc(sizeof *s);
    if (!s) return oom(r);
    const size_t n = (size_t)r->dir.ents[i].usize;
    int rc = zip_member_open(&r->zr, &r->dir.ents[i], r->dir.names[i], r->dir.members_end, s);
    if (rc == 0 && !dst) {
        dst = alloc(r, n, what, owned);
        if (!dst) rc = -1;
        if (out) *out = dst;
    }
    if (rc == 0) rc = zip_member_read(s, dst, n, "data");
    if (rc == 0) rc = zip_member_finish(s);
    zip_member_close(s);
    free(s);
    return rc;
}

/* `<prefix>/byteorder`, when there, must say "little". */
static int check_byteorder(pt_reader *r) {
    const size_t pl = strlen(r->prefix);
    char *name = alloc(r, pl + 10, "a member name", 0);
    if (!name) return -1;
    memcpy(name, r->prefix, pl);
    memcpy(name + pl, "byteorder", 10);
    long b = find_member(r, name);
    free(name);
    if (b < 0) return 0;
    char text[8] = {0};
    if (r->dir.ents[b].usize > 7) {
        gd_errf(r->err, r->errlen, "%s: byteorder record of %llu bytes", r->label,
                (unsigned long long)r->dir.ents[b].usize);
        return -1;
    }
    if (read_member(r, b, text, NULL, NULL, 0) != 0) return -1;
    if (strcmp(text, "little") != 0) {
        gd_errf(r->err, r->errlen, "%s: byteorder is not 'little' (big-endian checkpoints are not supported)", r->label);
        return -1;
    }
    return 0;
}

/* Finds the one `<prefix>/data.pkl`, sets r->prefix, reads data.pkl. */
static int load_pickle(pt_reader *r, size_t *pkl_len) {
    long at = -1;
    for (size_t i = 0; i < r->dir.count; i++) {
        const char *n = r->dir.names[i], *slash = strchr(n, '/');
        if (!slash || slash == n || strcmp(slash + 1, "data.pkl") != 0) continue;
        if (at >= 0) {
            gd_errf(r->err, r->errlen, "%s: more than one data.pkl in the archive", r->label);
            return -1;
        }
        at = (long)i;
    }
    if (at < 0) {
        gd_errf(r->err, r->errlen, "%s: not a PyTorch checkpoint (a zip archive without <prefix>/data.pkl)", r->label);
        return -1;
    }
    size_t pl = (size_t)(strchr(r->dir.names[at], '/') - r->dir.names[at]) + 1;
    r->prefix = alloc(r, pl + 1, "the archive prefix", 0);
    if (!r->prefix) return -1;
    memcpy(r->prefix, r->dir.names[at], pl);
    r->prefix[pl] = '\0';
    if (check_byteorder(r) != 0) return -1;
    const zip_entry *e = &r->dir.ents[at];
    if (e->usize > PT_MAX_PKL) {
        gd_errf(r->err, r->errlen, "%s: data.pkl of %llu bytes is too large", r->label, (unsigned long long)e->usize);
        return -1;
    }
    void *pkl = NULL;
    int rc = read_member(r, at, NULL, &pkl, "data.pkl", 0);
    r->pkl = pkl;
    if (rc != 0) return -1;
    *pkl_len = (size_t)e->usize;
    return 0;
}

/* ---- storages ---------------------------------------------------------------------------- */

typedef struct {
    const char *key;
    size_t len;
    uint32_t index;
} pt_key;

static int cmp_key(const void *a, const void *b) {
    const pt_key *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    int c = memcmp(x->key, y->key, x->len);
    if (c) return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static const char *key_text(const char *k, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap; i++) out[o++] = (k[i] >= 0x20 && k[i] < 0x7f) ? k[i] : '?';
    out[o] = '\0';
    return out;
}

/* Merges storage references by key: uniq[i] is the first reference with i's key, which must
 * agree on dtype and size. */
static int merge_storages(pt_reader *r) {
    const size_t n = r->pk.nstorages;
    pt_key *keys = alloc(r, (n ? n : 1) * sizeof *keys, "the storage table", 0);
    r->uniq = alloc(r, (n ? n : 1) * sizeof *r->uniq, "the storage table", 0);
    r->sdata = alloc(r, (n ? n : 1) * sizeof *r->sdata, "the storage table", 0);
    if (!keys || !r->uniq || !r->sdata) {
        free(keys);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        keys[i] = (pt_key){r->pk.storages[i].key, r->pk.storages[i].keylen, (uint32_t)i};
        r->sdata[i] = NULL;
    }
    qsort(keys, n, sizeof *keys, cmp_key);
    uint32_t first = 0;
    for (size_t k = 0; k < n; k++) {
        if (k == 0 || keys[k].len != keys[k - 1].len || memcmp(keys[k].key, keys[k - 1].key, keys[k].len) != 0)
            first = keys[k].index;
        r->uniq[keys[k].index] = first;
        const pt_storage_ref *a = &r->pk.storages[keys[k].index], *f = &r->pk.storages[first];
        if (f->dtype != a->dtype || f->numel != a->numel) {
            char kb[48];
            gd_errf(r->err, r->errlen, "%s: storage '%s' is declared twice with different types or sizes", r->label,
                    key_text(a->key, a->keylen, kb, sizeof kb));
            free(keys);
            return -1;
        }
    }
    free(keys);
    return 0;
}

typedef struct {
    uint32_t storage, entry;
    uint64_t start, end;
} pt_span;

static int cmp_span(const void *a, const void *b) {
    const pt_span *x = a, *y = b;
    if (x->storage != y->storage) return x->storage < y->storage ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

static int same_view(const pt_tensor_ref *a, const pt_tensor_ref *b) {
    if (a->offset != b->offset || a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->size[d] != b->size[d] || a->stride[d] != b->stride[d]) return 0;
    return 1;
}

/* Two entries may share storage bytes only as identical views (tied weights). */
static int check_overlaps(pt_reader *r) {
    const size_t n = r->pk.nentries;
    pt_span *sp = alloc(r, (n ? n : 1) * sizeof *sp, "the overlap check", 0);
    if (!sp) return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const pt_tensor_ref *t = &r->pk.tensors[r->pk.entries[i].tensor];
        if (t->numel) sp[m++] = (pt_span){r->uniq[t->storage], (uint32_t)i, t->offset, t->offset + t->span};
    }
    qsort(sp, m, sizeof *sp, cmp_span);
    size_t reach = 0; /* the span reaching furthest so far in this storage */
    for (size_t k = 1; k < m; k++) {
        if (sp[k].storage != sp[k - 1].storage) {
            reach = k;
            continue;
        }
        const pt_span *a = &sp[reach], *b = &sp[k];
        const pt_entry *ea = &r->pk.entries[a->entry], *eb = &r->pk.entries[b->entry];
        if (b->start < a->end && !same_view(&r->pk.tensors[ea->tensor], &r->pk.tensors[eb->tensor])) {
            char x[48], y[48];
            gd_errf(r->err, r->errlen, "%s: tensors '%s' and '%s' overlap in their storage", r->label,
                    key_text(ea->name, ea->namelen, x, sizeof x), key_text(eb->name, eb->namelen, y, sizeof y));
            free(sp);
            return -1;
        }
        if (b->end > a->end) reach = k;
    }
    free(sp);
    return 0;
}

/* The bytes of storage u (the first reference of its key): viewed in place or inflated. */
static int load_storage(pt_reader *r, uint32_t u) {
    const pt_storage_ref *s = &r->pk.storages[u];
    const size_t pl = strlen(r->prefix);
    char *name = alloc(r, pl + 5 + s->keylen + 1, "a member name", 0);
    if (!name) return -1;
    memcpy(name, r->prefix, pl);
    memcpy(name + pl, "data/", 5);
    memcpy(name + pl + 5, s->key, s->keylen);
    name[pl + 5 + s->keylen] = '\0';
    long i = find_member(r, name);
    int rc = -1;
    const uint64_t want = s->numel * gd_st_dtype_size(s->dtype); /* <= 2^43 */
    char kb[48];
    if (i < 0) {
        gd_errf(r->err, r->errlen, "%s: storage '%s' has no member %.200s", r->label,
                key_text(s->key, s->keylen, kb, sizeof kb), name);
    } else if (r->dir.ents[i].usize != want) {
        gd_errf(r->err, r->errlen, "%s: %.200s holds %llu bytes but its storage needs %llu (%llu x %s)", r->label, name,
                (unsigned long long)r->dir.ents[i].usize, (unsigned long long)want, (unsigned long long)s->numel,
                gd_st_dtype_name(s->dtype));
    } else if (r->dir.ents[i].method == 0) {
        r->sdata[u] = zip_member_view(&r->zr, &r->dir.ents[i], name, r->dir.members_end);
        rc = r->sdata[u] ? 0 : -1;
    } else {
        void *b = NULL;
        if (read_member(r, i, NULL, &b, "an inflated storage", 1) == 0) {
            r->sdata[u] = b;
            rc = 0;
        }
    }
    free(name);
    return rc;
}

/* ---- tensors ----------------------------------------------------------------------------- */

static int contiguous(const pt_tensor_ref *t) {
    int64_t want = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->size[d] != 1 && t->stride[d] != want) return 0;
        want *= t->size[d];
    }
    return 1;
}

/* Copies the strided view t of src (the storage's bytes from its offset) into dst, contiguous. */
static void gather(uint8_t *dst, const uint8_t *src, const pt_tensor_ref *t, size_t es) {
    int64_t idx[PT_MAX_DIMS] = {0};
    uint64_t off = 0;
    for (uint64_t k = 0; k < t->numel; k++) {
        memcpy(dst + k * es, src + off * es, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->size[d]) {
                off += (uint64_t)t->stride[d];
                break;
            }
            off -= (uint64_t)(t->size[d] - 1) * (uint64_t)t->stride[d];
            idx[d] = 0;
        }
    }
}

static int build_tensor(pt_reader *r, const pt_entry *e, gd_st_tensor *out) {
    const pt_tensor_ref *t = &r->pk.tensors[e->tensor];
    const uint32_t u = r->uniq[t->storage];
    const pt_storage_ref *s = &r->pk.storages[u];
    char kb[48];
    if (memchr(e->name, 0, e->namelen) || st_utf8_check((const uint8_t *)e->name, e->namelen) != e->namelen) {
        gd_errf(r->err, r->errlen, "%s: key '%s' is not valid UTF-8 text", r->label,
                key_text(e->name, e->namelen, kb, sizeof kb));
        return -1;
    }
    if (!r->sdata[u] && load_storage(r, u) != 0) return -1;
    const size_t es = gd_st_dtype_size(s->dtype);
    out->dtype = s->dtype;
    out->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) out->shape[d] = t->size[d];
    out->numel = (int64_t)t->numel;
    out->nbytes = (size_t)t->numel * es;
    const uint8_t *base = r->sdata[u] + (t->numel ? t->offset * es : 0);
    if (t->numel == 0 || contiguous(t)) {
        out->data = base;
    } else {
        uint8_t *c = alloc(r, out->nbytes, "a copy of a non-contiguous tensor", 1);
        if (!c) return -1;
        gather(c, base, t, es);
        out->data = c;
    }
    out->name = malloc(e->namelen + 1);
    if (!out->name) return oom(r);
    memcpy(out->name, e->name, e->namelen);
    out->name[e->namelen] = '\0';
    return 0;
}

static int build_tensors(pt_reader *r) {
    const size_t n = r->pk.nentries;
    if (n == 0 && r->pk.skipped > 0) {
        char kb[48];
        gd_errf(r->err, r->errlen, "%s: no tensor at the top level of the dict (%zu other entries, the first '%s'): not a "
                "state dict", r->label, r->pk.skipped,
                r->pk.first_skipped ? key_text(r->pk.first_skipped, r->pk.first_skipped_len, kb, sizeof kb) : "?");
        return -1;
    }
    if (n > (size_t)INT32_MAX) {
        gd_errf(r->err, r->errlen, "%s: too many tensors (%zu)", r->label, n);
        return -1;
    }
    if (charge(r, n * sizeof *r->tensors, "the tensor list") != 0) return -1;
    r->tensors = calloc(n ? n : 1, sizeof *r->tensors);
    if (!r->tensors) return oom(r);
    for (size_t i = 0; i < n; i++) {
        if (build_tensor(r, &r->pk.entries[i], &r->tensors[i]) != 0) {
            free(r->tensors[i].name);
            return -1;
        }
        r->ntensors = (int)i + 1;
    }
    return 0;
}

/* ---- open -------------------------------------------------------------------------------- */

static void reader_free(pt_reader *r, int keep_result) {
    zip_dir_free(&r->dir);
    free(r->sorted);
    free(r->prefix);
    free(r->pkl);
    pt_pickle_free(&r->pk);
    free(r->uniq);
    free(r->sdata);
    if (keep_result) return;
    for (int i = 0; i < r->ntensors; i++) free(r->tensors[i].name);
    free(r->tensors);
    for (int i = 0; i < r->nowned; i++) free(r->owned[i]);
    free(r->owned);
}

/* Parses buf[0..len). On success the file takes map (if not NULL) and *map_taken is set. */
static gd_st_file *pt_parse(const uint8_t *buf, size_t len, const char *label, void *map, int *map_taken, char *err,
                            size_t errlen) {
    *map_taken = 0;
    if (!buf) {
        gd_errf(err, errlen, "%s: no data", label);
        return NULL;
    }
    if (is_legacy(buf, len)) {
        gd_errf(err, errlen, "%s: legacy torch.save format (PyTorch < 1.6 or _use_new_zipfile_serialization=False) is "
                "not supported: re-save it with a newer PyTorch (torch.save(torch.load(f), f))", label);
        return NULL;
    }
    if (len < 4 || memcmp(buf, "PK\3\4", 4) != 0) {
        gd_errf(err, errlen, "%s: not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save pickle)", label);
        return NULL;
    }
    pt_reader r;
    memset(&r, 0, sizeof r);
    r.label = label;
    r.err = err;
    r.errlen = errlen;
    r.zr = (zip_reader){-1, len, label, err, errlen, buf};
    r.budget = PT_BUDGET(len);
    size_t pkl_len = 0;
    if (zip_list_directory(&r.zr, &r.dir) != 0 || sort_names(&r) != 0 || load_pickle(&r, &pkl_len) != 0) goto fail;
    if (pt_unpickle(r.pkl, pkl_len, r.budget - r.used, &r.pk, label, err, errlen) != 0) goto fail;
    r.used += r.pk.used;
    if (merge_storages(&r) != 0 || check_overlaps(&r) != 0 || build_tensors(&r) != 0) goto fail;
    gd_st_file *f = st_file_adopt(r.tensors, r.ntensors, r.owned, r.nowned, map, len);
    *map_taken = map != NULL;
    reader_free(&r, 1);
    if (!f)
        gd_errf(err, errlen, "%s: out of memory", label);
    else if (err && errlen)
        err[0] = '\0';
    return f;
fail:
    reader_free(&r, 0);
    return NULL;
}

gd_st_file *gd_pt_open_mem(const void *buf, size_t len, char *err, size_t errlen) {
    int taken;
    return pt_parse(buf, len, PT_MEM_LABEL, NULL, &taken, err, errlen);
}

gd_st_file *gd_pt_open(const char *path, char *err, size_t errlen) {
    void *m;
    size_t len;
    if (gd_map_file(path, &m, &len, err, errlen)) return NULL;
    if (len < 4) {
        gd_errf(err, errlen, "%s: not a PyTorch checkpoint (%zu bytes)", path, len);
        gd_unmap_file(m, len);
        return NULL;
    }
    int taken;
    gd_st_file *f = pt_parse(m, len, path, m, &taken, err, errlen);
    if (!taken) gd_unmap_file(m, len);
    return f;
}
