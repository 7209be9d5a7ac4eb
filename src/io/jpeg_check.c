/* JPEG check for dataset images: everything stb_image 2.27 would trip over on a hostile file is
 * refused before it decodes (see io/image_decode.h), and stb gets a copy rebuilt from the checked
 * segments only, so that it cannot parse anything this file did not.
 *  - Markers: SOI; then segments whose lengths fit in the file; fill bytes before markers are
 *    skipped. Accepted: SOF0/SOF1/SOF2 (Huffman baseline, extended, progressive; 8-bit), DHT,
 *    DQT, DRI, SOS, APP0 and APP14 (kept: stb reads JFIF and Adobe's colour transform from
 *    them), other APPn and COM (dropped), EOI (required: a file without it is truncated; bytes
 *    after it are ignored). Everything else (arithmetic, lossless, hierarchical, DNL, stray
 *    RSTn, reserved markers) is refused.
 *  - Tables: DHT classes 0/1, ids 0..3, at most 256 codes forming a prefix code without the
 *    all-ones code (libjpeg's rule), DC symbols <= 15; DQT precision 0/1, ids 0..3, exact
 *    lengths. A scan may only use tables defined before it (stb does not zero its tables, so
 *    an undefined one is garbage).
 *  - Frame: 1, 3 or 4 components with distinct ids, sampling 1..4 dividing the maximum, size
 *    >= 1 (a height of 0 needs DNL).
 *  - Scans: components of the frame, each once; baseline Ss = 0, Ah = Al = 0 (Se is taken as 63);
 *    progressive Ss <= Se <= 63, Ah, Al <= 13, DC scans (Ss = 0) with Se = 0, AC scans of one
 *    component. The entropy-coded data is then decoded exactly as stb will (block order,
 *    restart intervals, EOB runs, the refinement bits that depend on which coefficients are
 *    nonzero so far): every Huffman code must exist, no scan may run out of data (stb would
 *    shift by negative bit counts), a restart interval must end at an RSTn marker, and DC
 *    values must stay within a short (stb multiplies them by the quantiser in int). Bytes past
 *    the last code of an interval are dropped from the copy.
 *  - Coverage: every component must appear in a scan (progressive: a first DC scan), since stb
 *    would otherwise output its uninitialised buffers. */
#define _POSIX_C_SOURCE 200809L
#include "io/image_decode.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int defined;
    uint8_t vals[256];
    int32_t maxcode[17], mincode[17], valptr[17]; /* by code length; maxcode -1: no codes */
} jhuff;

typedef struct {
    int id, hs, vs, tq, td, ta;
    int bw, bh;   /* the component's own blocks (non-interleaved scans) */
    int cw, ch;   /* its MCU-padded block grid (interleaved scans, coefficient storage) */
    int32_t pred; /* DC prediction */
    int scanned;  /* baseline: in a scan; progressive: in a first DC scan */
    uint64_t *nz; /* progressive: the nonzero coefficients of each block, by natural index */
} jcomp;

typedef struct {
    const char *name;
    char *err;
    size_t errlen;
    const uint8_t *d;
    size_t n;
    int sof, progressive, w, h, ncomp, hmax, vmax, mcux, mcuy, restart, nscans;
    jcomp comp[4];
    jhuff dc[4], ac[4];
    int qdef[4];
    int ns, order[4], ss, se, ah, al; /* the current scan */
    uint32_t eobrun;
    uint8_t *out;
    size_t olen, ocap;
} jstate;

typedef struct {
    const uint8_t *p, *end; /* entropy-coded bytes of the scan */
    uint32_t acc;
    int nbits;
} jbits;

#define JFAIL(s, ...) gd_image_fail((s)->name, "JPEG", (s)->err, (s)->errlen, __VA_ARGS__)

/* stb's zigzag -> natural order, with its padding for runs past 63. */
static const uint8_t DEZIGZAG[64 + 15] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13,
    6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
    39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

static int emit(jstate *s, const uint8_t *p, size_t len) {
    if (!s->out) return 0; /* probing */
    if (len > s->ocap - s->olen) return JFAIL(s, "internal error: rebuilt file too large");
    memcpy(s->out + s->olen, p, len);
    s->olen += len;
    return 0;
}

/* ---- tables and headers ------------------------------------------------------------------- */

