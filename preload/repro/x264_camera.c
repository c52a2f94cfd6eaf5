/* A camera loop over libx264, as the picture-pool incident had it: every frame gets a
 * fresh x264_picture_alloc that is never given back with x264_picture_clean (about
 * 115 KB of planes a frame at 320x240). -DFIXED: one picture, allocated once, reused
 * for every frame and cleaned at the end.
 *
 * Usage: x264_camera FRAMES [FPS]: FPS paces the camera (default: as fast as it encodes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <x264.h>

#include "avsoak.h"

enum { WIDTH = 320, HEIGHT = 240 };

/* Paints a moving gradient into the picture's planes. */
static void paint(x264_picture_t *pic, int frame) {
    for (int y = 0; y < HEIGHT; y++)
        for (int x = 0; x < WIDTH; x++)
            pic->img.plane[0][y * pic->img.i_stride[0] + x] = (uint8_t)(x + y + frame);
    for (int p = 1; p < 3; p++)
        memset(pic->img.plane[p], 128, (size_t)pic->img.i_stride[p] * HEIGHT / 2);
}

/* The leak: the picture for this frame, allocated here and never cleaned. */
__attribute__((noinline)) static x264_picture_t *camera_capture(x264_picture_t *pic, int frame) {
#ifndef FIXED
    if (x264_picture_alloc(pic, X264_CSP_I420, WIDTH, HEIGHT) < 0) {
        fprintf(stderr, "x264_picture_alloc failed\n");
        exit(1);
    }
#endif
    paint(pic, frame);
    pic->i_pts = frame;
    return pic;
}

int main(int argc, char **argv) {
    int frames = argc > 1 ? atoi(argv[1]) : 200;
    int fps = argc > 2 ? atoi(argv[2]) : 0;
    x264_param_t param;
    if (x264_param_default_preset(&param, "ultrafast", "zerolatency") < 0) return 1;
    param.i_width = WIDTH;
    param.i_height = HEIGHT;
    param.i_csp = X264_CSP_I420;
    param.i_threads = 1;
    param.i_fps_num = 30;
    param.i_fps_den = 1;
    param.b_repeat_headers = 1;
    if (x264_param_apply_profile(&param, "baseline") < 0) return 1;
    x264_t *encoder = x264_encoder_open(&param);
    if (!encoder) return 1;
    x264_picture_t pic, out;
    x264_picture_init(&pic);
#ifdef FIXED
    if (x264_picture_alloc(&pic, X264_CSP_I420, WIDTH, HEIGHT) < 0) return 1;
#endif
    size_t bytes = 0;
    for (int f = 0; f < frames; f++) {
        x264_nal_t *nals;
        int count;
        int size = x264_encoder_encode(encoder, &nals, &count, camera_capture(&pic, f), &out);
        if (size < 0) return 1;
        bytes += (size_t)size;
        AVSOAK_ITERATION(1);
        if (fps > 0) {
            struct timespec wait = {0, 1000000000L / fps};
            nanosleep(&wait, NULL);
        }
    }
#ifdef FIXED
    x264_picture_clean(&pic);
#endif
    x264_encoder_close(encoder);
    printf("encoded %d frames, %zu bytes\n", frames, bytes);
    return 0;
}
