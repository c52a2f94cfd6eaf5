/* A slow growth kept reachable: every frame appends a 64-byte record to a history
 * list that nothing ever trims (-DFIXED: the list keeps the last 32). The list is
 * freed at exit, so a leak checker that looks at exit sees nothing lost.
 *
 * Usage: list_growth FRAMES [MICROSECONDS_PER_FRAME [PASSES [MARK]]]: the frame's pace
 * (busy wait), how many checksum passes it makes over its 4 KiB scratch buffer (CPU work
 * that a slower tool slows, unlike the wait; default 0), and whether it calls
 * AVSOAK_ITERATION (default 1; 0: linked, never called).
 *
 * With -DAVSOAK_LIBRARY it is a shared library without `main`: `list_growth_frame` is
 * one frame's work, for a host that drives the frames itself (a test soaks the same
 * code in-process). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avsoak.h"

struct record {
    struct record *next;
    uint64_t frame;
    uint8_t stats[48];
};

static struct record *history;
static size_t kept;

#ifndef AVSOAK_LIBRARY
static void busy(long us) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000L + (now.tv_nsec - start.tv_nsec) / 1000 < us);
}
#endif

/* Remembers one frame's statistics. */
__attribute__((noinline)) static void remember_frame_stats(uint64_t frame) {
    struct record *r = malloc(sizeof *r);
    r->next = history;
    r->frame = frame;
    memset(r->stats, (int)frame, sizeof r->stats);
    history = r;
    kept++;
#ifdef FIXED
    if (kept > 32) {
        struct record *p = history;
        for (int i = 0; i < 31; i++) p = p->next;
        struct record *old = p->next;
        p->next = NULL;
        while (old) {
            struct record *n = old->next;
            free(old);
            old = n;
            kept--;
        }
    }
#endif
}

/* One frame: a 4 KiB scratch buffer used (`passes` checksum passes over it) and freed,
 * and the frame's statistics remembered. Returns the checksum. */
uint64_t list_growth_frame(uint64_t frame, long passes) {
    uint64_t checksum = 0;
    char *scratch = malloc(4096);
    memset(scratch, (int)frame, 4096);
    for (long p = 0; p < passes; p++)
        for (int i = 0; i < 4096; i++) checksum = checksum * 31 + (uint8_t)scratch[i];
    remember_frame_stats(frame);
    free(scratch);
    return checksum;
}

#ifndef AVSOAK_LIBRARY
int main(int argc, char **argv) {
    long frames = argc > 1 ? atol(argv[1]) : 2000;
    long us = argc > 2 ? atol(argv[2]) : 0;
    long passes = argc > 3 ? atol(argv[3]) : 0;
    int mark = argc > 4 ? atoi(argv[4]) : 1;
    uint64_t checksum = 0;
    for (long f = 0; f < frames; f++) {
        checksum ^= list_growth_frame((uint64_t)f, passes);
        if (us) busy(us);
        if (mark) AVSOAK_ITERATION(1);
    }
    printf("kept %zu records, checksum %llx\n", kept, (unsigned long long)checksum);
    while (history) {
        struct record *n = history->next;
        free(history);
        history = n;
    }
    return 0;
}
#endif