static int parse_dht(jstate *s, const uint8_t *p, size_t len) {
    while (len > 0) {
        if (len < 17) return JFAIL(s, "DHT segment ends inside a table header");
        int tc = p[0] >> 4, th = p[0] & 15, total = 0;
        if (tc > 1 || th > 3) return JFAIL(s, "DHT table class %d / id %d", tc, th);
        for (int l = 1; l <= 16; l++)
            total += p[l];
        if (total > 256) return JFAIL(s, "Huffman table with %d codes (at most 256)", total);
        if ((size_t)total > len - 17) return JFAIL(s, "DHT segment ends inside a table");
        jhuff *t = tc ? &s->ac[th] : &s->dc[th];
        int32_t code = 0, k = 0;
        for (int l = 1; l <= 16; l++) {
            int cnt = p[l];
            t->valptr[l] = k, t->mincode[l] = code, t->maxcode[l] = cnt ? code + cnt - 1 : -1;
            code += cnt, k += cnt;
            /* libjpeg: the codes of each length must fit and not use the all-ones code */
            if (k < total || cnt) {
                if (code >= ((int32_t)1 << l)) return JFAIL(s, "Huffman table with impossible code lengths");
            }
            code <<= 1;
        }
        memcpy(t->vals, p + 17, (size_t)total);
        for (int i = 0; tc == 0 && i < total; i++)
            if (t->vals[i] > 15) return JFAIL(s, "DC Huffman symbol %d (at most 15)", t->vals[i]);
        t->defined = 1;
        p += 17 + total, len -= 17 + (size_t)total;
    }
    return 0;
}

static int parse_dqt(jstate *s, const uint8_t *p, size_t len) {
    while (len > 0) {
        int pq = p[0] >> 4, tq = p[0] & 15;
        size_t need = 1 + 64 * (size_t)(pq + 1);
        if (pq > 1 || tq > 3) return JFAIL(s, "DQT precision %d / id %d", pq, tq);
        if (len < need) return JFAIL(s, "DQT segment ends inside a table");
        s->qdef[tq] = 1;
        p += need, len -= need;
    }
    return 0;
}

static int parse_sof(jstate *s, int m, const uint8_t *p, size_t len) {
    if (s->sof) return JFAIL(s, "a second frame header");
    if (len < 6 || p[0] != 8)
        return JFAIL(s, "frame header of %zu bytes / precision %d (only 8-bit)", len, len ? p[0] : 0);
    s->h = (int)be16(p + 1), s->w = (int)be16(p + 3), s->ncomp = p[5];
    if (s->ncomp != 1 && s->ncomp != 3 && s->ncomp != 4) return JFAIL(s, "%d components (1, 3 or 4)", s->ncomp);
    if (len != 6 + 3 * (size_t)s->ncomp) return JFAIL(s, "frame header of %zu bytes for %d components", len, s->ncomp);
    if (s->w == 0 || s->h == 0) return JFAIL(s, "frame size %dx%d (a height of 0 needs DNL, unsupported)", s->w, s->h);
    s->hmax = s->vmax = 1;
    for (int i = 0; i < s->ncomp; i++) {
        jcomp *c = &s->comp[i];
        c->id = p[6 + 3 * i], c->hs = p[7 + 3 * i] >> 4, c->vs = p[7 + 3 * i] & 15, c->tq = p[8 + 3 * i];
        if (c->hs < 1 || c->hs > 4 || c->vs < 1 || c->vs > 4 || c->tq > 3)
            return JFAIL(s, "component %d: sampling %dx%d / quantiser %d", i, c->hs, c->vs, c->tq);
        for (int j = 0; j < i; j++)
            if (s->comp[j].id == c->id) return JFAIL(s, "two components with id %d", c->id);
        s->hmax = c->hs > s->hmax ? c->hs : s->hmax;
        s->vmax = c->vs > s->vmax ? c->vs : s->vmax;
    }
    s->mcux = (s->w + 8 * s->hmax - 1) / (8 * s->hmax), s->mcuy = (s->h + 8 * s->vmax - 1) / (8 * s->vmax);
    for (int i = 0; i < s->ncomp; i++) {
        jcomp *c = &s->comp[i];
        if (s->hmax % c->hs || s->vmax % c->vs) return JFAIL(s, "sampling factors that do not divide the maximum");
        c->bw = ((s->w * c->hs + s->hmax - 1) / s->hmax + 7) >> 3;
        c->bh = ((s->h * c->vs + s->vmax - 1) / s->vmax + 7) >> 3;
        c->cw = s->mcux * c->hs, c->ch = s->mcuy * c->vs;
    }
    s->sof = m;
    s->progressive = m == 0xC2;
    return 0;
}

