/* The offset allocator the planner replays its alloc/free events through, and the activation
 * arena that planned graphs share (include/gd_alloc.h). */
#include "gd_alloc.h"

#include "gd_util.h"

#include <stdlib.h>
#include <string.h>

size_t gd_align_up(size_t x) { return (x + GD_ALLOC_ALIGN - 1) & ~(size_t)(GD_ALLOC_ALIGN - 1); }

int gd_allocator_init(gd_allocator *a, int max_allocs) {
    /* The free list never holds more blocks than there are live ones plus one. */
    a->cap = (max_allocs > 0 ? max_allocs : 0) + 1;
    a->free = malloc(sizeof *a->free * (size_t)a->cap);
    a->nfree = 0;
    a->top = 0;
    return a->free ? 0 : -1;
}

void gd_allocator_release(gd_allocator *a) {
    free(a->free);
    a->free = NULL;
    a->nfree = a->cap = 0;
}

static void remove_block(gd_allocator *a, int i) {
    memmove(&a->free[i], &a->free[i + 1], sizeof *a->free * (size_t)(a->nfree - i - 1));
    a->nfree--;
}

size_t gd_allocator_alloc(gd_allocator *a, size_t size) {
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
    if (a->free[best].size == 0) remove_block(a, best);
    return offs;
}

void gd_allocator_free(gd_allocator *a, size_t offs, size_t size) {
    int i = 0;
    while (i < a->nfree && a->free[i].offs < offs) i++;
    memmove(&a->free[i + 1], &a->free[i], sizeof *a->free * (size_t)(a->nfree - i));
    a->free[i] = (gd_alloc_block){offs, size};
    a->nfree++;
    if (i + 1 < a->nfree && a->free[i].offs + a->free[i].size == a->free[i + 1].offs) {
        a->free[i].size += a->free[i + 1].size;
        remove_block(a, i + 1);
    }
    if (i > 0 && a->free[i - 1].offs + a->free[i - 1].size == a->free[i].offs) {
        a->free[i - 1].size += a->free[i].size;
        remove_block(a, i);
    }
}

/* ---- the shared arena ---- */

struct gd_arena {
    char *base;
    size_t bytes;
    unsigned generation;
};

gd_arena *gd_arena_new(void) { return calloc(1, sizeof(gd_arena)); }

void gd_arena_free(gd_arena *a) {
    if (!a) return;
    free(a->base);
    free(a);
}

size_t gd_arena_bytes(const gd_arena *a) { return a ? a->bytes : 0; }

char *gd_arena_base(const gd_arena *a) { return a->base; }

unsigned gd_arena_generation(const gd_arena *a) { return a->generation; }

int gd_arena_reserve(gd_arena *a, size_t bytes, char *err, size_t errlen) {
    bytes = gd_align_up(bytes);
    if (a->base && bytes <= a->bytes) return 0;
    /* Nothing in it survives a plan, so drop the old buffer first instead of copying it. */
    free(a->base);
    a->base = aligned_alloc(GD_ALLOC_ALIGN, bytes ? bytes : GD_ALLOC_ALIGN);
    a->generation++;
    if (!a->base) {
        /* keep the graphs planned so far runnable: back to the old size if that still fits */
        a->base = a->bytes ? aligned_alloc(GD_ALLOC_ALIGN, a->bytes) : NULL;
        if (!a->base) a->bytes = 0;
        gd_errf(err, errlen, "out of memory growing the shared arena to %zu MiB", bytes >> 20);
        return -1;
    }
    a->bytes = bytes;
    return 0;
}
