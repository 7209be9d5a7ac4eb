/* Graph build, memory plan, forward execution and the reverse-mode sweep. */
#include "core/gd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const gd_op_info gd_op_table[GD_OP_COUNT] = {
    [GD_OP_VIEW] = {"view", gd_fwd_view, gd_bwd_view, NULL, NULL},
    [GD_OP_CONVERT] = {"convert", gd_fwd_convert, gd_bwd_convert, NULL, NULL},
    [GD_OP_CONV2D] = {"conv2d", gd_fwd_conv2d, gd_bwd_conv2d, gd_work_conv2d, gd_flops_conv2d},
    [GD_OP_LINEAR] = {"linear", gd_fwd_linear, gd_bwd_linear, NULL, gd_flops_linear},
    [GD_OP_GROUP_NORM] = {"group_norm", gd_fwd_group_norm, gd_bwd_group_norm, NULL, NULL},
    [GD_OP_SILU] = {"silu", gd_fwd_silu, gd_bwd_silu, NULL, NULL},
    [GD_OP_ADD] = {"add", gd_fwd_add, gd_bwd_add, NULL, NULL},
    [GD_OP_MUL] = {"mul", gd_fwd_mul, gd_bwd_mul, NULL, NULL},
    [GD_OP_SCALE] = {"scale", gd_fwd_scale, gd_bwd_scale, NULL, NULL},
    [GD_OP_SCALE_SHIFT] = {"scale_shift", gd_fwd_scale_shift, gd_bwd_scale_shift, NULL, NULL},
    [GD_OP_CONCAT] = {"concat", gd_fwd_concat, gd_bwd_concat, NULL, NULL},
    [GD_OP_UPSAMPLE2X] = {"upsample2x", gd_fwd_upsample2x, gd_bwd_upsample2x, NULL, NULL},
    [GD_OP_AVGPOOL2X] = {"avgpool2x", gd_fwd_avgpool2x, gd_bwd_avgpool2x, NULL, NULL},
    [GD_OP_BILINEAR] = {"bilinear", gd_fwd_bilinear, gd_bwd_bilinear, NULL, NULL},
    [GD_OP_ATTENTION] = {"attention", gd_fwd_attention, gd_bwd_attention, gd_work_attention,
                         gd_flops_attention},
    [GD_OP_SOFTMAX] = {"softmax", gd_fwd_softmax, gd_bwd_softmax, NULL, NULL},
    [GD_OP_LOG_SOFTMAX] = {"log_softmax", gd_fwd_log_softmax, gd_bwd_log_softmax, NULL, NULL},
    [GD_OP_TIMESTEP_EMB] = {"timestep_emb", gd_fwd_timestep_emb, gd_bwd_timestep_emb, NULL, NULL},
    [GD_OP_EMBEDDING] = {"embedding", gd_fwd_embedding, gd_bwd_embedding, NULL, NULL},
    [GD_OP_MEAN] = {"mean", gd_fwd_mean, gd_bwd_mean, NULL, NULL},
    [GD_OP_SELECT] = {"select", gd_fwd_select, gd_bwd_select, NULL, NULL},
    [GD_OP_GATHER] = {"gather", gd_fwd_gather, gd_bwd_gather, NULL, NULL},
};

struct gd_graph {
    gd_ctx *ctx;
    gd_tensor **nodes; /* every reachable tensor, leaves included, in execution order */
    int n;
    bool *req;         /* needs a gradient, indexed like nodes */
    bool *widen;       /* a convert whose f32 copy lives in the widening scratch, indexed like nodes */
    bool *zeroed;      /* backward: gradient buffers zeroed so far in this sweep */
    char *arena;       /* activations, planned inputs, the widening scratch, then gradients */
    size_t arena_bytes;
    float *work;
    size_t work_floats;
    int planned, with_backward;
};

