/* Memory planning, apart from the graph (as ggml-alloc.h is apart from ggml.h): an offset
 * allocator that replays a sequence of alloc/free events, and an arena that several planned
 * graphs share. Nothing here runs at compute time except gd_arena_base. */
#ifndef GD_ALLOC_H
#define GD_ALLOC_H
#include "gd_tensor.h"

#include <stddef.h>

/* Every offset and size the planner hands out is a multiple of this (bytes). */
#define GD_ALLOC_ALIGN 64

/* ---- offset allocator ----
 * Assigns offsets in a virtual buffer to a sequence of alloc/free events: best fit among the free
 * blocks (the smallest that fits, the lowest on ties), else growth from the top (absorbing a free
 * block that ends there); freed blocks coalesce with their neighbours. Live blocks never overlap,
 * and top is the buffer size the sequence needs. Deterministic: the same events give the same
 * offsets. Sizes are taken as given (round them with gd_align_up when they must stay aligned). */
typedef struct {
    size_t offs, size;
} gd_alloc_block;

typedef struct {
    gd_alloc_block *free; /* free blocks below top, sorted by offset, never adjacent */
    int nfree, cap;
    size_t top;
} gd_allocator;

size_t gd_align_up(size_t x);
/* max_allocs: how many gd_allocator_alloc calls at most will be made (bounds the free list).
 * Returns 0, or -1 out of memory. */
int gd_allocator_init(gd_allocator *a, int max_allocs);
void gd_allocator_release(gd_allocator *a);
size_t gd_allocator_alloc(gd_allocator *a, size_t size);
/* offs and size exactly as one earlier alloc returned and was given, freed once. */
void gd_allocator_free(gd_allocator *a, size_t offs, size_t size);

/* ---- shared activation arena ----
 * One buffer for the transient memory of several planned graphs that never run at the same time
 * (the U-Net denoiser, then each classifier expert, within one sampling step): it is sized to the
 * largest need planned into it, not their sum.
 *
 * Lifetime contract. A graph planned into an arena (gd_graph_plan_in, gd_net_new_in) keeps in its
 * own private buffer everything that must outlive its compute: inputs the caller fills (so
 * gd_net_x / gd_net_t / gd_net_y / gd_net_low_res pointers never go stale), outputs (and what
 * they view: logits, features, a U-Net's output), and the gradients of leaves flagged
 * GD_FLAG_NEEDS_GRAD. Everything else (intermediate activations, widened f16 weights, the other
 * gradients, op scratch) lives in the arena and is valid only from the start of that graph's
 * gd_graph_compute to the start of the next compute of ANOTHER graph in the same arena: so a
 * backward must follow its own forward with no other graph of the arena run in between (as
 * gd_net_input_grad does within one call), and graphs of one arena must not run concurrently.
 * (Nothing else persists between computes today: f16/bf16 weights are widened again at every
 * compute, Winograd weight transforms live in per-op scratch, parameters stay in the model.)
 *
 * Growth happens at plan time only: planning a graph that needs more than the arena holds
 * reallocates it (its old contents are dropped); a graph planned earlier notices at its next
 * compute or backward and rebinds its pointers into the new buffer, a pass over its nodes with
 * no allocation. The arena must outlive every compute of the graphs planned into it; graphs may
 * be freed before or after it. */
typedef struct gd_arena gd_arena;
gd_arena *gd_arena_new(void);
void gd_arena_free(gd_arena *a);
/* Its current size: the most any graph planned into it needs. */
size_t gd_arena_bytes(const gd_arena *a);
/* Plan time: grows the arena to at least `bytes` (contents are not kept). 0, or -1 with err. */
int gd_arena_reserve(gd_arena *a, size_t bytes, char *err, size_t errlen);
/* The buffer, and a counter that changes each time it moves (graphs compare it to rebind). */
char *gd_arena_base(const gd_arena *a);
unsigned gd_arena_generation(const gd_arena *a);

/* gd_graph_plan, with the graph's transient memory in `shared` (NULL: a private arena, exactly
 * gd_graph_plan). See the lifetime contract above. */
int gd_graph_plan_in(gd_graph *g, int with_backward, gd_arena *shared, char *err, size_t errlen);
/* What g needs of its shared arena (0 when planned privately); gd_graph_arena_bytes counts it too. */
size_t gd_graph_shared_bytes(const gd_graph *g);
#endif
