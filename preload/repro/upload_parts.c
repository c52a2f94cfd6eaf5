/* A multipart upload over loopback, as the object-storage incident had it: every part
 * opens a connection of its own, sends the part and closes it; a part the server
 * refuses (every second one here) takes the abort path, which returns without closing
 * its connection: one descriptor lost per aborted part. -DFIXED: the abort path closes
 * it too.
 *
 * The "server" is a listening socket on 127.0.0.1 in the same process, accepting each
 * connection, reading the part and closing its own side.
 *
 * Usage: upload_parts PARTS [PARTS_PER_SECOND]: the pace (default: as fast as it can). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "avsoak.h"

enum { PART_BYTES = 4096 };

static int listener;
static struct sockaddr_in address;

static void start_server(void) {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(listener, 64) != 0 || getsockname(listener, (struct sockaddr *)&address, &length) != 0) {
        perror("upload_parts: loopback server");
        exit(1);
    }
}

/* The server's side of one part: accept, read what came, close. */
static void serve_one(void) {
    char buffer[PART_BYTES];
    int connection = accept(listener, NULL, NULL);
    if (connection < 0) return;
    while (read(connection, buffer, sizeof buffer) > 0) {
    }
    close(connection);
}

/* Uploads one part over a connection of its own; part numbers the server refuses take
 * the abort path. */
__attribute__((noinline)) static int upload_part(int part, const char *data) {
    int connection = socket(AF_INET, SOCK_STREAM, 0);
    if (connection < 0 || connect(connection, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("upload_parts: connect");
        exit(1);
    }
    if (part % 2 == 1) {
        /* The server refused the part: abort it. */
        shutdown(connection, SHUT_WR);
        serve_one();
#ifdef FIXED
        close(connection);
#endif
        return -1;
    }
    if (write(connection, data, PART_BYTES) != PART_BYTES) perror("upload_parts: write");
    shutdown(connection, SHUT_WR);
    serve_one();
    close(connection);
    return 0;
}

int main(int argc, char **argv) {
    long parts = argc > 1 ? atol(argv[1]) : 2000;
    long per_second = argc > 2 ? atol(argv[2]) : 0;
    static char data[PART_BYTES];
    memset(data, 'p', sizeof data);
    start_server();
    int aborted = 0;
    for (long part = 0; part < parts; part++) {
        if (upload_part((int)part, data) != 0) aborted++;
        if (per_second) {
            struct timespec pause = {0, 1000000000L / per_second};
            nanosleep(&pause, NULL);
        }
        AVSOAK_ITERATION(1);
    }
    printf("uploaded %ld parts, %d aborted\n", parts - aborted, aborted);
    close(listener);
    return 0;
}
