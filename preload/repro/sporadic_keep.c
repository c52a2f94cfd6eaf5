/* A preview cache that keeps a copy of one picture in sixteen (a 640x480 I420 picture,
 * 460,800 bytes) for a thumbnail strip that nothing ever trims: a large leak that comes
 * every sixteenth frame, not every frame. Every frame also makes and frees a working
 * picture of the same size. -DFIXED: the strip keeps the last copy only.
 *
 * Usage: sporadic_keep FRAMES. One iteration is one frame. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avsoak.h"

enum { PICTURE = 640 * 480 * 3 / 2, EVERY = 16, KEEP = 1 };

static uint8_t **strip;
static size_t kept, room;

/* Keeps a copy of `picture` in the strip. */
__attribute__((noinline)) static int keep_preview(const uint8_t *picture) {
#ifdef FIXED
    if (kept == KEEP) {
        free(strip[0]);
        if (KEEP > 1) memmove(strip, strip + 1, (KEEP - 1) * sizeof *strip);
        kept--;
    }
#endif
    if (kept == room) {
        uint8_t **grown = realloc(strip, (room + 64) * sizeof *strip);
        if (!grown) return -1;
        strip = grown;
        room += 64;
    }
    uint8_t *copy = malloc(PICTURE);
    if (!copy) return -1;
    memcpy(copy, picture, PICTURE);
    strip[kept++] = copy;
    return 0;
}

int main(int argc, char **argv) {
    long frames = argc > 1 ? atol(argv[1]) : 2000;
    uint64_t sum = 0;
    for (long f = 0; f < frames; f++) {
        uint8_t *picture = malloc(PICTURE);
        if (!picture) return 1;
        memset(picture, (int)f, PICTURE);
        if (f % EVERY == EVERY - 1 && keep_preview(picture) < 0) {
            fprintf(stderr, "out of memory at frame %ld\n", f);
            return 1;
        }
        sum += picture[f % PICTURE];
        free(picture);
        AVSOAK_ITERATION(1);
    }
    printf("kept %zu previews, checksum %llu\n", kept, (unsigned long long)sum);
    for (size_t i = 0; i < kept; i++) free(strip[i]);
    free(strip);
    return 0;
}
