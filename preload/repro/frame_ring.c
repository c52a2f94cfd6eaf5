/* A thumbnailer that keeps the last frames it made in a ring of AVFrame pointers, as a
 * preview strip does: each iteration makes a small picture (av_frame_get_buffer, about
 * 22 KB of planes), stores a reference to it in the next slot of the ring, and drops its
 * own.
 *
 * The mistake is in the store: it overwrites the slot without av_frame_free, so the
 * frame struct, its buffer reference and the picture it holds are lost each time the
 * ring wraps. The picture is allocated in make_frame; the reference that lost it was
 * taken in ring_store. -DFIXED: the store frees the slot's old frame first.
 *
 * Usage: frame_ring ITERATIONS [ITERATIONS_PER_SECOND]. One iteration is one frame. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libavutil/frame.h>

#include "avsoak.h"

enum { RING = 8, WIDTH = 128, HEIGHT = 112 };

/* Makes one picture, filled with its number. */
__attribute__((noinline)) static AVFrame *make_frame(long n) {
    AVFrame *frame = av_frame_alloc();
    if (!frame) return NULL;
    frame->format = AV_PIX_FMT_YUV420P;
    frame->width = WIDTH;
    frame->height = HEIGHT;
    if (av_frame_get_buffer(frame, 0) < 0) {
        av_frame_free(&frame);
        return NULL;
    }
    for (int plane = 0; plane < 3; plane++) {
        int rows = plane ? HEIGHT / 2 : HEIGHT;
        memset(frame->data[plane], (int)(n + plane), (size_t)frame->linesize[plane] * rows);
    }
    frame->pts = n;
    return frame;
}

/* Keeps a reference to `frame` in the ring's next slot. */
__attribute__((noinline)) static int ring_store(AVFrame **ring, long n, const AVFrame *frame) {
    AVFrame **slot = &ring[n % RING];
#ifdef FIXED
    av_frame_free(slot);
#endif
    *slot = av_frame_alloc();
    if (!*slot) return -1;
    int err = av_frame_ref(*slot, frame);
    /* Not a tail call: this function stays on the stack of the reference it takes. */
    return err < 0 ? err : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ITERATIONS [ITERATIONS_PER_SECOND]\n", argv[0]);
        return 2;
    }
    long iterations = atol(argv[1]);
    long rate = argc > 2 ? atol(argv[2]) : 0;
    AVFrame *ring[RING] = {0};
    uint64_t sum = 0;
    for (long n = 0; n < iterations; n++) {
        AVFrame *frame = make_frame(n);
        if (!frame || ring_store(ring, n, frame) < 0) {
            fprintf(stderr, "out of memory at frame %ld\n", n);
            return 1;
        }
        sum += frame->data[0][0];
        av_frame_free(&frame);
        AVSOAK_ITERATION(1);
        if (rate > 0) {
            struct timespec wait = {0, 1000000000L / rate};
            nanosleep(&wait, NULL);
        }
    }
    for (int i = 0; i < RING; i++) av_frame_free(&ring[i]);
    printf("made %ld frames, checksum %llu\n", iterations, (unsigned long long)sum);
    return 0;
}
