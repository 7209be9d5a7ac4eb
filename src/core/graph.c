/* Graph build, analysis (liveness, gradients, widening) and memory plan, forward execution and
 * the reverse-mode sweep. Offsets come from the allocator in alloc.c. */
#include "core/gd_internal.h"
#include "gd_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const gd_op_info gd_op_table[GD_OP_COUNT] = {
    [GD_OP_VIEW] = {"view", gd_fwd_view, gd_bwd_view, NULL, NULL},
    [GD_OP_CONVERT] = {"convert", gd_fwd_convert, gd_bwd_convert, NULL, NULL},
    [GD_OP_CONV2D] = {"conv2d", gd_fwd_conv2d, gd_bwd_conv2d, gd_work_conv2d, gd_flops_conv2d},
    [GD_OP_LINEAR] = {"linear", gd_fwd_linear, gd_bwd_linear, NULL, gd_flops_linear},
    [GD_OP_GROUP_NORM] = {"group_norm", gd_fwd_group_norm, gd_bwd_group_norm, gd_work_group_norm, NULL},
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
    [GD_OP_RELU] = {"relu", gd_fwd_relu, gd_bwd_relu, NULL, NULL},
    [GD_OP_POOL2D] = {"pool2d", gd_fwd_pool2d, gd_bwd_pool2d, NULL, NULL},
    [GD_OP_CROP2D] = {"crop2d", gd_fwd_crop2d, gd_bwd_crop2d, NULL, NULL},
};

struct gd_graph {
    gd_ctx *ctx;
    gd_tensor **nodes; /* every reachable tensor, leaves included, in execution order */
    int n;
    bool *req;         /* needs a gradient, indexed like nodes */
    bool *widen;       /* a convert whose f32 copy lives in the widening scratch, indexed like nodes */
    bool *zeroed;      /* backward: gradient buffers zeroed so far in this sweep */
    unsigned char *dreg, *greg; /* the region (see bind) of each buffer and of each gradient */
    size_t *goffs;     /* gradient offsets in their region */
    char *arena;       /* the graph's own buffer (see bind for its layout) */
    size_t arena_bytes;
    size_t act_top[2], grad_top[2], widen_bytes; /* per region; the widening scratch */
    gd_arena *shared;  /* NULL when planned privately */
    size_t shared_bytes; /* what the graph needs of the shared arena */
    unsigned shared_generation; /* the arena's generation at the last bind */
    float *work, *own_work; /* the ops' scratch; own_work when it is not in the shared arena */
    size_t work_floats;
    int planned, with_backward;
    gd_observer observer;
    void *observer_user;
};

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

