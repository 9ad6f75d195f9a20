/*
 * http_request.c - libFuzzer target: whatever bytes a client sends to the
 * HTTP feed.  Each input is one TCP connection to a feed on loopback (the
 * real accept path, libmicrohttpd's parser, the routes, the event streams):
 * the bytes are sent, the sending side is shut, the feed runs until it
 * closes the connection, and an event is published midway so that a
 * stream the input opened has something to send.  What must hold: no
 * crash, no sanitizer report, no leak, and the connection count goes back
 * to zero (nothing is left behind).
 */
#include "http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct mmk__http *feed;
static int port;

static int src_each(void *ctx, int (*emit)(void *, const struct mmk__http_seg *), void *arg)
{
    (void)ctx;
    struct mmk__http_seg a = { .name = "alpha", .size = 4096, .mode = 0644, .version = 3 };
    struct mmk__http_seg b = { .name = "hidden", .size = 64, .mode = 0600 };
    int r = emit(arg, &a);
    return r ? r : emit(arg, &b);
}

static int src_find(void *ctx, const char *name, struct mmk__http_seg *out)
{
    (void)ctx;
    if (strcmp(name, "alpha") != 0)
        return -ENOENT;
    *out = (struct mmk__http_seg){ .name = "alpha", .size = 4096, .mode = 0644, .version = 3 };
    return 0;
}

static void publish(void)
{
    struct mmk__http_event ev = { .kind = MMK__HTTP_WRITE, .offset = 1, .length = 2 };
    ev.seg = (struct mmk__http_seg){ .name = "alpha", .size = 4096, .mode = 0644, .version = 4 };
    mmk__http_publish(feed, &ev);
}

static void setup(void)
{
    struct mmk__http_config cfg = { .addr = "127.0.0.1:0", .timeout_s = 1, .backlog = 8,
                                    .heartbeat_ms = 50 };
    struct mmk__http_source src = { NULL, src_each, src_find };
    feed = mmk__http_open(&cfg, &src);
    if (!feed) {
        perror("mmk__http_open");
        abort();
    }
    sscanf(mmk__http_url(feed), "http://127.0.0.1:%d/", &port);
    for (int i = 0; i < 12; i++)
        publish(); /* more than the backlog: resumes from old ids reset */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!feed)
        setup();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        abort();
    /* Close with a reset: no TIME_WAIT pile-up over millions of runs. */
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    fcntl(fd, F_SETFL, O_NONBLOCK);

    size_t sent = 0;
    char buf[65536];
    int closed = 0;
    for (int turn = 0; turn < 30 && !closed; turn++) {
        if (sent < size) {
            ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            if (sent == size)
                shutdown(fd, SHUT_WR);
        } else if (size == 0 && turn == 0) {
            shutdown(fd, SHUT_WR);
        }
        if (turn == 3)
            publish();
        mmk__http_run(feed);
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0)
                continue;
            if (n == 0 || errno != EAGAIN)
                closed = 1;
            break;
        }
        if (!closed && turn > 4)
            poll(NULL, 0, 1);
    }
    close(fd);
    /* A stream the client left behind ends at the next event. */
    for (int turn = 0; turn < 500 && feed->conns; turn++) {
        if (turn % 5 == 0)
            publish();
        mmk__http_run(feed);
        poll(NULL, 0, 1);
    }
    if (feed->conns) {
        fprintf(stderr, "http_request: %u connections left behind\n", feed->conns);
        abort();
    }
    return 0;
}
