/* The planner's allocator against a brute-force model of its buffer, and networks sharing one
 * activation arena (include/gd_alloc.h): bit-identical to private ones in interleaved use, with
 * the arena sized to the largest need, not the sum. */
#include "gd_alloc.h"
#include "gd_model.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 33) % n;
}

/* One random sequence of alloc/free events. After every event: no two live blocks overlap, all
 * lie below top, and the free list is exactly the complement of the live blocks below top
 * (sorted, coalesced), checked on a byte map. Replaying the events gives the same offsets. */
static int alloc_sequence(int n_events, int max_size, int align) {
    enum { MAXLIVE = 256 };
    gd_allocator a;
    if (gd_allocator_init(&a, n_events)) return 1;
    size_t *offs = malloc(sizeof(size_t) * (size_t)n_events), *sizes = malloc(sizeof(size_t) * (size_t)n_events);
    int *live = malloc(sizeof(int) * MAXLIVE), nlive = 0, nalloc = 0, bad = 0;
    size_t top_seen = 0;
    uint64_t seed = rng_state;
    for (int e = 0; e < n_events && !bad; e++) {
        if (nlive && (nlive == MAXLIVE || rnd(100) < 45)) { /* free a random live block */
            int j = (int)rnd((uint32_t)nlive), id = live[j];
            gd_allocator_free(&a, offs[id], sizes[id]);
            live[j] = live[--nlive];
        } else {
            size_t sz = (size_t)(1 + rnd((uint32_t)max_size));
            if (align) sz = gd_align_up(sz);
            sizes[nalloc] = sz;
            offs[nalloc] = gd_allocator_alloc(&a, sz);
            live[nlive++] = nalloc++;
        }
        bad |= a.top < top_seen; /* the buffer never shrinks */
        top_seen = a.top;
        unsigned char *map = calloc(a.top + 1, 1);
        for (int j = 0; j < nlive && !bad; j++) {
            int id = live[j];
            bad |= offs[id] + sizes[id] > a.top;
            if (align) bad |= offs[id] % GD_ALLOC_ALIGN != 0;
            for (size_t b = offs[id]; b < offs[id] + sizes[id] && !bad; b++) bad |= map[b]++ != 0; /* overlap */
        }
        size_t prev_end = 0;
        for (int f = 0; f < a.nfree && !bad; f++) {
            const gd_alloc_block *fb = &a.free[f];
            bad |= fb->size == 0 || fb->offs + fb->size > a.top || (f > 0 && fb->offs <= prev_end);
            for (size_t b = fb->offs; b < fb->offs + fb->size && !bad; b++) bad |= map[b]++ != 0;
            prev_end = fb->offs + fb->size;
        }
        for (size_t b = 0; b < a.top && !bad; b++) bad |= map[b] != 1; /* live + free tile [0, top) */
        free(map);
        if (bad) fprintf(stderr, "    allocator invariant broken at event %d\n", e);
    }
    if (!bad) { /* determinism: the same events again */
        rng_state = seed;
        gd_allocator b;
        gd_allocator_init(&b, n_events);
        int nl = 0, k = 0;
        for (int e = 0; e < n_events && !bad; e++) {
            if (nl && (nl == MAXLIVE || rnd(100) < 45)) {
                int j = (int)rnd((uint32_t)nl), id = live[j];
                gd_allocator_free(&b, offs[id], sizes[id]);
                live[j] = live[--nl];
            } else {
                size_t sz = (size_t)(1 + rnd((uint32_t)max_size));
                if (align) sz = gd_align_up(sz);
                bad |= sz != sizes[k] || gd_allocator_alloc(&b, sz) != offs[k];
                live[nl++] = k++;
            }
        }
        bad |= b.top != a.top;
        gd_allocator_release(&b);
    }
    gd_allocator_release(&a);
    free(offs), free(sizes), free(live);
    return bad;
}

