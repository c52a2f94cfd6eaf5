/* A tool that counts the video packets of an MP4 it holds in memory, through FFmpeg's
 * custom I/O, as the avio-memory incident had it. Each file gets a 64 KiB buffer from
 * av_malloc, wrapped by avio_alloc_context with read and seek callbacks over the memory.
 *
 * The mistake is in the teardown. Probing the format makes libavformat replace the
 * buffer it was given (and free the old one), so the buffer to free at the end is
 * avio->buffer, not the pointer that was passed in. This build frees the pointer it
 * passed in, and so loses the buffer libavformat holds, once per file. The original
 * also freed that old pointer a second time; glibc may or may not abort on such a double
 * free, and an abort would hide the leak, so this reproduction frees it only while it is
 * still the buffer in use. -DFIXED: av_freep(&avio->buffer), then avio_context_free.
 *
 * Usage: avio_reader FILE FILES [FILES_PER_SECOND]. One iteration is one file read.
 * Exits 3 when probing did not replace the buffer: the mistake would then not leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libavformat/avformat.h>
#include <libavutil/mem.h>

#include "avsoak.h"

enum { BUFFER_SIZE = 64 * 1024 };

struct memory {
    const uint8_t *data;
    int64_t size;
    int64_t pos;
};

static int read_packet(void *opaque, uint8_t *buf, int size) {
    struct memory *m = opaque;
    int64_t left = m->size - m->pos;
    if (left <= 0) return AVERROR_EOF;
    if (size > left) size = (int)left;
    memcpy(buf, m->data + m->pos, (size_t)size);
    m->pos += size;
    return size;
}

static int64_t seek(void *opaque, int64_t offset, int whence) {
    struct memory *m = opaque;
    int64_t to;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return m->size;
    case SEEK_SET: to = offset; break;
    case SEEK_CUR: to = m->pos + offset; break;
    case SEEK_END: to = m->size + offset; break;
    default: return AVERROR(EINVAL);
    }
    if (to < 0 || to > m->size) return AVERROR(EINVAL);
    m->pos = to;
    return to;
}

/* Frees what the reader allocated for one file. */
static void teardown(AVIOContext *avio, uint8_t *passed) {
#ifdef FIXED
    (void)passed;
    av_freep(&avio->buffer);
#else
    if (avio->buffer == passed) av_free(passed);
#endif
    avio_context_free(&avio);
}

/* Reads one file from memory and returns its video packets, or a negative AVERROR.
 * Sets *swapped when libavformat replaced the buffer it was given. */
__attribute__((noinline)) static int read_from_memory(const uint8_t *data, int64_t size, int *swapped) {
    struct memory m = {data, size, 0};
    uint8_t *buffer = av_malloc(BUFFER_SIZE);
    if (!buffer) return AVERROR(ENOMEM);
    AVIOContext *avio = avio_alloc_context(buffer, BUFFER_SIZE, 0, &m, read_packet, NULL, seek);
    if (!avio) {
        av_free(buffer);
        return AVERROR(ENOMEM);
    }
    AVFormatContext *fmt = avformat_alloc_context();
    if (!fmt) {
        teardown(avio, buffer);
        return AVERROR(ENOMEM);
    }
    fmt->pb = avio;
    int packets = 0;
    int err = avformat_open_input(&fmt, NULL, NULL, NULL); /* frees fmt on failure */
    if (err >= 0) err = avformat_find_stream_info(fmt, NULL);
    if (err >= 0) {
        AVPacket *pkt = av_packet_alloc();
        if (!pkt) err = AVERROR(ENOMEM);
        while (pkt && (err = av_read_frame(fmt, pkt)) >= 0) {
            if (fmt->streams[pkt->stream_index]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) packets++;
            av_packet_unref(pkt);
        }
        av_packet_free(&pkt);
        if (err == AVERROR_EOF) err = 0;
    }
    avformat_close_input(&fmt); /* leaves the custom AVIOContext to its owner */
    *swapped = avio->buffer != buffer;
    teardown(avio, buffer);
    return err < 0 ? err : packets;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE FILES [FILES_PER_SECOND]\n", argv[0]);
        return 2;
    }
    long files = atol(argv[2]);
    long rate = argc > 3 ? atol(argv[3]) : 0;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)size);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read %ld bytes\n", argv[1], size);
        return 2;
    }
    fclose(f);
    long total = 0;
    for (long i = 0; i < files; i++) {
        int swapped = 0;
        int packets = read_from_memory(data, size, &swapped);
        if (packets < 0) {
            fprintf(stderr, "%s: %s\n", argv[1], av_err2str(packets));
            return 1;
        }
#ifndef FIXED
        if (!swapped) {
            fprintf(stderr, "probing did not replace the AVIO buffer: nothing to reproduce\n");
            return 3;
        }
#endif
        total += packets;
        AVSOAK_ITERATION(1);
        if (rate > 0) {
            struct timespec wait = {0, 1000000000L / rate};
            nanosleep(&wait, NULL);
        }
    }
    free(data);
    printf("read %ld files, %ld video packets\n", files, total);
    return 0;
}