static int parse_sos(jstate *s, const uint8_t *p, size_t len) {
    if (!s->sof) return JFAIL(s, "a scan before the frame header");
    s->ns = len ? p[0] : 0;
    if (s->ns < 1 || s->ns > s->ncomp || len != 4 + 2 * (size_t)s->ns)
        return JFAIL(s, "scan header of %zu bytes for %d components", len, s->ns);
    for (int i = 0; i < s->ns; i++) {
        int id = p[1 + 2 * i], k = 0;
        while (k < s->ncomp && s->comp[k].id != id)
            k++;
        if (k == s->ncomp) return JFAIL(s, "scan of component id %d, which the frame does not have", id);
        for (int j = 0; j < i; j++)
            if (s->order[j] == k) return JFAIL(s, "component id %d twice in a scan", id);
        s->order[i] = k;
        s->comp[k].td = p[2 + 2 * i] >> 4, s->comp[k].ta = p[2 + 2 * i] & 15;
        if (s->comp[k].td > 3 || s->comp[k].ta > 3) return JFAIL(s, "scan uses Huffman table ids over 3");
    }
    const uint8_t *q = p + 1 + 2 * s->ns;
    s->ss = q[0], s->se = q[1], s->ah = q[2] >> 4, s->al = q[2] & 15;
    if (!s->progressive && (s->ss != 0 || s->ah || s->al)) /* Se: stb, like libjpeg, takes 63 whatever it says */
        return JFAIL(s, "sequential scan with spectral start %d / approximation %d, %d", s->ss, s->ah, s->al);
    if (s->progressive && (s->ss > s->se || s->se > 63 || s->ah > 13 || s->al > 13 || (s->ss == 0 && s->se != 0) ||
                           (s->ss > 0 && s->ns != 1)))
        return JFAIL(s, "progressive scan with spectral selection %d..%d / approximation %d, %d of %d components",
                     s->ss, s->se, s->ah, s->al, s->ns);
    for (int i = 0; i < s->ns; i++) {
        const jcomp *c = &s->comp[s->order[i]];
        int need_dc = !s->progressive || (s->ss == 0 && s->ah == 0), need_ac = !s->progressive || s->ss > 0;
        if ((need_dc && !s->dc[c->td].defined) || (need_ac && !s->ac[c->ta].defined))
            return JFAIL(s, "scan uses a Huffman table that is not defined");
        if (!s->qdef[c->tq]) return JFAIL(s, "component id %d uses quantisation table %d, not defined", c->id, c->tq);
    }
    return 0;
}

/* ---- entropy-coded data ------------------------------------------------------------------- */

/* The next data byte, or -1 at a marker or the end (where stb would only feed zeros). */
static int jb_byte(jbits *b) {
    if (b->p >= b->end) return -1;
    if (b->p[0] != 0xFF) return *b->p++;
    const uint8_t *q = b->p + 1;
    while (q < b->end && *q == 0xFF)
        q++;
    if (q < b->end && *q == 0x00) {
        b->p = q + 1;
        return 0xFF;
    }
    return -1;
}

static int jb_bits(jbits *b, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (b->nbits == 0) {
            int c = jb_byte(b);
            if (c < 0) return -1;
            b->acc = (uint32_t)c, b->nbits = 8;
        }
        v = v << 1 | (int)((b->acc >> --b->nbits) & 1);
    }
    return v;
}

/* A Huffman symbol; -1: no such code, -2: out of data. */
static int jb_huff(jbits *b, const jhuff *t) {
    int32_t code = 0;
    for (int l = 1; l <= 16; l++) {
        int bit = jb_bits(b, 1);
        if (bit < 0) return -2;
        code = code << 1 | bit;
        if (code <= t->maxcode[l] && code >= t->mincode[l]) return t->vals[t->valptr[l] + code - t->mincode[l]];
    }
    return -1;
}

/* A magnitude of n bits with its sign (JPEG's EXTEND); INT_MIN when out of data. */
static int jb_extend(jbits *b, int n) {
    int v = jb_bits(b, n);
    if (v < 0) return INT_MIN;
    return v < (1 << (n - 1)) ? v - (1 << n) + 1 : v;
}

