/* A player that restarts its decoder, as ffplay's stream close must do it: each restart
 * starts a decoder thread that waits on its packet queue; closing the stream must abort
 * the queue and wait for the thread. The leaky close frees nothing and forgets the
 * thread, which waits on its old queue for ever: one thread (and its stack) more per
 * restart. -DENDS: the leaky close aborts the queue, so the thread ends, but never joins
 * it: the thread is gone from the process's count, its stack is not. -DFIXED: the close
 * aborts the queue and joins the thread.
 *
 * Usage: decoder_restart RESTARTS [RESTARTS_PER_SECOND]. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "avsoak.h"

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    int packets;
    int abort;
};

struct decoder {
    struct queue queue;
    pthread_t thread;
    long decoded;
};

/* The decoder thread: takes packets until the queue is aborted. */
static void *decode_loop(void *arg) {
    struct decoder *d = arg;
    pthread_mutex_lock(&d->queue.lock);
    for (;;) {
        while (d->queue.packets == 0 && !d->queue.abort) pthread_cond_wait(&d->queue.ready, &d->queue.lock);
        if (d->queue.abort) break;
        d->queue.packets--;
        d->decoded++;
    }
    pthread_mutex_unlock(&d->queue.lock);
    return NULL;
}

/* Opens the stream: a queue and its decoder thread. */
__attribute__((noinline)) static struct decoder *stream_open(void) {
    struct decoder *d = calloc(1, sizeof *d);
    pthread_mutex_init(&d->queue.lock, NULL);
    pthread_cond_init(&d->queue.ready, NULL);
    if (pthread_create(&d->thread, NULL, decode_loop, d) != 0) {
        perror("decoder_restart: pthread_create");
        exit(1);
    }
    return d;
}

static void feed(struct decoder *d, int packets) {
    pthread_mutex_lock(&d->queue.lock);
    d->queue.packets += packets;
    pthread_cond_signal(&d->queue.ready);
    pthread_mutex_unlock(&d->queue.lock);
}

/* Closes the stream. */
static void stream_close(struct decoder *d) {
#ifdef FIXED
    pthread_mutex_lock(&d->queue.lock);
    d->queue.abort = 1;
    pthread_cond_signal(&d->queue.ready);
    pthread_mutex_unlock(&d->queue.lock);
    pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->queue.ready);
    pthread_mutex_destroy(&d->queue.lock);
    free(d);
#elif defined(ENDS)
    pthread_mutex_lock(&d->queue.lock);
    d->queue.abort = 1;
    pthread_cond_signal(&d->queue.ready);
    pthread_mutex_unlock(&d->queue.lock);
    /* never joined: the ended thread keeps its stack; `d` stays allocated for it */
#else
    (void)d; /* the thread still waits on this queue, which stays allocated */
#endif
}

int main(int argc, char **argv) {
    long restarts = argc > 1 ? atol(argv[1]) : 500;
    long per_second = argc > 2 ? atol(argv[2]) : 0;
    for (long r = 0; r < restarts; r++) {
        struct decoder *d = stream_open();
        feed(d, 8);
        stream_close(d);
        if (per_second) {
            struct timespec pause = {0, 1000000000L / per_second};
            nanosleep(&pause, NULL);
        }
        AVSOAK_ITERATION(1);
    }
    printf("restarted the decoder %ld times\n", restarts);
    return 0;
}
