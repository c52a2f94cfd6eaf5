/* A player's read and decode loop over a packet queue, as the player-queue incident had
 * it, in one thread: each segment seeks back to the start, flushes the queue and the
 * decoder, reads 12 video packets into the queue and decodes 8 of them, so 4 are still
 * queued when the next seek flushes.
 *
 * The mistake is in the flush: it frees each queued AVPacket with av_free, which frees
 * the struct and not the payload it references, so every flush loses the data of the
 * packets it drops. -DFIXED: the flush takes each packet out with av_packet_free, which
 * unreferences the payload first.
 *
 * Usage: packet_queue FILE SEGMENTS [SEGMENTS_PER_SECOND]. One iteration is one segment,
 * marked after its decode, as 8 frames (the packets given to the decoder). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "avsoak.h"

enum { READ_AHEAD = 12, DECODE = 8 };

struct node {
    AVPacket *pkt;
    struct node *next;
};

struct queue {
    struct node *head, *tail;
    int count;
};

/* Queues a reference to `pkt`'s payload. */
static int queue_put(struct queue *q, AVPacket *pkt) {
    struct node *n = av_mallocz(sizeof *n);
    if (!n) return AVERROR(ENOMEM);
    n->pkt = av_packet_alloc();
    if (!n->pkt) {
        av_free(n);
        return AVERROR(ENOMEM);
    }
    av_packet_move_ref(n->pkt, pkt);
    if (q->tail) q->tail->next = n;
    else q->head = n;
    q->tail = n;
    q->count++;
    return 0;
}

/* Takes the oldest packet out of the queue, or NULL when it is empty. */
static AVPacket *queue_get(struct queue *q) {
    struct node *n = q->head;
    if (!n) return NULL;
    q->head = n->next;
    if (!q->head) q->tail = NULL;
    q->count--;
    AVPacket *pkt = n->pkt;
    av_free(n);
    return pkt;
}

/* Drops every queued packet, as a seek does. */
__attribute__((noinline)) static void queue_flush(struct queue *q) {
    AVPacket *pkt;
    while ((pkt = queue_get(q))) {
#ifdef FIXED
        av_packet_free(&pkt);
#else
        av_free(pkt);
#endif
    }
}

/* The read thread's step: fills the queue with the next video packets. */
__attribute__((noinline)) static int read_ahead(AVFormatContext *fmt, int video, struct queue *q, AVPacket *pkt) {
    while (q->count < READ_AHEAD) {
        int err = av_read_frame(fmt, pkt);
        if (err < 0) return err;
        if (pkt->stream_index != video) {
            av_packet_unref(pkt);
            continue;
        }
        if ((err = queue_put(q, pkt)) < 0) return err;
    }
    return 0;
}

/* The decode thread's step: decodes `count` queued packets. Returns the frames out. */
static int decode(AVCodecContext *dec, struct queue *q, AVFrame *frame, int count) {
    int frames = 0;
    for (int i = 0; i < count; i++) {
        AVPacket *pkt = queue_get(q);
        if (!pkt) break;
        int err = avcodec_send_packet(dec, pkt);
        av_packet_free(&pkt);
        if (err < 0) return err;
        while ((err = avcodec_receive_frame(dec, frame)) >= 0) {
            frames++;
            av_frame_unref(frame);
        }
        if (err != AVERROR(EAGAIN)) return err;
    }
    return frames;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE SEGMENTS [SEGMENTS_PER_SECOND]\n", argv[0]);
        return 2;
    }
    long segments = atol(argv[2]);
    long rate = argc > 3 ? atol(argv[3]) : 0;
    AVFormatContext *fmt = NULL;
    int err = avformat_open_input(&fmt, argv[1], NULL, NULL);
    if (err >= 0) err = avformat_find_stream_info(fmt, NULL);
    if (err < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], av_err2str(err));
        return 2;
    }
    const AVCodec *codec = NULL;
    int video = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (video < 0) {
        fprintf(stderr, "%s: no video stream\n", argv[1]);
        return 2;
    }
    AVCodecContext *dec = avcodec_alloc_context3(codec);
    if (!dec || avcodec_parameters_to_context(dec, fmt->streams[video]->codecpar) < 0) return 1;
    dec->thread_count = 1;
    if ((err = avcodec_open2(dec, codec, NULL)) < 0) {
        fprintf(stderr, "cannot open the %s decoder: %s\n", codec->name, av_err2str(err));
        return 1;
    }
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    struct queue q = {0};
    long decoded = 0;
    for (long s = 0; s < segments; s++) {
        /* A seek: back to the start, the queue and the decoder flushed. */
        if ((err = av_seek_frame(fmt, video, 0, AVSEEK_FLAG_BACKWARD)) < 0) break;
        queue_flush(&q);
        avcodec_flush_buffers(dec);
        if ((err = read_ahead(fmt, video, &q, pkt)) < 0) break;
        int frames = decode(dec, &q, frame, DECODE);
        if ((err = frames) < 0) break;
        decoded += frames;
        AVSOAK_ITERATION(DECODE);
        if (rate > 0) {
            struct timespec wait = {0, 1000000000L / rate};
            nanosleep(&wait, NULL);
        }
        err = 0;
    }
    if (err < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], av_err2str(err));
        return 1;
    }
    queue_flush(&q);
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    printf("played %ld segments, %ld frames decoded\n", segments, decoded);
    return 0;
}
