/* A frame pool whose buffers are mapped, as hardware and zero-copy pipelines map their
 * frames: each frame's 256 KiB buffer comes from mmap, is wrapped in an AVBufferRef with
 * av_buffer_create, filled, and released with av_buffer_unref, whose free callback must
 * unmap it. The leaky callback forgets to: 256 KiB of mapping (and of resident memory,
 * since the frame was written) lost per frame, while the heap stays flat. -DFIXED: the
 * callback unmaps.
 *
 * Usage: mapped_pool FRAMES [FPS]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <libavutil/buffer.h>

#include "avsoak.h"

enum { FRAME_BYTES = 256 * 1024 };

/* The pool's free callback. */
static void release_frame(void *opaque, uint8_t *data) {
    (void)opaque;
#ifdef FIXED
    munmap(data, FRAME_BYTES);
#else
    (void)data; /* the mapping stays */
#endif
}

/* One frame from the pool: a mapped buffer, wrapped for FFmpeg. */
__attribute__((noinline)) static AVBufferRef *map_frame(void) {
    void *data = mmap(NULL, FRAME_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) {
        perror("mapped_pool: mmap");
        exit(1);
    }
    AVBufferRef *frame = av_buffer_create(data, FRAME_BYTES, release_frame, NULL, 0);
    if (!frame) {
        fprintf(stderr, "mapped_pool: av_buffer_create failed\n");
        exit(1);
    }
    return frame;
}

int main(int argc, char **argv) {
    long frames = argc > 1 ? atol(argv[1]) : 300;
    long fps = argc > 2 ? atol(argv[2]) : 0;
    uint64_t checksum = 0;
    for (long f = 0; f < frames; f++) {
        AVBufferRef *frame = map_frame();
        memset(frame->data, (int)f, FRAME_BYTES);
        checksum += frame->data[f % FRAME_BYTES];
        av_buffer_unref(&frame);
        if (fps) {
            struct timespec pause = {0, 1000000000L / fps};
            nanosleep(&pause, NULL);
        }
        AVSOAK_ITERATION(1);
    }
    printf("%ld frames, checksum %llu\n", frames, (unsigned long long)checksum);
    return 0;
}