static int bad_data(jstate *s, int code) {
    return JFAIL(s, code == -2 ? "truncated: a scan's entropy-coded data ends early" : "corrupt entropy-coded data");
}

static int dc_first(jstate *s, jbits *b, jcomp *c) {
    int t = jb_huff(b, &s->dc[c->td]);
    if (t < 0) return bad_data(s, t);
    int diff = t ? jb_extend(b, t) : 0;
    if (diff == INT_MIN) return bad_data(s, -2);
    int32_t dc = c->pred + diff;
    if (dc < -32767 || dc > 32767) return JFAIL(s, "DC coefficient %d out of range", (int)dc);
    c->pred = dc;
    return 0;
}

/* A baseline block (DC and AC). */
static int block_seq(jstate *s, jbits *b, jcomp *c) {
    if (dc_first(s, b, c) != 0) return -1;
    int k = 1;
    do {
        int rs = jb_huff(b, &s->ac[c->ta]);
        if (rs < 0) return bad_data(s, rs);
        int sz = rs & 15, r = rs >> 4;
        if (sz == 0) {
            if (rs != 0xF0) break;
            k += 16;
        } else {
            k += r;
            if (jb_extend(b, sz) == INT_MIN) return bad_data(s, -2);
            k++;
        }
    } while (k < 64);
    return 0;
}

/* A progressive block; nz: the block's nonzero-coefficient set. */
static int block_prog(jstate *s, jbits *b, jcomp *c, uint64_t *nz) {
    if (s->ss == 0) { /* DC: a first scan clears the block, a refinement reads one bit */
        if (s->ah) return jb_bits(b, 1) < 0 ? bad_data(s, -2) : 0;
        *nz = 0;
        return dc_first(s, b, c);
    }
    if (s->ah == 0) { /* first AC scan */
        if (s->eobrun) return s->eobrun--, 0;
        for (int k = s->ss; k <= s->se;) {
            int rs = jb_huff(b, &s->ac[c->ta]);
            if (rs < 0) return bad_data(s, rs);
            int sz = rs & 15, r = rs >> 4;
            if (sz == 0) {
                if (r < 15) {
                    int extra = r ? jb_bits(b, r) : 0;
                    if (extra < 0) return bad_data(s, -2);
                    s->eobrun = ((uint32_t)1 << r) + (uint32_t)extra - 1;
                    break;
                }
                k += 16;
            } else {
                k += r;
                int v = jb_extend(b, sz);
                if (v == INT_MIN) return bad_data(s, -2);
                /* stb stores (short)(v << Al): zero when the low 16 bits are */
                if (((uint32_t)v << s->al) & 0xFFFFu)
                    *nz |= (uint64_t)1 << DEZIGZAG[k];
                else
                    *nz &= ~((uint64_t)1 << DEZIGZAG[k]);
                k++;
            }
        }
        return 0;
    }
    /* AC refinement: a correction bit for each nonzero coefficient passed */
    int k = s->ss;
    if (s->eobrun) {
        s->eobrun--;
        for (; k <= s->se; k++)
            if ((*nz >> DEZIGZAG[k] & 1) && jb_bits(b, 1) < 0) return bad_data(s, -2);
        return 0;
    }
    do {
        int rs = jb_huff(b, &s->ac[c->ta]);
        if (rs < 0) return bad_data(s, rs);
        int sz = rs & 15, r = rs >> 4;
        if (sz == 0) {
            if (r < 15) {
                int extra = r ? jb_bits(b, r) : 0;
                if (extra < 0) return bad_data(s, -2);
                s->eobrun = ((uint32_t)1 << r) - 1 + (uint32_t)extra;
                r = 64;
            }
        } else {
            if (sz != 1) return bad_data(s, -1);
            if (jb_bits(b, 1) < 0) return bad_data(s, -2);
        }
        while (k <= s->se) {
            int z = DEZIGZAG[k++];
            if (*nz >> z & 1) {
                if (jb_bits(b, 1) < 0) return bad_data(s, -2);
            } else {
                if (r == 0) {
                    if (sz) *nz |= (uint64_t)1 << z;
                    break;
                }
                --r;
            }
        }
    } while (k <= s->se);
    return 0;
}