static void test_allocator_random(void) {
    int bad = 0;
    for (int s = 0; s < 150 && !bad; s++) bad |= alloc_sequence(50 + (int)rnd(400), s % 2 ? 16 : 300, s % 3 == 0);
    CHECK(!bad, "random alloc/free sequences keep blocks disjoint and the free list exact");
    /* reuse: what is freed is handed out again before the buffer grows */
    gd_allocator a;
    gd_allocator_init(&a, 8);
    size_t x = gd_allocator_alloc(&a, 128), y = gd_allocator_alloc(&a, 64);
    gd_allocator_free(&a, x, 128);
    size_t z = gd_allocator_alloc(&a, 64), w = gd_allocator_alloc(&a, 64);
    CHECK(z == 0 && w == 64 && y == 128 && a.top == 192, "best fit reuses freed space (%zu %zu %zu, top %zu)", z, w, y, a.top);
    gd_allocator_free(&a, z, 64), gd_allocator_free(&a, w, 64), gd_allocator_free(&a, y, 64);
    CHECK(a.nfree == 1 && a.free[0].offs == 0 && a.free[0].size == 192, "freed neighbours coalesce");
    CHECK(gd_allocator_alloc(&a, 256) == 0 && a.top == 256, "growth absorbs the free block at the top");
    gd_allocator_release(&a);
}

/* ---- networks sharing one arena ---- */

enum { NNETS = 3, BATCH = 2 };
static const char *const net_models[NNETS] = {"unet_a", "cls_a", "conv_cls"}; /* conv_cls: F16 weights */

static int64_t n_in(gd_model *m) {
    const gd_config *c = gd_model_config(m);
    return (int64_t)BATCH * c->in_channels * c->image_size * c->image_size;
}

/* Inputs of round r, the same for every copy of a network. */
static void fill_inputs(gd_net *n, gd_model *m, int r, int which) {
    int64_t nx = n_in(m);
    for (int64_t i = 0; i < nx; i++) gd_net_x(n)[i] = (float)((i * 37 + r * 11 + which * 5) % 101) / 50.0f - 1;
    for (int i = 0; i < BATCH; i++) {
        gd_net_t(n)[i] = (float)(100 + 300 * i + 50 * r);
        if (gd_net_y(n)) gd_net_y(n)[i] = (3 * i + r) % 10;
    }
}

/* Runs network `which` (U-Net forward, classifier input gradient); grad gets the gradient. */
static int run(gd_net *n, int which, float *grad) {
    char err[256];
    int rc = which == 0 ? gd_net_forward(n, err, sizeof err) : gd_net_input_grad(n, grad, err, sizeof err);
    CHECK(rc == 0, "%s: %s", net_models[which], err);
    return rc;
}

static int same(const float *a, const float *b, int64_t n) { return !memcmp(a, b, sizeof(float) * (size_t)n); }

static void shared_rounds(gd_model **m, gd_net **priv, gd_net **sh, const int *order) {
    float *gp[NNETS], *gs[NNETS], *outp[NNETS];
    for (int i = 0; i < NNETS; i++) {
        gp[i] = calloc((size_t)n_in(m[i]), sizeof(float));
        gs[i] = calloc((size_t)n_in(m[i]), sizeof(float));
        outp[i] = malloc(sizeof(float) * (size_t)gd_nelements(gd_net_output(priv[i])));
    }
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < NNETS; i++) {
            fill_inputs(priv[i], m[i], r, i);
            if (r) fill_inputs(sh[i], m[i], r, i); /* round 0: filled before the arena grew */
            run(priv[i], i, gp[i]);
            memcpy(outp[i], gd_net_output(priv[i])->data, sizeof(float) * (size_t)gd_nelements(gd_net_output(priv[i])));
        }
        /* one sampling step: the networks of the arena one after another, in creation order
         * on even rounds and reversed on odd ones */
        for (int j = 0; j < NNETS; j++) {
            int i = r % 2 ? order[NNETS - 1 - j] : order[j];
            run(sh[i], i, gs[i]);
            if (i) CHECK(same(gp[i], gs[i], n_in(m[i])), "round %d: %s's input gradient differs when shared", r, net_models[i]);
        }
        /* outputs are the networks' own: still intact after the others ran */
        for (int i = 0; i < NNETS; i++)
            CHECK(same(outp[i], gd_net_output(sh[i])->data, gd_nelements(gd_net_output(sh[i]))),
                  "round %d: %s's output differs when shared (or was overwritten)", r, net_models[i]);
    }
    for (int i = 0; i < NNETS; i++) free(gp[i]), free(gs[i]), free(outp[i]);
}

