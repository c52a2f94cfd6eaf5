/* An index that gains one 40-byte entry per frame, grown with realloc in steps of 64
 * entries and never trimmed: a muxer's fragment index for a stream that is never
 * finished. The block count never moves; the bytes grow inside one block.
 * -DFIXED: the index starts again every 64 entries, as a muxer that closes its segment
 * does, so its one block never grows past its first 2,560 bytes.
 *
 * Usage: index_growth FRAMES. One iteration is one frame. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avsoak.h"

enum { STEP = 64, SEGMENT = 64 };

struct entry {
    uint64_t frame, offset, size, pts, flags;
};

static struct entry *entries;
static size_t count, capacity;

/* Adds one entry, growing the index by STEP entries when it is full. */
__attribute__((noinline)) static int index_append(uint64_t frame) {
#ifdef FIXED
    if (count == SEGMENT) count = 0;
#endif
    if (count == capacity) {
        struct entry *grown = realloc(entries, (capacity + STEP) * sizeof *entries);
        if (!grown) return -1;
        entries = grown;
        capacity += STEP;
    }
    entries[count] = (struct entry){frame, frame * 4096, 4096, frame * 3000, 0};
    count++;
    return 0;
}

int main(int argc, char **argv) {
    long frames = argc > 1 ? atol(argv[1]) : 2000;
    uint64_t sum = 0;
    for (long f = 0; f < frames; f++) {
        if (index_append((uint64_t)f) < 0) {
            fprintf(stderr, "out of memory at frame %ld\n", f);
            return 1;
        }
        sum += entries[count - 1].offset;
        AVSOAK_ITERATION(1);
    }
    printf("indexed %zu entries, checksum %llu\n", count, (unsigned long long)sum);
    free(entries);
    return 0;
}
