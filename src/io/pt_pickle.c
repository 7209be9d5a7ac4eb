/* The restricted unpickler of the PyTorch checkpoint reader (io/pt.h, include/gd_pt.h).
 *
 * A stack machine over the opcodes torch.save writes for a state dict (protocol 2 by default; the
 * protocol 4/5 forms too: FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE, ...). Nothing is ever
 * executed: the only callables are the allow-listed globals, interpreted here (an OrderedDict is
 * made empty; _rebuild_tensor_v2 records a checked view; _rebuild_parameter passes its tensor on),
 * and persistent ids only record ('storage', type, key, location, numel). Values live in one
 * array and refer to each other by index, so memo sharing (and even cycles) cost nothing and
 * nothing recurses. Limits: MARK depth, stack size, memo indices (below the pickle's length),
 * string and global-name lengths, tensor and storage counts, and an allocation budget. */
#include "io/pt.h"
#include "gd_util.h"
#include "io/safetensors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PT_MAX_MARKS 256
#define PT_MAX_STACK ((size_t)1 << 18)   /* a state dict needs ~2000 (SETITEMS of 1000 pairs) */
#define PT_MAX_ITEMS ((uint32_t)1 << 28)     /* per container */
#define PT_MAX_STR ((size_t)1 << 26)
#define PT_MAX_GLOBAL 256                    /* module or name */
#define PT_MAX_REFS ((size_t)1 << 22)        /* tensors, and storage references */
#define PT_MAX_KEY 1024                      /* storage key */
#define PT_MAX_NUMEL ((uint64_t)1 << 40)
#define UNSET UINT32_MAX

enum { V_NONE, V_BOOL, V_INT, V_BIGINT, V_FLOAT, V_STR, V_BYTES, V_TUPLE, V_LIST, V_DICT, V_ODICT,
       V_GLOBAL, V_STORAGE, V_TENSOR };
static const char *const kind_names[] = {"None", "bool", "int", "int", "float", "str", "bytes", "tuple",
                                         "list", "dict", "OrderedDict", "global", "storage", "tensor"};

enum { G_ODICT, G_REBUILD_V2, G_REBUILD, G_PARAM, G_PARAM_STATE, G_STORAGE };
static const struct {
    const char *module, *name;
    int id;
    gd_st_dtype dtype;
} allowed[] = {
    {"collections", "OrderedDict", G_ODICT, GD_ST_U8},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, GD_ST_U8},
    {"torch._utils", "_rebuild_tensor", G_REBUILD, GD_ST_U8},
    {"torch._utils", "_rebuild_parameter", G_PARAM, GD_ST_U8},
    {"torch._utils", "_rebuild_parameter_with_state", G_PARAM_STATE, GD_ST_U8},
    {"torch", "FloatStorage", G_STORAGE, GD_ST_F32},
    {"torch", "HalfStorage", G_STORAGE, GD_ST_F16},
    {"torch", "BFloat16Storage", G_STORAGE, GD_ST_BF16},
    {"torch", "DoubleStorage", G_STORAGE, GD_ST_F64},
    {"torch", "LongStorage", G_STORAGE, GD_ST_I64},
    {"torch", "IntStorage", G_STORAGE, GD_ST_I32},
    {"torch", "ByteStorage", G_STORAGE, GD_ST_U8},
};
#define N_ALLOWED (sizeof allowed / sizeof allowed[0])

typedef struct {
    uint8_t kind, aux; /* aux: index into allowed[] (V_GLOBAL) */
    uint32_t n, cap;   /* containers: items used / allocated (a dict holds key, value pairs) */
    union {
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t len;
        } s;
        uint32_t *items;
        uint32_t ref; /* V_STORAGE, V_TENSOR: index into the output arrays */
    } u;
} pv;

typedef struct {
    const uint8_t *start, *p, *end;
    size_t op_at;
    const char *label;
    char *err;
    size_t errlen;
    pv *vals;
    size_t nvals, capvals;
    uint32_t *stack;
    size_t sp, capstack;
    size_t marks[PT_MAX_MARKS];
    int nmarks;
    uint32_t *memo;
    size_t nmemo, capmemo, memo_set;
    size_t used, budget;
    size_t capstorages, captensors;
    pt_pickle *out;
} vm;