static void test_shared_arena(void) {
    char err[512], path[256];
    gd_model *m[NNETS] = {0};
    gd_net *priv[NNETS] = {0}, *sh[NNETS] = {0};
    size_t need[NNETS], sum = 0, max = 0;
    int ok = 1, order[NNETS];
    for (int i = 0; i < NNETS && ok; i++) {
        snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", net_models[i]);
        m[i] = gd_model_load(path, NULL, err, sizeof err);
        CHECK(m[i] != NULL, "%s", err);
        ok = m[i] && (priv[i] = gd_net_new(m[i], BATCH, i > 0, err, sizeof err)) != NULL;
        CHECK(!m[i] || priv[i], "%s: %s", net_models[i], err);
        if (!ok) break;
        gd_arena *alone = gd_arena_new(); /* what the network needs of an arena on its own */
        gd_net *n = gd_net_new_in(m[i], BATCH, i > 0, alone, err, sizeof err);
        CHECK(n != NULL, "%s", err);
        need[i] = gd_arena_bytes(alone);
        CHECK(n && need[i] == gd_align_up(gd_graph_shared_bytes(gd_net_graph(n))), "arena size is the graph's need");
        CHECK(n && gd_graph_arena_bytes(gd_net_graph(n)) - need[i] < need[i] / 4,
              "%s: most of the network's memory is in the arena", net_models[i]);
        gd_net_free(n);
        gd_arena_free(alone);
        sum += need[i];
        max = need[i] > max ? need[i] : max;
        order[i] = i;
    }
    if (ok) {
        /* smallest first, so the arena grows while earlier networks hold inputs and pointers */
        for (int i = 0; i < NNETS; i++)
            for (int j = i + 1; j < NNETS; j++)
                if (need[order[j]] < need[order[i]]) {
                    int t = order[i];
                    order[i] = order[j], order[j] = t;
                }
        gd_arena *a = gd_arena_new();
        float *x0 = NULL;
        unsigned grew = 0;
        for (int k = 0; k < NNETS && ok; k++) {
            int i = order[k];
            unsigned gen = gd_arena_generation(a);
            ok = (sh[i] = gd_net_new_in(m[i], BATCH, i > 0, a, err, sizeof err)) != NULL;
            CHECK(ok, "%s: %s", net_models[i], err);
            grew += k > 0 && gd_arena_generation(a) != gen;
            if (ok) fill_inputs(sh[i], m[i], 0, i);
            if (k == 0) x0 = gd_net_x(sh[i]);
        }
        if (ok) {
            printf("    arena needs %zu, %zu, %zu KiB alone; shared: %zu KiB (sum %zu KiB); grew %u times\n", need[0] >> 10,
                   need[1] >> 10, need[2] >> 10, gd_arena_bytes(a) >> 10, sum >> 10, grew);
            CHECK(gd_arena_bytes(a) == max && max < sum, "shared arena %zu bytes, want the max %zu (sum %zu)",
                  gd_arena_bytes(a), max, sum);
            CHECK(grew > 0, "the test should grow the arena after the first network was planned");
            CHECK(x0 == gd_net_x(sh[order[0]]), "input pointers stay put when the arena grows");
            shared_rounds(m, priv, sh, order);
        }
        for (int i = 0; i < NNETS; i++) gd_net_free(sh[i]);
        gd_arena_free(a);
    }
    for (int i = 0; i < NNETS; i++) gd_net_free(priv[i]), gd_model_free(m[i]);
}

/* Errors come back through err: a failed op's message reaches gd_graph_build, and a context
 * keeps its first error. */
static void test_ctx_errors(void) {
    gd_ctx *ctx = gd_ctx_new(8);
    gd_tensor *x = gd_new_2d(ctx, GD_F32, 2, 3);
    x->flags = GD_FLAG_INPUT;
    gd_tensor *y = gd_reshape(ctx, x, 1, (int64_t[]){5});
    gd_tensor *z = gd_reshape(ctx, gd_new_tensor(ctx, GD_F32, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}), 1, (int64_t[]){1});
    CHECK(y == NULL && z == NULL, "bad ops return NULL");
    CHECK(strstr(gd_ctx_error(ctx), "reshape") != NULL, "the first error is kept: '%s'", gd_ctx_error(ctx));
    char err[256] = "";
    CHECK(gd_graph_build(ctx, &y, 1, err, sizeof err) == NULL && strstr(err, "6 elements into 5"), "build reports it: '%s'", err);
    CHECK(gd_graph_build(ctx, &x, 1, err, sizeof err) == NULL, "a context with an error builds no graph");
    gd_ctx_free(ctx);
}

GD_TEST_TABLE(gd_tests_alloc) = {
    {"alloc: offsets vs a brute-force buffer map", test_allocator_random},
    {"alloc: networks sharing one arena", test_shared_arena},
    {"alloc: op errors reach the err of gd_graph_build", test_ctx_errors},
    {NULL, NULL},
};
