/*
 * client.h - the client library's connection object, shared by client.c
 * (connecting, requests, replies) and client_ring.c (event rings, waiting
 * for the next message).
 */
#ifndef MMK_CLIENT_H
#define MMK_CLIENT_H

#include "mmkit.h"
#include "proto.h"

#include <stddef.h>
#include <stdint.h>

struct mmk__queued {
    struct mmk__queued *next;
    mmk_message m;
};

/* A subscription whose events come through the segment's event ring. */
struct mmk__ring_sub {
    char name[MMK_SEG_NAME_MAX + 1];
    void *map;      /* mapped PROT_READ */
    size_t len;
    int bell;       /* watched edge-triggered in the client's epoll */
    uint64_t pos;   /* the next ring position to read */
};

struct mmk_client {
    int fd;                 /* the socket */
    int ep;                 /* what mmk_client_fd returns: the socket and every bell */
    int timeout_ms;
    int use_rings;          /* ask for event rings ($MMKIT_EVENT_RING=0: never) */
    int lazy;               /* a ring event was taken since the bells were last reset */
    uint32_t next_id;
    uint32_t ring_id;       /* id of the ring SUBSCRIBE in flight, 0 if none */
    int ring_fd[2];         /* its descriptors (ring, bell), taken by mmk_seg_subscribe */
    uint64_t ring_pos;      /* and where the subscription starts */
    struct mmk__ring_sub *rings;
    size_t nrings, caprings;
    struct mmk__queued *head, *tail;
    size_t pending;
    uint8_t *buf;           /* MMK__PROTO_MAX bytes, apart: a process with many
                               connections keeps their hot fields dense */
};

int64_t mmk__client_now_ms(void);
int64_t mmk__client_deadline(const mmk_client *c, int timeout_ms);
int  mmk__client_wait(int fd, short events, int64_t deadline);
int  mmk__client_read(mmk_client *c, int64_t deadline, int fd[2]);
int  mmk__client_message(mmk_client *c, size_t len, int fd[2], mmk_message *m,
                         struct mmk__reply *raw);
void mmk__client_close_fds(int fd[2]);
int  mmk__client_enqueue(mmk_client *c, const mmk_message *m);
int  mmk__client_dequeue(mmk_client *c, unsigned kind, mmk_message *m);

/* client_ring.c */
/* Map the ring c->ring_fd names for subscription name and watch its bell.
 * Takes the descriptors whatever happens. */
int  mmk__client_ring_attach(mmk_client *c, const char *name);
/* Forget name's ring (1 if there was one). */
int  mmk__client_ring_detach(mmk_client *c, const char *name);
void mmk__client_ring_detach_all(mmk_client *c);
/* Events waiting in the rings. */
size_t mmk__client_ring_ready(const mmk_client *c);

#endif
