/* A program that brings its own allocator: malloc and friends defined in the
 * executable itself (a bump allocator over a static arena), as a program statically
 * linked with an unprefixed jemalloc or tcmalloc does. `avsoak watch` must refuse to
 * judge it: the hooks never see its allocations. */
#include <stddef.h>
#include <string.h>

#include "avsoak.h"

static unsigned char arena[64 << 20];
static size_t used;

void *malloc(size_t n) {
    size_t at = (used + 15) & ~(size_t)15;
    if (at + n + 16 > sizeof arena) return NULL;
    used = at + 16 + n;
    memcpy(arena + at, &n, sizeof n);
    return arena + at + 16;
}
void free(void *p) { (void)p; }
void *calloc(size_t k, size_t n) {
    void *p = malloc(k * n);
    if (p) memset(p, 0, k * n);
    return p;
}
void *realloc(void *p, size_t n) {
    void *q = malloc(n);
    if (p && q) {
        size_t old;
        memcpy(&old, (unsigned char *)p - 16, sizeof old);
        memcpy(q, p, old < n ? old : n);
    }
    return q;
}

int main(void) {
    for (int i = 0; i < 100; i++) {
        free(malloc(64));
        AVSOAK_ITERATION(1);
    }
    return 0;
}