static int one_block(jstate *s, jbits *b, jcomp *c, int bx, int by) {
    if (!s->progressive) return block_seq(s, b, c);
    return block_prog(s, b, c, &c->nz[(size_t)by * (size_t)c->cw + (size_t)bx]);
}

static void scan_reset(jstate *s, jbits *b) {
    for (int i = 0; i < s->ncomp; i++)
        s->comp[i].pred = 0;
    s->eobrun = 0;
    b->nbits = 0;
}

/* Decodes one scan from b->p and rebuilds it into the copy: each restart interval's bytes up to
 * its last code, then an RSTn. */
static int decode_scan(jstate *s, jbits *b) {
    int64_t units =
        s->ns == 1 ? (int64_t)s->comp[s->order[0]].bw * s->comp[s->order[0]].bh : (int64_t)s->mcux * s->mcuy;
    int64_t todo = s->restart ? s->restart : INT64_MAX;
    const uint8_t *start = b->p;
    int rst = 0;
    scan_reset(s, b);
    for (int64_t u = 0; u < units; u++) {
        if (s->ns == 1) {
            jcomp *c = &s->comp[s->order[0]];
            if (one_block(s, b, c, (int)(u % c->bw), (int)(u / c->bw)) != 0) return -1;
        } else {
            int mx = (int)(u % s->mcux), my = (int)(u / s->mcux);
            for (int k = 0; k < s->ns; k++) {
                jcomp *c = &s->comp[s->order[k]];
                for (int y = 0; y < c->vs; y++)
                    for (int x = 0; x < c->hs; x++)
                        if (one_block(s, b, c, mx * c->hs + x, my * c->vs + y) != 0) return -1;
            }
        }
        if (--todo > 0 || u + 1 == units) continue;
        /* the interval ends here: only the rest of this byte, then RSTn */
        const uint8_t *q = b->p;
        while (q < b->end && *q == 0xFF)
            q++;
        if (q == b->p || q >= b->end || *q < 0xD0 || *q > 0xD7)
            return JFAIL(s, "restart interval %d does not end at a restart marker", rst);
        uint8_t mk[2] = {0xFF, (uint8_t)(0xD0 + (rst++ & 7))};
        if (emit(s, start, (size_t)(b->p - start)) != 0 || emit(s, mk, 2) != 0) return -1;
        b->p = start = q + 1;
        todo = s->restart;
        scan_reset(s, b);
    }
    for (int i = 0; i < s->ns; i++)
        s->comp[s->order[i]].scanned |= !s->progressive || (s->ss == 0 && s->ah == 0);
    return emit(s, start, (size_t)(b->p - start));
}

/* Where the entropy-coded data from pos ends: at the first marker other than RSTn. */
static size_t entropy_end(const uint8_t *d, size_t n, size_t pos) {
    while (pos < n) {
        if (d[pos] != 0xFF) {
            pos++;
            continue;
        }
        size_t q = pos + 1;
        while (q < n && d[q] == 0xFF)
            q++;
        if (q < n && (d[q] == 0x00 || (d[q] >= 0xD0 && d[q] <= 0xD7))) {
            pos = q + 1;
            continue;
        }
        return pos;
    }
    return n;
}

static int scan(jstate *s, const uint8_t *seg, size_t sl, size_t *pos) {
    if (parse_sos(s, seg, sl) != 0) return -1;
    if (s->progressive)
        for (int i = 0; i < s->ns; i++) {
            jcomp *c = &s->comp[s->order[i]];
            if (!c->nz && !(c->nz = calloc((size_t)c->cw * (size_t)c->ch, sizeof *c->nz)))
                return JFAIL(s, "out of memory");
        }
    if (emit(s, seg - 4, sl + 4) != 0) return -1;
    size_t start = *pos + 4 + sl, end = entropy_end(s->d, s->n, start);
    jbits b = {s->d + start, s->d + end, 0, 0};
    if (decode_scan(s, &b) != 0) return -1;
    s->nscans++;
    *pos = end;
    return 0;
}

/* ---- the marker walk ---------------------------------------------------------------------- */