/* Copies s[0..len) for a message: printable ASCII, others as '?', long ones cut with "...". */
static const char *san(const char *s, size_t len, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (o + 4 >= cap) {
            memcpy(out + o, "...", 4);
            return out;
        }
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
    return out;
}

static int fail(vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(vm *m, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gd_errf(m->err, m->errlen, "%s: data.pkl: %s (opcode at byte %zu)", m->label, msg, m->op_at);
    return -1;
}

/* Grows *ptr (an array of *cap elements of elsize bytes) to hold need, within the budget. */
static int grow(vm *m, void **ptr, size_t *cap, size_t need, size_t elsize) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    size_t add = (nc - *cap) * elsize;
    if (add > m->budget - m->used) return fail(m, "needs more than %zu bytes of memory", m->budget);
    void *q = realloc(*ptr, nc * elsize);
    if (!q) return fail(m, "out of memory");
    *ptr = q;
    m->used += add;
    *cap = nc;
    return 0;
}

static int take(vm *m, size_t n, const uint8_t **q) {
    *q = m->p;
    if ((size_t)(m->end - m->p) < n) return fail(m, "truncated: needs %zu more bytes", n);
    *q = m->p;
    m->p += n;
    return 0;
}

static uint64_t le(const uint8_t *q, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | q[i];
    return v;
}

/* A new value of this kind (zeroed); its index in *idx. */
static int new_val(vm *m, uint8_t kind, uint32_t *idx) {
    *idx = 0;
    if (m->nvals >= UNSET - 1) return fail(m, "too many values");
    if (grow(m, (void **)&m->vals, &m->capvals, m->nvals + 1, sizeof *m->vals) != 0) return -1;
    memset(&m->vals[m->nvals], 0, sizeof *m->vals);
    m->vals[m->nvals].kind = kind;
    *idx = (uint32_t)m->nvals++;
    return 0;
}

static int push(vm *m, uint32_t v) {
    if (m->sp >= PT_MAX_STACK) return fail(m, "stack deeper than %zu values", PT_MAX_STACK);
    if (grow(m, (void **)&m->stack, &m->capstack, m->sp + 1, sizeof *m->stack) != 0) return -1;
    m->stack[m->sp++] = v;
    return 0;
}