#define ALIGN 64
static size_t align_up(size_t x) { return (x + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

static int index_of(const gd_graph *g, const gd_tensor *t) { return (int)(t - g->ctx->tensors); }

static void mark(gd_ctx *ctx, gd_tensor *t, char *seen) {
    /* Sources always precede their node in the context, so an explicit stack is not needed for
     * ordering; recursion depth is bounded by the network depth (a few thousand at most). */
    int i = (int)(t - ctx->tensors);
    if (seen[i]) return;
    seen[i] = 1;
    for (int s = 0; s < GD_MAX_SRC; s++)
        if (t->src[s]) mark(ctx, t->src[s], seen);
}

gd_graph *gd_graph_build(gd_ctx *ctx, gd_tensor **outputs, int n_outputs) {
    for (int i = 0; i < n_outputs; i++)
        if (!outputs[i]) {
            gd_set_error("graph output %d is NULL (an op failed: %s)", i, gd_last_error());
            return NULL;
        }
    gd_graph *g = calloc(1, sizeof *g);
    char *seen = calloc((size_t)ctx->n + 1, 1);
    g->nodes = malloc(sizeof *g->nodes * ((size_t)ctx->n + 1));
    g->req = calloc((size_t)ctx->n + 1, sizeof *g->req);
    g->widen = calloc((size_t)ctx->n + 1, sizeof *g->widen);
    g->zeroed = calloc((size_t)ctx->n + 1, sizeof *g->zeroed);
    if (!g || !seen || !g->nodes || !g->req || !g->widen || !g->zeroed) {
        free(seen);
        gd_graph_free(g);
        gd_set_error("out of memory");
        return NULL;
    }
    g->ctx = ctx;
    for (int i = 0; i < n_outputs; i++) {
        outputs[i]->flags |= GD_FLAG_OUTPUT;
        mark(ctx, outputs[i], seen);
    }
    for (int i = 0; i < ctx->n; i++)
        if (seen[i]) g->nodes[g->n++] = &ctx->tensors[i];
    free(seen);
    return g;
}

void gd_graph_free(gd_graph *g) {
    if (!g) return;
    free(g->nodes);
    free(g->req);
    free(g->widen);
    free(g->zeroed);
    free(g->arena);
    free(g->work);
    free(g);
}

/* Views share their source's buffer, so liveness is tracked on the tensor that owns the bytes. */
static gd_tensor *owner(gd_tensor *t) {
    while (t->op == GD_OP_VIEW) t = t->src[0];
    return t;
}

typedef struct {
    size_t offs, size;
} block;

typedef struct {
    block *free;
    int nfree;
    size_t top;
} allocator;

static size_t alloc_block(allocator *a, size_t size) {
    int best = -1;
    for (int i = 0; i < a->nfree; i++)
        if (a->free[i].size >= size && (best < 0 || a->free[i].size < a->free[best].size)) best = i;
    if (best < 0) {
        /* Grow from the top, absorbing a free block that ends there. */
        if (a->nfree && a->free[a->nfree - 1].offs + a->free[a->nfree - 1].size == a->top) {
            size_t offs = a->free[--a->nfree].offs;
            a->top = offs + size;
            return offs;
        }
        size_t offs = a->top;
        a->top += size;
        return offs;
    }
    size_t offs = a->free[best].offs;
    a->free[best].offs += size;
    a->free[best].size -= size;
    if (a->free[best].size == 0) {
        memmove(&a->free[best], &a->free[best + 1], sizeof(block) * (size_t)(a->nfree - best - 1));
        a->nfree--;
    }
    return offs;
}

static void free_block(allocator *a, size_t offs, size_t size) {
    int i = 0;
    while (i < a->nfree && a->free[i].offs < offs) i++;
    memmove(&a->free[i + 1], &a->free[i], sizeof(block) * (size_t)(a->nfree - i));
    a->free[i] = (block){offs, size};
    a->nfree++;
    if (i + 1 < a->nfree && a->free[i].offs + a->free[i].size == a->free[i + 1].offs) {
        a->free[i].size += a->free[i + 1].size;
        memmove(&a->free[i + 1], &a->free[i + 2], sizeof(block) * (size_t)(a->nfree - i - 2));
        a->nfree--;
    }
    if (i > 0 && a->free[i - 1].offs + a->free[i - 1].size == a->free[i].offs) {
        a->free[i - 1].size += a->free[i].size;
        memmove(&a->free[i], &a->free[i + 1], sizeof(block) * (size_t)(a->nfree - i - 1));
        a->nfree--;
    }
}

int gd_graph_plan(gd_graph *g, int with_backward) {
    int n = g->n;
    gd_ctx *ctx = g->ctx;
    int *last = malloc(sizeof(int) * (size_t)ctx->n);
    allocator al = {malloc(sizeof(block) * (size_t)(n + 1)), 0, 0};
    if (!last || !al.free) {
        free(last);
        free(al.free);
        gd_set_error("out of memory");
        return -1;
    }
    for (int i = 0; i < ctx->n; i++) last[i] = -1;
    for (int k = 0; k < n; k++) {
        gd_tensor *t = g->nodes[k];
        for (int s = 0; s < GD_MAX_SRC; s++)
            if (t->src[s]) last[index_of(g, owner(t->src[s]))] = k;
    }
    for (int k = 0; k < n; k++) /* after all readers: an output may also feed later nodes */
        if (g->nodes[k]->flags & GD_FLAG_OUTPUT) last[index_of(g, owner(g->nodes[k]))] = n;
    for (int k = 0; k < n; k++) {
        gd_tensor *t = g->nodes[k];
        bool r = t->op == GD_OP_NONE && (t->flags & GD_FLAG_NEEDS_GRAD);
        for (int s = 0; s < GD_MAX_SRC && !r; s++)
            if (t->src[s] && g->req[index_of(g, t->src[s])]) r = true;
        g->req[index_of(g, t)] = with_backward && r;
    }

    /* Half-precision weights are widened by a convert node just before the op that reads them. If
     * each such copy got its own buffer, a backward graph (which frees nothing) would hold every
     * weight in f32 beside its f16 storage. Instead the copies read by one op share a small scratch
     * region, and the backward sweep widens them again before that op's backward. */
    size_t widen_bytes = 0;
    {
        int *first = malloc(sizeof(int) * (size_t)ctx->n);
        if (!first) {
            free(last);
            free(al.free);
            gd_set_error("out of memory");
            return -1;
        }
        for (int i = 0; i < ctx->n; i++) first[i] = -1;
        for (int k = 0; k < n; k++) {
            gd_tensor *t = g->nodes[k];
            g->widen[index_of(g, t)] = false;
            if (t->op == GD_OP_VIEW) continue; /* a view only aliases; its readers count */
            for (int s = 0; s < GD_MAX_SRC; s++)
                if (t->src[s] && first[index_of(g, owner(t->src[s]))] < 0) first[index_of(g, owner(t->src[s]))] = k;
        }
        size_t group = 0;
        int reader = -1;
        for (int k = 0; k < n; k++) {
            gd_tensor *t = g->nodes[k];
            int i = index_of(g, t);
            if (t->op != GD_OP_CONVERT || owner(t->src[0])->op != GD_OP_NONE || (t->flags & GD_FLAG_OUTPUT) || g->req[i])
                continue;
            int r = k + 1; /* the next node that computes something */
            while (r < n && (g->nodes[r]->op == GD_OP_CONVERT || g->nodes[r]->op == GD_OP_VIEW)) r++;
            if (r == n || first[i] != r || last[i] != r) continue;
            if (r != reader) group = 0, reader = r;
            g->widen[i] = true;
            t->size = (int64_t)align_up((size_t)gd_nelements(t) * sizeof(float));
            t->offs = (int64_t)group;
            group += (size_t)t->size;
            if (group > widen_bytes) widen_bytes = group;
        }
        free(first);
    }

    /* Pass 1: offsets. Without a backward, a buffer is released after its last reader runs. */
    size_t work = 0;
    for (int k = 0; k < n; k++) {
        gd_tensor *t = g->nodes[k];
        const gd_op_info *info = &gd_op_table[t->op];
        if (t->op == GD_OP_NONE && !(t->flags & GD_FLAG_INPUT)) {
            if (t->data) continue;
            {
                gd_set_error("tensor '%s' has no data and is not an input", t->name);
                free(last);
                free(al.free);
                return -1;
            }
        }
        if (t->op != GD_OP_VIEW && !g->widen[index_of(g, t)]) {
            t->size = (int64_t)align_up((size_t)gd_nelements(t) * gd_dtype_size(t->dtype));
            t->offs = (int64_t)alloc_block(&al, (size_t)t->size);
        }
        if (info->work_floats) {
            size_t w = info->work_floats(t, 0);
            if (with_backward) {
                size_t wb = info->work_floats(t, 1);
                if (wb > w) w = wb;
            }
            if (w > work) work = w;
        }
        if (!with_backward) {
            for (int s = 0; s < GD_MAX_SRC; s++) {
                gd_tensor *o = t->src[s] ? owner(t->src[s]) : NULL;
                if (!o || o->op == GD_OP_NONE || g->widen[index_of(g, o)]) continue; /* leaves live as long as the graph */
                bool dup = false; /* the same source twice must be freed once */
                for (int q = 0; q < s; q++) dup |= t->src[q] && owner(t->src[q]) == o;
                if (!dup && last[index_of(g, o)] == k) free_block(&al, (size_t)o->offs, (size_t)o->size);
            }
        }
    }
    size_t act = al.top + widen_bytes, grads = 0;
    /* Gradients, planned over the reverse sweep as activations are over the forward one: a
     * gradient buffer is live from the first backward that accumulates into it to the backward
     * of its own node. Outputs (where a sweep may start) are live from the start, and leaves'
     * gradients (what the caller reads) to the end. */
    size_t *goffs = NULL;
    if (with_backward) {
        allocator ga = {malloc(sizeof(block) * (size_t)(n + 1)), 0, 0};
        goffs = malloc(sizeof(size_t) * (size_t)ctx->n);
        bool *live = calloc((size_t)ctx->n + 1, 1);
        if (!ga.free || !goffs || !live) {
            free(ga.free), free(goffs), free(live), free(last), free(al.free);
            gd_set_error("out of memory");
            return -1;
        }
#define GBYTES(t) align_up((size_t)gd_nelements(t) * sizeof(float))
        for (int k = 0; k < n; k++) { /* an output that is a view is seeded through its owner */
            gd_tensor *o = owner(g->nodes[k]);
            int i = index_of(g, o);
            if (g->req[i] && (g->nodes[k]->flags & GD_FLAG_OUTPUT) && !live[i]) goffs[i] = alloc_block(&ga, GBYTES(o)), live[i] = true;
        }
        for (int k = n - 1; k >= 0; k--) {
            gd_tensor *t = g->nodes[k];
            int i = index_of(g, t);
            if (t->op == GD_OP_NONE || !g->req[i]) continue;
            for (int s = 0; s < GD_MAX_SRC; s++) {
                gd_tensor *o = t->src[s] ? owner(t->src[s]) : NULL;
                if (o && g->req[index_of(g, o)] && !live[index_of(g, o)])
                    goffs[index_of(g, o)] = alloc_block(&ga, GBYTES(o)), live[index_of(g, o)] = true;
            }
            if (t->op != GD_OP_VIEW && live[i]) free_block(&ga, goffs[i], GBYTES(t));
        }
        /* every node is an output or has readers, so this finds none; if it ever did, its own space */
        for (int k = 0; k < n; k++) {
            int i = index_of(g, g->nodes[k]);
            if (g->req[i] && g->nodes[k]->op != GD_OP_VIEW && !live[i]) goffs[i] = ga.top, ga.top += GBYTES(g->nodes[k]);
        }
#undef GBYTES
        grads = ga.top;
        free(ga.free);
        free(live);
    }
    size_t al_top = al.top; /* the widening scratch starts here */
    free(last);
    free(al.free);

    /* Pass 2: one allocation, then pointers. */
    free(g->arena);
    free(g->work);
    g->arena_bytes = act + grads;
    g->arena = aligned_alloc(ALIGN, g->arena_bytes ? g->arena_bytes : ALIGN);
    g->work_floats = work;
    g->work = work ? aligned_alloc(ALIGN, align_up(work * sizeof(float))) : NULL;
    if (!g->arena || (work && !g->work)) {
        free(goffs);
        gd_set_error("out of memory planning %zu MiB", (g->arena_bytes + work * 4) >> 20);
        return -1;
    }
    for (int k = 0; k < n; k++) {
        gd_tensor *t = g->nodes[k];
        if (t->op == GD_OP_VIEW) {
            t->data = t->src[0]->data;
        } else if (g->widen[index_of(g, t)]) {
            t->data = g->arena + al_top + t->offs;
        } else if (t->op != GD_OP_NONE || (t->flags & GD_FLAG_INPUT)) {
            t->data = g->arena + t->offs;
        }
        t->grad = NULL;
        if (g->req[index_of(g, t)]) {
            if (t->op == GD_OP_VIEW) {
                t->grad = t->src[0]->grad;
            } else {
                t->grad = (float *)(g->arena + act + goffs[index_of(g, t)]);
            }
        }
    }
    free(goffs);
    g->planned = 1;
    g->with_backward = with_backward;
    return 0;
}

/* GD_PROFILE=1 in the environment prints seconds per op kind after each compute/backward. */
static double prof[2][GD_OP_COUNT];
static int prof_on = -1;

static void prof_report(int bwd) {
    fprintf(stderr, "profile (%s):", bwd ? "backward" : "forward");
    for (int i = 1; i < GD_OP_COUNT; i++)
        if (prof[bwd][i] > 0) fprintf(stderr, " %s %.3fs", gd_op_table[i].name, prof[bwd][i]);
    fprintf(stderr, "\n");
    memset(prof[bwd], 0, sizeof prof[bwd]);
}

static void run_node(gd_graph *g, gd_tensor *t, int bwd) {
    const gd_op_info *info = &gd_op_table[t->op];
    if (prof_on < 0) prof_on = getenv("GD_PROFILE") != NULL;
    double t0 = prof_on ? gd_time_now() : 0;
    (bwd ? info->backward : info->forward)(t, g->work);
    if (prof_on) prof[bwd][t->op] += gd_time_now() - t0;
}

int gd_graph_compute(gd_graph *g) {
    if (!g->planned) {
        gd_set_error("graph computed before it was planned");
        return -1;
    }
    for (int k = 0; k < g->n; k++) {
        gd_tensor *t = g->nodes[k];
        if (t->op != GD_OP_NONE) run_node(g, t, 0);
    }
    if (prof_on > 0) prof_report(0);
    return 0;
}

int gd_graph_backward(gd_graph *g, gd_tensor *out, const float *dout) {
    if (!g->planned || !g->with_backward) {
        gd_set_error("graph was not planned with a backward pass");
        return -1;
    }
    if (!out->grad) {
        gd_set_error("output '%s' does not depend on anything that needs a gradient", out->name);
        return -1;
    }
    if (!((out->flags | owner(out)->flags) & GD_FLAG_OUTPUT)) { /* an output may be a view (reshape) */
        gd_set_error("backward from '%s', which is not an output of the graph", out->name);
        return -1;
    }
    /* Gradient buffers are shared over the sweep (see gd_graph_plan): each is zeroed when it
     * becomes live, i.e. at the first backward that accumulates into it. */
    bool *zeroed = g->zeroed;
    memset(zeroed, 0, sizeof *zeroed * (size_t)g->ctx->n);
    for (int k = 0; k < g->n; k++) {
        gd_tensor *t = g->nodes[k];
        gd_tensor *o = owner(t); /* an output that is a view seeds its owner's gradient */
        if (o->grad && (t->flags & GD_FLAG_OUTPUT) && !zeroed[index_of(g, o)]) {
            memset(o->grad, 0, sizeof(float) * (size_t)gd_nelements(o));
            zeroed[index_of(g, o)] = true;
        }
    }
    int64_t ne = gd_nelements(out);
    for (int64_t i = 0; i < ne; i++) out->grad[i] = dout ? dout[i] : 1.0f;
    for (int k = g->n - 1; k >= 0; k--) {
        gd_tensor *t = g->nodes[k];
        if (t->op == GD_OP_NONE || !t->grad) continue;
        for (int s = 0; s < GD_MAX_SRC; s++) {
            gd_tensor *o = t->src[s] ? owner(t->src[s]) : NULL;
            if (!o) continue;
            if (o->grad && !zeroed[index_of(g, o)]) {
                memset(o->grad, 0, sizeof(float) * (size_t)gd_nelements(o));
                zeroed[index_of(g, o)] = true;
            }
            if (g->widen[index_of(g, o)]) run_node(g, o, 0); /* the scratch holds another op's weights by now */
        }
        run_node(g, t, 1);
    }
    if (prof_on > 0) prof_report(1);
    return 0;
}

size_t gd_graph_arena_bytes(const gd_graph *g) { return g->arena_bytes + g->work_floats * sizeof(float); }

int gd_graph_n_nodes(const gd_graph *g) { return g->n; }

double gd_graph_flops(const gd_graph *g) {
    double f = 0;
    for (int k = 0; k < g->n; k++) {
        const gd_tensor *t = g->nodes[k];
        if (gd_op_table[t->op].flops) f += gd_op_table[t->op].flops(t);
    }
    return f;
}