/* probe: stop at the frame header. Returns 0 at EOI (or the frame header), -1 with err. */
static int walk(jstate *s, int probe) {
    const uint8_t *d = s->d;
    size_t n = s->n, pos = 2;
    static const uint8_t soi[2] = {0xFF, 0xD8}, eoi[2] = {0xFF, 0xD9};
    if (emit(s, soi, 2) != 0) return -1;
    for (;;) {
        if (pos >= n) return JFAIL(s, "truncated: the file ends before the EOI marker");
        if (d[pos] != 0xFF) return JFAIL(s, "expected a marker at offset %zu, found 0x%02x", pos, d[pos]);
        while (pos < n && d[pos] == 0xFF)
            pos++;
        if (pos >= n) return JFAIL(s, "truncated: the file ends before the EOI marker");
        int m = d[pos];
        pos--; /* at the FF before the marker */
        if (m == 0xD9) {
            if (probe || s->nscans == 0)
                return JFAIL(s, "no %s before the EOI marker", probe ? "frame header" : "scan");
            for (int i = 0; i < s->ncomp; i++)
                if (!s->comp[i].scanned) return JFAIL(s, "component id %d has no scan", s->comp[i].id);
            return emit(s, eoi, 2);
        }
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8))
            return JFAIL(s, "unexpected marker 0x%02X at offset %zu", m, pos);
        if (n - pos < 4) return JFAIL(s, "truncated: the file ends inside a segment header");
        size_t sl = be16(d + pos + 2);
        if (sl < 2 || sl - 2 > n - pos - 4)
            return JFAIL(s, "truncated: segment 0xFF%02X at offset %zu of %zu bytes runs past the end", m, pos, sl);
        const uint8_t *seg = d + pos + 4;
        sl -= 2;
        int rc = 0, keep = 1;
        if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            rc = parse_sof(s, m, seg, sl);
            if (rc == 0 && probe) return 0;
        } else if (m >= 0xC3 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            return JFAIL(s, "SOF%d (lossless, hierarchical or arithmetic coding) is not supported", m - 0xC0);
        } else if (m == 0xC4) {
            rc = parse_dht(s, seg, sl);
        } else if (m == 0xDB) {
            rc = parse_dqt(s, seg, sl);
        } else if (m == 0xDD) {
            if (sl != 2) return JFAIL(s, "DRI segment of %zu bytes", sl);
            s->restart = (int)be16(seg);
        } else if (m == 0xDA) {
            if (probe) return JFAIL(s, "a scan before the frame header");
            if (scan(s, seg, sl, &pos) != 0) return -1;
            continue;
        } else if ((m >= 0xE0 && m <= 0xEF) || m == 0xFE) {
            keep = m == 0xE0 || m == 0xEE;
        } else {
            return JFAIL(s, "marker 0x%02X at offset %zu is not supported", m, pos);
        }
        if (rc != 0) return -1;
        if (keep && emit(s, d + pos, sl + 4) != 0) return -1;
        pos += sl + 4;
    }
}

static void jstate_free(jstate *s) {
    for (int i = 0; i < 4; i++)
        free(s->comp[i].nz);
}

int gd_jpeg_probe(const char *name, const uint8_t *d, size_t n, int *w, int *h, char *err, size_t errlen) {
    jstate *s = calloc(1, sizeof *s);
    if (!s) return gd_image_fail(name, "JPEG", err, errlen, "out of memory");
    *s = (jstate){.name = name, .err = err, .errlen = errlen, .d = d, .n = n};
    int rc = walk(s, 1);
    *w = s->w, *h = s->h;
    jstate_free(s);
    free(s);
    return rc;
}

uint8_t *gd_jpeg_check(const char *name, const uint8_t *d, size_t n, int w, int h, size_t *out_len, char *err,
                       size_t errlen) {
    jstate *s = calloc(1, sizeof *s);
    uint8_t *out = malloc(n + 16);
    if (!s || !out) {
        free(s);
        free(out);
        gd_image_fail(name, "JPEG", err, errlen, "out of memory");
        return NULL;
    }
    *s = (jstate){.name = name, .err = err, .errlen = errlen, .d = d, .n = n, .out = out, .ocap = n + 16};
    int rc = (int64_t)w * h > GD_IMAGE_MAX_PIXELS ? JFAIL(s, "%dx%d pixels is too large", w, h) : walk(s, 0);
    if (rc == 0 && (s->w != w || s->h != h)) rc = JFAIL(s, "size %dx%d is not the %dx%d expected", s->w, s->h, w, h);
    *out_len = s->olen;
    jstate_free(s);
    free(s);
    if (rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}