gd_graph *gd_graph_build(gd_ctx *ctx, gd_tensor **outputs, int n_outputs, char *err, size_t errlen) {
    for (int i = 0; i < n_outputs; i++)
        if (!outputs[i]) {
            gd_errf(err, errlen, "graph output %d is NULL (%s)", i, ctx->err[0] ? ctx->err : "an op failed");
            return NULL;
        }
    if (ctx->err[0]) { /* an op failed on a branch no output reads: still a broken graph */
        gd_errf(err, errlen, "%s", ctx->err);
        return NULL;
    }
    size_t n1 = (size_t)ctx->n + 1;
    gd_graph *g = calloc(1, sizeof *g);
    char *seen = calloc(n1, 1);
    if (!g || !seen) {
        free(g);
        free(seen);
        gd_errf(err, errlen, "out of memory");
        return NULL;
    }
    g->nodes = malloc(sizeof *g->nodes * n1);
    g->req = calloc(n1, sizeof *g->req);
    g->widen = calloc(n1, sizeof *g->widen);
    g->zeroed = calloc(n1, sizeof *g->zeroed);
    g->dreg = calloc(n1, 1);
    g->greg = calloc(n1, 1);
    g->goffs = calloc(n1, sizeof *g->goffs);
    if (!g->nodes || !g->req || !g->widen || !g->zeroed || !g->dreg || !g->greg || !g->goffs) {
        free(seen);
        gd_graph_free(g);
        gd_errf(err, errlen, "out of memory");
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
    free(g->dreg);
    free(g->greg);
    free(g->goffs);
    free(g->arena);
    free(g->own_work);
    free(g);
}

/* Views share their source's buffer, so liveness is tracked on the tensor that owns the bytes. */
static gd_tensor *owner(gd_tensor *t) {
    while (t->op == GD_OP_VIEW) t = t->src[0];
    return t;
}

/* ---- graph analysis: liveness, what needs a gradient, widening groups ---- */

/* t->last_use of every buffer owner: the last node reading it, g->n for an output (read after
 * compute, possibly also by later nodes), -1 when nothing reads it. */
static void analyze_last_use(gd_graph *g) {
    for (int k = 0; k < g->n; k++) g->nodes[k]->last_use = -1;
    for (int k = 0; k < g->n; k++) {
        gd_tensor *t = g->nodes[k];
        for (int s = 0; s < GD_MAX_SRC; s++)
            if (t->src[s]) owner(t->src[s])->last_use = k;
    }
    for (int k = 0; k < g->n; k++)
        if (g->nodes[k]->flags & GD_FLAG_OUTPUT) owner(g->nodes[k])->last_use = g->n;
}

/* A node needs a gradient when a leaf flagged GD_FLAG_NEEDS_GRAD lies below it. */
static void analyze_requires_grad(gd_graph *g, int with_backward) {
    for (int k = 0; k < g->n; k++) {
        gd_tensor *t = g->nodes[k];
        bool r = t->op == GD_OP_NONE && (t->flags & GD_FLAG_NEEDS_GRAD);
        for (int s = 0; s < GD_MAX_SRC && !r; s++)
            if (t->src[s] && g->req[index_of(g, t->src[s])]) r = true;
        g->req[index_of(g, t)] = with_backward && r;
    }
}

/* Half-precision weights are widened by a convert node just before the op that reads them. If
 * each such copy got its own buffer, a backward graph (which frees nothing) would hold every
 * weight in f32 beside its f16 storage. Instead the copies read by one op share a small scratch
 * region (their t->offs are offsets in it), and the backward sweep widens them again before that
 * op's backward. Sets g->widen and g->widen_bytes; 0, or -1 out of memory. */
static int analyze_widen(gd_graph *g) {
    int n = g->n;
    int *first = malloc(sizeof(int) * (size_t)g->ctx->n);
    if (!first) return -1;
    for (int i = 0; i < g->ctx->n; i++) first[i] = -1;
    for (int k = 0; k < n; k++) {
        gd_tensor *t = g->nodes[k];
        g->widen[index_of(g, t)] = false;
        if (t->op == GD_OP_VIEW) continue; /* a view only aliases; its readers count */
        for (int s = 0; s < GD_MAX_SRC; s++)
            if (t->src[s] && first[index_of(g, owner(t->src[s]))] < 0) first[index_of(g, owner(t->src[s]))] = k;
    }
    size_t group = 0;
    int reader = -1;
    g->widen_bytes = 0;
    for (int k = 0; k < n; k++) {
        gd_tensor *t = g->nodes[k];
        int i = index_of(g, t);
        if (t->op != GD_OP_CONVERT || owner(t->src[0])->op != GD_OP_NONE || (t->flags & GD_FLAG_OUTPUT) || g->req[i])
            continue;
        int r = k + 1; /* the next node that computes something */
        while (r < n && (g->nodes[r]->op == GD_OP_CONVERT || g->nodes[r]->op == GD_OP_VIEW)) r++;
        if (r == n || first[i] != r || t->last_use != r) continue;
        if (r != reader) group = 0, reader = r;
        g->widen[i] = true;
        t->size = (int64_t)gd_align_up((size_t)gd_nelements(t) * sizeof(float));
        t->offs = (int64_t)group;
        group += (size_t)t->size;
        if (group > g->widen_bytes) g->widen_bytes = group;
    }
    free(first);
    return 0;
}

/* ---- memory plan: the analysis replayed as alloc/free events through gd_allocator ----
 * Region 0 is the graph's own buffer; with a shared arena, region 1 is the arena and holds
 * everything that need not outlive a compute (include/gd_alloc.h). Planned privately, every
 * buffer is in region 0. */
enum { REG_OWN = 0, REG_SHARED = 1 };

static int data_region(const gd_graph *g, const gd_tensor *t) {
    if (!g->shared) return REG_OWN;
    bool keep = (t->op == GD_OP_NONE && (t->flags & GD_FLAG_INPUT)) || t->last_use == g->n;
    return keep ? REG_OWN : REG_SHARED;
}

static int grad_region(const gd_graph *g, const gd_tensor *t) {
    return g->shared && t->op != GD_OP_NONE ? REG_SHARED : REG_OWN; /* leaves' gradients are read after */
}

/* Activations over the forward order. Without a backward, a buffer is released after its last
 * reader runs. Also sizes the ops' scratch (g->work_floats). */
static int plan_forward(gd_graph *g, gd_allocator *al, int with_backward, char *err, size_t errlen) {
    size_t work = 0;
    for (int k = 0; k < g->n; k++) {
        gd_tensor *t = g->nodes[k];
        const gd_op_info *info = &gd_op_table[t->op];
        if (t->op == GD_OP_NONE && !(t->flags & GD_FLAG_INPUT)) {
            if (t->data) continue;
            gd_errf(err, errlen, "tensor '%s' has no data and is not an input", t->name);
            return -1;
        }
        if (t->op != GD_OP_VIEW && !g->widen[index_of(g, t)]) {
            int r = data_region(g, t);
            g->dreg[index_of(g, t)] = (unsigned char)r;
            t->size = (int64_t)gd_align_up((size_t)gd_nelements(t) * gd_dtype_size(t->dtype));
            t->offs = (int64_t)gd_allocator_alloc(&al[r], (size_t)t->size);
        }
        if (info->work_floats) {
            size_t w = info->work_floats(t, 0);
            if (with_backward) {
                size_t wb = info->work_floats(t, 1);
                if (wb > w) w = wb;
            }
            if (w > work) work = w;
        }
        if (with_backward) continue;
        for (int s = 0; s < GD_MAX_SRC; s++) {
            gd_tensor *o = t->src[s] ? owner(t->src[s]) : NULL;
            if (!o || o->op == GD_OP_NONE || g->widen[index_of(g, o)]) continue; /* leaves live as long as the graph */
            bool dup = false; /* the same source twice must be freed once */
            for (int q = 0; q < s; q++) dup |= t->src[q] && owner(t->src[q]) == o;
            if (!dup && o->last_use == k) gd_allocator_free(&al[g->dreg[index_of(g, o)]], (size_t)o->offs, (size_t)o->size);
        }
    }
    g->work_floats = work;
    return 0;
}

#define GBYTES(t) gd_align_up((size_t)gd_nelements(t) * sizeof(float))

/* A gradient buffer becomes live. */
static void galloc(gd_graph *g, gd_allocator *ga, bool *live, gd_tensor *o) {
    int i = index_of(g, o);
    g->greg[i] = (unsigned char)grad_region(g, o);
    g->goffs[i] = gd_allocator_alloc(&ga[g->greg[i]], GBYTES(o));
    live[i] = true;
}

/* Gradients, planned over the reverse sweep as activations are over the forward one: a gradient
 * buffer is live from the first backward that accumulates into it to the backward of its own
 * node. Outputs (where a sweep may start) are live from the start, and leaves' gradients (what
 * the caller reads) to the end. Sets g->goffs and g->greg. */
static int plan_grads(gd_graph *g, gd_allocator *ga) {
    bool *live = calloc((size_t)g->ctx->n + 1, 1);
    if (!live) return -1;
    for (int k = 0; k < g->n; k++) { /* an output that is a view is seeded through its owner */
        gd_tensor *o = owner(g->nodes[k]);
        if (g->req[index_of(g, o)] && (g->nodes[k]->flags & GD_FLAG_OUTPUT) && !live[index_of(g, o)]) galloc(g, ga, live, o);
    }
    for (int k = g->n - 1; k >= 0; k--) {
        gd_tensor *t = g->nodes[k];
        int i = index_of(g, t);
        if (t->op == GD_OP_NONE || !g->req[i]) continue;
        for (int s = 0; s < GD_MAX_SRC; s++) {
            gd_tensor *o = t->src[s] ? owner(t->src[s]) : NULL;
            if (o && g->req[index_of(g, o)] && !live[index_of(g, o)]) galloc(g, ga, live, o);
        }
        if (t->op != GD_OP_VIEW && live[i]) gd_allocator_free(&ga[g->greg[i]], g->goffs[i], GBYTES(t));
    }
    /* every node is an output or has readers, so this finds none; if it ever did, its own space */
    for (int k = 0; k < g->n; k++) {
        gd_tensor *t = g->nodes[k];
        int i = index_of(g, t);
        if (!g->req[i] || t->op == GD_OP_VIEW || live[i]) continue;
        gd_allocator *a = &ga[g->greg[i] = (unsigned char)grad_region(g, t)];
        g->goffs[i] = a->top;
        a->top += GBYTES(t);
    }
    free(live);
    return 0;
}
#undef GBYTES

/* Sets every planned pointer from the offsets and the buffers' current addresses: at plan time,
 * and again when the shared arena has moved since (no allocation). Planned privately the layout
 * is [activations | widening scratch | gradients] (the ops' scratch apart); with a shared arena
 * the own buffer is [kept activations | leaves' gradients] and the arena [activations | widening
 * scratch | gradients | ops' scratch]. */
static void bind(gd_graph *g) {
    char *act[2], *grad[2], *widen;
    act[REG_OWN] = g->arena;
    if (g->shared) {
        grad[REG_OWN] = g->arena + g->act_top[REG_OWN];
        act[REG_SHARED] = gd_arena_base(g->shared);
        widen = act[REG_SHARED] + g->act_top[REG_SHARED];
        grad[REG_SHARED] = widen + g->widen_bytes;
        g->work = g->work_floats ? (float *)(grad[REG_SHARED] + g->grad_top[REG_SHARED]) : NULL;
        g->shared_generation = gd_arena_generation(g->shared);
    } else {
        widen = g->arena + g->act_top[REG_OWN];
        grad[REG_OWN] = widen + g->widen_bytes;
        act[REG_SHARED] = grad[REG_SHARED] = NULL;
    }
    for (int k = 0; k < g->n; k++) {
        gd_tensor *t = g->nodes[k];
        int i = index_of(g, t);
        if (t->op == GD_OP_VIEW) {
            t->data = t->src[0]->data;
        } else if (g->widen[i]) {
            t->data = widen + t->offs;
        } else if (t->op != GD_OP_NONE || (t->flags & GD_FLAG_INPUT)) {
            t->data = act[g->dreg[i]] + t->offs;
        }
        t->grad = NULL;
        if (g->req[i]) t->grad = t->op == GD_OP_VIEW ? t->src[0]->grad : (float *)(grad[g->greg[i]] + g->goffs[i]);
    }
}

/* Before a compute or backward: rebinds when the shared arena grew since this graph's last bind. */
static int ensure_bound(gd_graph *g, char *err, size_t errlen) {
    if (!g->shared || g->shared_generation == gd_arena_generation(g->shared)) return 0;
    if (!gd_arena_base(g->shared)) {
        gd_errf(err, errlen, "the shared arena was lost (a plan failed to grow it)");
        return -1;
    }
    bind(g);
    return 0;
}

/* Replays the analysis through the allocators: activations (and their regions) forward, then
 * gradients over the reverse sweep. Fills act_top, grad_top, work_floats. */
static int plan_offsets(gd_graph *g, int with_backward, char *err, size_t errlen) {
    gd_allocator al[2] = {{0}}, ga[2] = {{0}};
    int rc = -1;
    for (int r = 0; r < 2; r++)
        if (gd_allocator_init(&al[r], g->n) || gd_allocator_init(&ga[r], with_backward ? g->n : 0)) goto oom;
    if (plan_forward(g, al, with_backward, err, errlen)) goto done;
    if (with_backward && plan_grads(g, ga)) goto oom;
    for (int r = 0; r < 2; r++) g->act_top[r] = al[r].top, g->grad_top[r] = ga[r].top;
    rc = 0;
    goto done;
oom:
    gd_errf(err, errlen, "out of memory");
done:
    for (int r = 0; r < 2; r++) gd_allocator_release(&al[r]), gd_allocator_release(&ga[r]);
    return rc;
}

int gd_graph_plan_in(gd_graph *g, int with_backward, gd_arena *shared, char *err, size_t errlen) {
    g->planned = 0;
    g->shared = shared;
    analyze_last_use(g);
    analyze_requires_grad(g, with_backward);
    if (analyze_widen(g)) {
        gd_errf(err, errlen, "out of memory");
        return -1;
    }
    if (plan_offsets(g, with_backward, err, errlen)) return -1;

    /* One allocation for the graph's own buffer (and the ops' scratch, or the arena's growth). */
    free(g->arena);
    free(g->own_work);
    g->work = g->own_work = NULL;
    size_t own = g->act_top[REG_OWN] + g->grad_top[REG_OWN], work_bytes = gd_align_up(g->work_floats * sizeof(float));
    if (shared) {
        g->shared_bytes = g->act_top[REG_SHARED] + g->widen_bytes + g->grad_top[REG_SHARED] + (g->work_floats ? work_bytes : 0);
        g->arena_bytes = own;
        if (gd_arena_reserve(shared, g->shared_bytes, err, errlen)) return -1;
    } else {
        g->shared_bytes = 0;
        g->arena_bytes = own + g->widen_bytes;
        if (g->work_floats && !(g->work = g->own_work = aligned_alloc(GD_ALLOC_ALIGN, work_bytes))) {
            gd_errf(err, errlen, "out of memory planning %zu MiB of scratch", work_bytes >> 20);
            return -1;
        }
    }
    g->arena = aligned_alloc(GD_ALLOC_ALIGN, g->arena_bytes ? gd_align_up(g->arena_bytes) : GD_ALLOC_ALIGN);
    if (!g->arena) {
        gd_errf(err, errlen, "out of memory planning %zu MiB", (g->arena_bytes + work_bytes) >> 20);
        return -1;
    }
    bind(g);
    g->planned = 1;
    g->with_backward = with_backward;
    return 0;
}

int gd_graph_plan(gd_graph *g, int with_backward, char *err, size_t errlen) {
    return gd_graph_plan_in(g, with_backward, NULL, err, errlen);
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

void gd_graph_set_observer(gd_graph *g, gd_observer fn, void *user) {
    g->observer = fn;
    g->observer_user = user;
}

int gd_graph_compute(gd_graph *g, char *err, size_t errlen) {
    if (!g->planned) {
        gd_errf(err, errlen, "graph computed before it was planned");
        return -1;
    }
    if (ensure_bound(g, err, errlen)) return -1;
    for (int k = 0; k < g->n; k++) {
        gd_tensor *t = g->nodes[k];
        if (t->op == GD_OP_NONE) continue;
        run_node(g, t, 0);
        if (g->observer) g->observer(t, g->observer_user);
    }
    if (prof_on > 0) prof_report(0);
    return 0;
}

/* Zeroes a gradient buffer; a large one by all threads, in 256 KiB blocks (memory bound). */
static void zero_grad(float *p, int64_t n) {
    const int64_t blk = 1 << 16;
    if (n <= blk) {
        memset(p, 0, sizeof(float) * (size_t)n);
        return;
    }
#pragma omp parallel for
    for (int64_t b = 0; b < (n + blk - 1) / blk; b++)
        memset(p + b * blk, 0, sizeof(float) * (size_t)(n - b * blk < blk ? n - b * blk : blk));
}

int gd_graph_backward(gd_graph *g, gd_tensor *out, const float *dout, char *err, size_t errlen) {
    if (!g->planned || !g->with_backward) {
        gd_errf(err, errlen, "graph was not planned with a backward pass");
        return -1;
    }
    if (ensure_bound(g, err, errlen)) return -1;
    if (!out->grad) {
        gd_errf(err, errlen, "output '%s' does not depend on anything that needs a gradient", out->name);
        return -1;
    }
    if (!((out->flags | owner(out)->flags) & GD_FLAG_OUTPUT)) { /* an output may be a view (reshape) */
        gd_errf(err, errlen, "backward from '%s', which is not an output of the graph", out->name);
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
            zero_grad(o->grad, gd_nelements(o));
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
                zero_grad(o->grad, gd_nelements(o));
                zeroed[index_of(g, o)] = true;
            }
            if (g->widen[index_of(g, o)]) run_node(g, o, 0); /* the scratch holds another op's weights by now */
        }
        run_node(g, t, 1);
    }
    if (prof_on > 0) prof_report(1);
    return 0;
}

size_t gd_graph_arena_bytes(const gd_graph *g) {
    return g->arena_bytes + (g->shared ? g->shared_bytes : g->work_floats * sizeof(float));
}

size_t gd_graph_shared_bytes(const gd_graph *g) { return g->shared ? g->shared_bytes : 0; }

int gd_graph_n_nodes(const gd_graph *g) { return g->n; }

double gd_graph_flops(const gd_graph *g) {
    double f = 0;
    for (int k = 0; k < g->n; k++) {
        const gd_tensor *t = g->nodes[k];
        if (gd_op_table[t->op].flops) f += gd_op_table[t->op].flops(t);
    }
    return f;
}