static size_t fence(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int pop(vm *m, uint32_t *v) {
    *v = 0;
    if (m->sp <= fence(m)) return fail(m, "stack underflow");
    *v = m->stack[--m->sp];
    return 0;
}

static int top(vm *m, uint32_t *v) {
    *v = 0;
    if (m->sp <= fence(m)) return fail(m, "stack underflow");
    *v = m->stack[m->sp - 1];
    return 0;
}

/* Pops the innermost MARK: the items above it are stack[*from .. sp). */
static int pop_mark(vm *m, size_t *from) {
    *from = 0;
    if (m->nmarks == 0) return fail(m, "no MARK to pop to");
    *from = m->marks[--m->nmarks];
    return 0;
}

/* Appends items[0..n) to container c. */
static int cont_add(vm *m, uint32_t c, const uint32_t *items, size_t n) {
    if (n == 0) return 0;
    pv *v = &m->vals[c];
    if (n > PT_MAX_ITEMS - v->n) return fail(m, "a container with more than %u items", (unsigned)PT_MAX_ITEMS);
    size_t cap = v->cap;
    if (grow(m, (void **)&v->u.items, &cap, (size_t)v->n + n, sizeof *v->u.items) != 0) return -1;
    v->cap = (uint32_t)cap;
    memcpy(v->u.items + v->n, items, n * sizeof *items);
    v->n += (uint32_t)n;
    return 0;
}

/* A new container of this kind holding stack[from..sp), which are popped; pushes it. */
static int make_from_stack(vm *m, uint8_t kind, size_t from) {
    uint32_t c;
    const size_t n = m->sp - from;
    if (new_val(m, kind, &c) != 0 || (n && cont_add(m, c, m->stack + from, n) != 0)) return -1;
    m->sp = from;
    return push(m, c);
}

static int push_simple(vm *m, uint8_t kind, int64_t i) {
    uint32_t v;
    if (new_val(m, kind, &v) != 0) return -1;
    m->vals[v].u.i = i;
    return push(m, v);
}

/* ---- atoms ------------------------------------------------------------------------------- */

/* A string or bytes value whose length is the next nlen bytes (signed: BINSTRING). */
static int op_string(vm *m, uint8_t kind, int nlen, int is_signed) {
    const uint8_t *q;
    if (take(m, (size_t)nlen, &q) != 0) return -1;
    uint64_t len = le(q, nlen);
    if (is_signed && (len & 0x80000000u)) return fail(m, "negative string length");
    if (len > PT_MAX_STR) return fail(m, "string of %llu bytes is too long", (unsigned long long)len);
    if (take(m, (size_t)len, &q) != 0) return -1;
    uint32_t v;
    if (new_val(m, kind, &v) != 0) return -1;
    m->vals[v].u.s.p = (const char *)q;
    m->vals[v].u.s.len = (size_t)len;
    return push(m, v);
}

static int op_long1(vm *m) {
    const uint8_t *q;
    if (take(m, 1, &q) != 0) return -1;
    size_t n = q[0];
    if (take(m, n, &q) != 0) return -1;
    if (n > 8) return push_simple(m, V_BIGINT, 0); /* only usable as a skipped value */
    uint64_t u = le(q, (int)n);
    if (n > 0 && n < 8 && (q[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
    return push_simple(m, V_INT, (int64_t)u);
}

static int op_binfloat(vm *m) {
    const uint8_t *q;
    if (take(m, 8, &q) != 0) return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | q[i];
    double d;
    memcpy(&d, &u, sizeof d);
    uint32_t v;
    if (new_val(m, V_FLOAT, &v) != 0) return -1;
    m->vals[v].u.f = d;
    return push(m, v);
}

/* Looks module.name up in the allow-list and pushes it; anything else is refused. */
static int push_global(vm *m, const char *mod, size_t ml, const char *name, size_t nl) {
    for (size_t i = 0; i < N_ALLOWED; i++)
        if (strlen(allowed[i].module) == ml && !memcmp(allowed[i].module, mod, ml) &&
            strlen(allowed[i].name) == nl && !memcmp(allowed[i].name, name, nl)) {
            uint32_t v;
            if (new_val(m, V_GLOBAL, &v) != 0) return -1;
            m->vals[v].aux = (uint8_t)i;
            return push(m, v);
        }
    char a[80], b[80];
    return fail(m, "global '%s.%s' is not allowed", san(mod, ml, a, sizeof a), san(name, nl, b, sizeof b));
}

/* GLOBAL: "module\nname\n". */
static int op_global(vm *m) {
    const char *part[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        size_t avail = (size_t)(m->end - m->p);
        const uint8_t *nl = memchr(m->p, '\n', avail < PT_MAX_GLOBAL + 1 ? avail : PT_MAX_GLOBAL + 1);
        if (!nl) return fail(m, "GLOBAL name is unterminated or longer than %d bytes", PT_MAX_GLOBAL);
        part[k] = (const char *)m->p;
        len[k] = (size_t)(nl - m->p);
        m->p = nl + 1;
    }
    return push_global(m, part[0], len[0], part[1], len[1]);
}

static int op_stack_global(vm *m) {
    uint32_t n, mod;
    if (pop(m, &n) != 0 || pop(m, &mod) != 0) return -1;
    const pv *a = &m->vals[mod], *b = &m->vals[n];
    if (a->kind != V_STR || b->kind != V_STR) return fail(m, "STACK_GLOBAL of a non-string");
    if (a->u.s.len > PT_MAX_GLOBAL || b->u.s.len > PT_MAX_GLOBAL) return fail(m, "STACK_GLOBAL name is too long");
    return push_global(m, a->u.s.p, a->u.s.len, b->u.s.p, b->u.s.len);
}

/* ---- containers and the memo ------------------------------------------------------------- */

static int op_tuple_n(vm *m, size_t n) {
    if (m->sp - fence(m) < n) return fail(m, "stack underflow");
    return make_from_stack(m, V_TUPLE, m->sp - n);
}

static int op_from_mark(vm *m, uint8_t kind) {
    size_t from;
    if (pop_mark(m, &from) != 0) return -1;
    if (kind == V_DICT && (m->sp - from) % 2) return fail(m, "DICT with an odd number of items");
    return make_from_stack(m, kind, from);
}

/* APPEND(S), SETITEM(S): adds the items above the mark (or the top 1 or 2) to the container
 * under them. */
static int op_add(vm *m, int is_dict, int to_mark) {
    size_t from, need = is_dict ? 2 : 1;
    if (to_mark) {
        if (pop_mark(m, &from) != 0) return -1;
    } else {
        if (m->sp - fence(m) < need) return fail(m, "stack underflow");
        from = m->sp - need;
    }
    if (from <= fence(m)) return fail(m, "stack underflow");
    uint32_t c = m->stack[from - 1];
    uint8_t k = m->vals[c].kind;
    if (is_dict ? (k != V_DICT && k != V_ODICT) : k != V_LIST)
        return fail(m, "%s on an object of type %s", is_dict ? "SETITEM(S)" : "APPEND(S)", kind_names[k]);
    if (is_dict && (m->sp - from) % 2) return fail(m, "SETITEMS with an odd number of items");
    if (cont_add(m, c, m->stack + from, m->sp - from) != 0) return -1;
    m->sp = from;
    return 0;
}

static int memo_put(vm *m, uint64_t idx) {
    uint32_t v;
    if (top(m, &v) != 0) return -1;
    if (idx >= (uint64_t)(m->end - m->start)) return fail(m, "memo index %llu is out of range", (unsigned long long)idx);
    if (idx >= m->nmemo) {
        if (grow(m, (void **)&m->memo, &m->capmemo, (size_t)idx + 1, sizeof *m->memo) != 0) return -1;
        for (size_t i = m->nmemo; i <= idx; i++) m->memo[i] = UNSET;
        m->nmemo = (size_t)idx + 1;
    }
    if (m->memo[idx] == UNSET) m->memo_set++;
    m->memo[idx] = v;
    return 0;
}

static int memo_get(vm *m, uint64_t idx) {
    if (idx >= m->nmemo || m->memo[idx] == UNSET) return fail(m, "memo index %llu is not set", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static int op_memo(vm *m, int put, int nbytes) {
    const uint8_t *q;
    if (take(m, (size_t)nbytes, &q) != 0) return -1;
    uint64_t idx = le(q, nbytes);
    return put ? memo_put(m, idx) : memo_get(m, idx);
}

/* ---- persistent ids and calls ------------------------------------------------------------ */

static int get_int(vm *m, uint32_t v, int64_t *out, const char *what) {
    const pv *x = &m->vals[v];
    *out = 0;
    if (x->kind != V_INT && x->kind != V_BOOL) return fail(m, "%s is of type %s, not int", what, kind_names[x->kind]);
    *out = x->u.i;
    return 0;
}

/* BINPERSID: ('storage', torch.<T>Storage, key, location, numel). */
static int op_persid(vm *m) {
    uint32_t t;
    if (pop(m, &t) != 0) return -1;
    const pv *pid = &m->vals[t];
    if (pid->kind != V_TUPLE || pid->n != 5) return fail(m, "persistent id is not a 5-tuple ('storage', ...)");
    const uint32_t *it = pid->u.items;
    const pv *tag = &m->vals[it[0]], *type = &m->vals[it[1]], *key = &m->vals[it[2]], *loc = &m->vals[it[3]];
    if (tag->kind != V_STR || tag->u.s.len != 7 || memcmp(tag->u.s.p, "storage", 7) != 0)
        return fail(m, "persistent id is not a 'storage' record");
    if (type->kind != V_GLOBAL || allowed[type->aux].id != G_STORAGE)
        return fail(m, "persistent id's storage type is not a torch storage class");
    if (key->kind != V_STR || key->u.s.len == 0 || key->u.s.len > PT_MAX_KEY || memchr(key->u.s.p, 0, key->u.s.len))
        return fail(m, "persistent id's storage key is not a short string");
    if (loc->kind != V_STR) return fail(m, "persistent id's location is not a string");
    int64_t numel;
    if (get_int(m, it[4], &numel, "storage size") != 0) return -1;
    if (numel < 0 || (uint64_t)numel > PT_MAX_NUMEL)
        return fail(m, "storage size %lld is negative or over 2^40", (long long)numel);
    pt_pickle *o = m->out;
    if (o->nstorages >= PT_MAX_REFS) return fail(m, "more than %zu storage references", PT_MAX_REFS);
    if (grow(m, (void **)&o->storages, &m->capstorages, o->nstorages + 1, sizeof *o->storages) != 0) return -1;
    pt_storage_ref *s = &o->storages[o->nstorages];
    s->key = key->u.s.p;
    s->keylen = key->u.s.len;
    s->dtype = allowed[type->aux].dtype;
    s->numel = (uint64_t)numel;
    uint32_t v;
    if (new_val(m, V_STORAGE, &v) != 0) return -1;
    m->vals[v].u.ref = (uint32_t)o->nstorages++;
    return push(m, v);
}

/* Reads a tuple of ints (sizes or strides) into d; returns its length or -1. */
static int int_tuple(vm *m, uint32_t v, int64_t *d, const char *what) {
    const pv *x = &m->vals[v];
    if (x->kind != V_TUPLE) return fail(m, "tensor %s is of type %s, not tuple", what, kind_names[x->kind]);
    if (x->n > PT_MAX_DIMS) return fail(m, "tensor has %u dimensions (at most %d)", x->n, PT_MAX_DIMS);
    uint32_t n = x->n, items[PT_MAX_DIMS];
    if (n) memcpy(items, x->u.items, n * sizeof *items);
    for (uint32_t i = 0; i < n; i++) {
        if (get_int(m, items[i], &d[i], what) != 0) return -1;
        if (d[i] < 0) return fail(m, "tensor %s[%u] is negative (%lld)", what, i, (long long)d[i]);
    }
    return (int)n;
}

/* _rebuild_tensor(_v2)(storage, storage_offset, size, stride, ...): checks the view, records it. */
static int rebuild_tensor(vm *m, const uint32_t *a) {
    const pv *st = &m->vals[a[0]];
    if (st->kind != V_STORAGE) return fail(m, "tensor storage is of type %s, not storage", kind_names[st->kind]);
    pt_tensor_ref t;
    memset(&t, 0, sizeof t);
    t.storage = st->u.ref;
    const uint64_t snumel = m->out->storages[t.storage].numel;
    int64_t off;
    if (get_int(m, a[1], &off, "storage offset") != 0) return -1;
    if (off < 0 || (uint64_t)off > snumel)
        return fail(m, "storage offset %lld is outside the storage of %llu elements", (long long)off,
                    (unsigned long long)snumel);
    t.offset = (uint64_t)off;
    int nd = int_tuple(m, a[2], t.size, "size"), ns = int_tuple(m, a[3], t.stride, "stride");
    if (nd < 0 || ns < 0) return -1;
    if (nd != ns) return fail(m, "tensor size has %d dimensions but stride %d", nd, ns);
    t.ndim = nd;
    uint64_t numel = 1, last = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t d = (uint64_t)t.size[i], step;
        if (d != 0 && numel > PT_MAX_NUMEL / d) return fail(m, "tensor has more than 2^40 elements");
        numel *= d;
        if (d > 1 && (__builtin_mul_overflow(d - 1, (uint64_t)t.stride[i], &step) ||
                      __builtin_add_overflow(last, step, &last)))
            last = UINT64_MAX;
    }
    t.numel = numel;
    t.span = numel ? (last == UINT64_MAX ? UINT64_MAX : last + 1) : 0;
    if (numel && t.span > snumel - t.offset)
        return fail(m, "tensor view (offset %llu, size, stride) runs past its storage of %llu elements",
                    (unsigned long long)t.offset, (unsigned long long)snumel);
    pt_pickle *o = m->out;
    if (o->ntensors >= PT_MAX_REFS) return fail(m, "more than %zu tensors", PT_MAX_REFS);
    if (grow(m, (void **)&o->tensors, &m->captensors, o->ntensors + 1, sizeof *o->tensors) != 0) return -1;
    o->tensors[o->ntensors] = t;
    uint32_t v;
    if (new_val(m, V_TENSOR, &v) != 0) return -1;
    m->vals[v].u.ref = (uint32_t)o->ntensors++;
    return push(m, v);
}

static int op_reduce(vm *m) {
    uint32_t args, fn;
    if (pop(m, &args) != 0 || pop(m, &fn) != 0) return -1;
    const pv *f = &m->vals[fn], *a = &m->vals[args];
    if (f->kind != V_GLOBAL) return fail(m, "REDUCE calls an object of type %s", kind_names[f->kind]);
    if (a->kind != V_TUPLE) return fail(m, "REDUCE arguments are of type %s, not tuple", kind_names[a->kind]);
    const int id = allowed[f->aux].id;
    const uint32_t n = a->n;
    uint32_t it[7];
    if (n > 0 && n <= 7) memcpy(it, a->u.items, n * sizeof *it);
    switch (id) {
    case G_ODICT: {
        if (n != 0) return fail(m, "collections.OrderedDict called with arguments");
        uint32_t v;
        return new_val(m, V_ODICT, &v) != 0 ? -1 : push(m, v);
    }
    case G_REBUILD_V2:
    case G_REBUILD:
        if (id == G_REBUILD_V2 ? (n != 6 && n != 7) : n != 4)
            return fail(m, "torch._utils.%s called with %u arguments", allowed[f->aux].name, n);
        if (id == G_REBUILD_V2) {
            uint8_t hk = m->vals[it[5]].kind;
            if (hk != V_ODICT && hk != V_DICT && hk != V_NONE) return fail(m, "tensor backward hooks are of type %s", kind_names[hk]);
        }
        return rebuild_tensor(m, it);
    case G_PARAM:
    case G_PARAM_STATE:
        if (n != (id == G_PARAM ? 3u : 4u) || m->vals[it[0]].kind != V_TENSOR)
            return fail(m, "torch._utils.%s called with bad arguments", allowed[f->aux].name);
        return push(m, it[0]);
    default:
        return fail(m, "torch.%s cannot be called", allowed[f->aux].name);
    }
}

/* BUILD: only the _metadata state torch.save gives an OrderedDict (ignored). */
static int op_build(vm *m) {
    uint32_t state, target;
    if (pop(m, &state) != 0 || top(m, &target) != 0) return -1;
    if (m->vals[target].kind != V_ODICT) return fail(m, "BUILD on an object of type %s", kind_names[m->vals[target].kind]);
    return 0;
}

/* ---- the machine ------------------------------------------------------------------------- */

static const char *opcode_name(uint8_t op) {
    static const struct {
        uint8_t op;
        const char *name;
    } names[] = {
        {'0', "POP"},       {'1', "POP_MARK"},  {'2', "DUP"},         {'F', "FLOAT"},   {'I', "INT"},
        {'L', "LONG"},      {'P', "PERSID"},    {'S', "STRING"},      {'V', "UNICODE"}, {'g', "GET"},
        {'i', "INST"},      {'o', "OBJ"},       {'p', "PUT"},         {0x81, "NEWOBJ"}, {0x82, "EXT1"},
        {0x83, "EXT2"},     {0x84, "EXT4"},     {0x8b, "LONG4"},      {0x8d, "BINUNICODE8"},
        {0x8e, "BINBYTES8"}, {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"},
        {0x92, "NEWOBJ_EX"}, {0x96, "BYTEARRAY8"}, {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].op == op) return names[i].name;
    return "unknown";
}

/* Runs one opcode; 1 after STOP (the result in *result). */
static int step(vm *m, uint32_t *result) {
    m->op_at = (size_t)(m->p - m->start);
    const uint8_t op = *m->p++;
    const uint8_t *q;
    switch (op) {
    case 0x80: /* PROTO */
        if (take(m, 1, &q) != 0) return -1;
        return q[0] <= 5 ? 0 : fail(m, "unsupported pickle protocol %u", q[0]);
    case 0x95: return take(m, 8, &q); /* FRAME: its length is advisory */
    case '.': /* STOP */
        if (pop(m, result) != 0) return -1;
        return 1;
    case '(': /* MARK */
        if (m->nmarks >= PT_MAX_MARKS) return fail(m, "MARKs nested deeper than %d", PT_MAX_MARKS);
        m->marks[m->nmarks++] = m->sp;
        return 0;
    case 'N': return push_simple(m, V_NONE, 0);
    case 0x88: return push_simple(m, V_BOOL, 1); /* NEWTRUE */
    case 0x89: return push_simple(m, V_BOOL, 0); /* NEWFALSE */
    case 'J': /* BININT */
        if (take(m, 4, &q) != 0) return -1;
        return push_simple(m, V_INT, (int32_t)(uint32_t)le(q, 4));
    case 'K': /* BININT1 */
        if (take(m, 1, &q) != 0) return -1;
        return push_simple(m, V_INT, q[0]);
    case 'M': /* BININT2 */
        if (take(m, 2, &q) != 0) return -1;
        return push_simple(m, V_INT, (int64_t)le(q, 2));
    case 0x8a: return op_long1(m);
    case 'G': return op_binfloat(m);
    case 'X': return op_string(m, V_STR, 4, 0);    /* BINUNICODE */
    case 0x8c: return op_string(m, V_STR, 1, 0);   /* SHORT_BINUNICODE */
    case 'T': return op_string(m, V_STR, 4, 1);    /* BINSTRING */
    case 'U': return op_string(m, V_STR, 1, 0);    /* SHORT_BINSTRING */
    case 'B': return op_string(m, V_BYTES, 4, 0);  /* BINBYTES */
    case 'C': return op_string(m, V_BYTES, 1, 0);  /* SHORT_BINBYTES */
    case ')': return make_from_stack(m, V_TUPLE, m->sp); /* EMPTY_TUPLE */
    case ']': return make_from_stack(m, V_LIST, m->sp);  /* EMPTY_LIST */
    case '}': return make_from_stack(m, V_DICT, m->sp);  /* EMPTY_DICT */
    case 't': return op_from_mark(m, V_TUPLE);
    case 'l': return op_from_mark(m, V_LIST);
    case 'd': return op_from_mark(m, V_DICT);
    case 0x85: return op_tuple_n(m, 1);
    case 0x86: return op_tuple_n(m, 2);
    case 0x87: return op_tuple_n(m, 3);
    case 'a': return op_add(m, 0, 0); /* APPEND */
    case 'e': return op_add(m, 0, 1); /* APPENDS */
    case 's': return op_add(m, 1, 0); /* SETITEM */
    case 'u': return op_add(m, 1, 1); /* SETITEMS */
    case 'q': return op_memo(m, 1, 1); /* BINPUT */
    case 'r': return op_memo(m, 1, 4); /* LONG_BINPUT */
    case 0x94: return memo_put(m, m->memo_set); /* MEMOIZE */
    case 'h': return op_memo(m, 0, 1); /* BINGET */
    case 'j': return op_memo(m, 0, 4); /* LONG_BINGET */
    case 'c': return op_global(m);
    case 0x93: return op_stack_global(m);
    case 'Q': return op_persid(m);
    case 'R': return op_reduce(m);
    case 'b': return op_build(m);
    default: return fail(m, "opcode 0x%02x (%s) is not allowed", op, opcode_name(op));
    }
}

static int cmp_key(const void *a, const void *b) {
    const pt_entry *x = a, *y = b;
    if (x->namelen != y->namelen) return x->namelen < y->namelen ? -1 : 1;
    return memcmp(x->name, y->name, x->namelen);
}

/* The result must be a dict with string keys; its tensor entries become out->entries. */
static int collect(vm *m, uint32_t root) {
    const pv *r = &m->vals[root];
    if (r->kind != V_DICT && r->kind != V_ODICT)
        return fail(m, "the pickled object is of type %s, not a dict of tensors", kind_names[r->kind]);
    const size_t n = r->n / 2;
    pt_entry *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys || n * sizeof *keys > m->budget - m->used) {
        free(keys);
        return fail(m, "out of memory for %zu entries", n);
    }
    pt_pickle *o = m->out;
    size_t nkeys = 0, ntens = 0;
    for (size_t i = 0; i < n; i++) {
        const pv *k = &m->vals[r->u.items[2 * i]], *v = &m->vals[r->u.items[2 * i + 1]];
        if (k->kind == V_STR) keys[nkeys++] = (pt_entry){k->u.s.p, k->u.s.len, 0};
        if (v->kind == V_TENSOR) {
            if (k->kind != V_STR) {
                free(keys);
                return fail(m, "entry %zu holds a tensor under a key of type %s", i, kind_names[k->kind]);
            }
            ntens++;
        } else if (o->skipped++ == 0 && k->kind == V_STR) {
            o->first_skipped = k->u.s.p;
            o->first_skipped_len = k->u.s.len;
        }
    }
    qsort(keys, nkeys, sizeof *keys, cmp_key);
    for (size_t i = 1; i < nkeys; i++)
        if (cmp_key(&keys[i - 1], &keys[i]) == 0) {
            char b[80];
            fail(m, "duplicate key '%s'", san(keys[i].name, keys[i].namelen, b, sizeof b));
            free(keys);
            return -1;
        }
    free(keys);
    o->entries = malloc((ntens ? ntens : 1) * sizeof *o->entries);
    if (!o->entries) return fail(m, "out of memory");
    m->used += ntens * sizeof *o->entries;
    for (size_t i = 0; i < n; i++) {
        const pv *k = &m->vals[r->u.items[2 * i]], *v = &m->vals[r->u.items[2 * i + 1]];
        if (v->kind == V_TENSOR) o->entries[o->nentries++] = (pt_entry){k->u.s.p, k->u.s.len, v->u.ref};
    }
    return 0;
}

int pt_unpickle(const uint8_t *pkl, size_t len, size_t budget, pt_pickle *out, const char *label, char *err,
                size_t errlen) {
    memset(out, 0, sizeof *out);
    vm *m = calloc(1, sizeof *m);
    if (!m) {
        gd_errf(err, errlen, "%s: data.pkl: out of memory", label);
        return -1;
    }
    m->start = m->p = pkl;
    m->end = pkl + len;
    m->label = label;
    m->err = err;
    m->errlen = errlen;
    m->budget = budget;
    m->out = out;
    int rc = 0;
    uint32_t result = UNSET;
    while (rc == 0) {
        if (m->p >= m->end) {
            m->op_at = len;
            rc = fail(m, "ends without STOP");
            break;
        }
        rc = step(m, &result);
    }
    if (rc == 1) rc = collect(m, result);
    out->used = m->used;
    for (size_t i = 0; i < m->nvals; i++)
        if (m->vals[i].kind >= V_TUPLE && m->vals[i].kind <= V_ODICT) free(m->vals[i].u.items);
    free(m->vals);
    free(m->stack);
    free(m->memo);
    free(m);
    return rc == 0 ? 0 : -1;
}

void pt_pickle_free(pt_pickle *p) {
    free(p->storages);
    free(p->tensors);
    free(p->entries);
    memset(p, 0, sizeof *p);
}
