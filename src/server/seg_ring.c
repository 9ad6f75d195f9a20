/*
 * seg_ring.c - a segment's event ring on the server side: the memfd, the
 * server's writable mapping, and the bell (a socket every ring subscriber
 * watches).  Layout and the lock-free protocol: src/evring.h.
 *
 * The ring is made when the first subscriber asks for one and freed when
 * the last one leaves or the segment is removed (after the REMOVE event
 * and the closed mark).  Subscribers get a read-only reopen of the memfd,
 * which is sealed against growing, shrinking and any new writable mapping
 * (F_SEAL_FUTURE_WRITE, Linux 5.1) once the server has mapped it.
 *
 * The bell is a stream socket pair: subscribers get the end the server
 * writes to, shut for sending, so no subscriber can ring it.  Ringing
 * empties that end (recv with MSG_DONTWAIT: no file flag a subscriber
 * could change makes it block) and sends one byte.  Every ring is thereby
 * an empty-to-readable transition, which wakes every edge-triggered
 * watcher in one system call whatever a subscriber did with its
 * descriptor (reading it only empties it sooner).
 */
#include "server.h"
#include "evring.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#define RING_SLOTS 512

struct mmk__ring {
    int memfd;
    int bell[2];   /* [0] the end subscribers watch (shut for writing), [1] ours */
    void *map;
    size_t len;
};

struct mmk__ring *mmk__ring_new(const char *segname)
{
    struct mmk__ring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->memfd = r->bell[0] = r->bell[1] = -1;
    r->len = mmk__evring_size(RING_SLOTS);
    int fd = mmk__memfd_new("mmkit-events", segname, r->len);
    if (fd < 0)
        goto fail;
    r->memfd = fd;
    if (mmk__sys_mmap(&r->map, NULL, r->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) {
        r->map = NULL;
        goto fail;
    }
    mmk__evring_init(r->map, RING_SLOTS);
    /* No new writable mapping and no write(2) from here on, ours included;
     * kernels before 5.1 lack the seal, and subscribers still only get a
     * read-only descriptor to a 0600 inode. */
    int e = mmk__sys_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE);
    if (e == -EINVAL)
        e = mmk__sys_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    if (e || mmk__sys_fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL))
        goto fail;
    if (mmk__sys_socketpair(AF_UNIX, SOCK_STREAM, 0, r->bell)) {
        r->bell[0] = r->bell[1] = -1;
        goto fail;
    }
    if (mmk__sys_shutdown(r->bell[0], SHUT_WR) || mmk__sys_shutdown(r->bell[1], SHUT_RD))
        goto fail;
    return r;
fail:
    mmk__ring_free(r);
    return NULL;
}

void mmk__ring_free(struct mmk__ring *r)
{
    if (!r)
        return;
    if (r->map) {
        mmk__evring_close(r->map);
        mmk__ring_bell(r);
        mmk__sys_munmap(r->map, r->len);
    }
    for (int i = 0; i < 2; i++)
        if (r->bell[i] >= 0)
            mmk__sys_close(r->bell[i]);
    if (r->memfd >= 0)
        mmk__sys_close(r->memfd);
    free(r);
}

uint64_t mmk__ring_head(const struct mmk__ring *r)
{
    return __atomic_load_n(&((const struct mmk__evring_hdr *)r->map)->head, __ATOMIC_RELAXED);
}

void mmk__ring_bell(struct mmk__ring *r)
{
    char drain[64];
    while (mmk__sys_recv_now(r->bell[0], drain, sizeof drain) == (ssize_t)sizeof drain)
        ;
    char one = 1;
    (void)mmk__sys_send_now(r->bell[1], &one, 1);
}

void mmk__ring_put(struct mmk__ring *r, const mmk_seg_event *ev)
{
    mmk__evring_put(r->map, ev);
    mmk__ring_bell(r);
}

int mmk__ring_handout(const struct mmk__ring *r, int *ring_fd, int *bell_fd)
{
    int fd = mmk__memfd_reopen(r->memfd, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fd;
    int b = mmk__sys_fcntl(r->bell[0], F_DUPFD_CLOEXEC, 0);
    if (b < 0) {
        mmk__sys_close(fd);
        return b;
    }
    *ring_fd = fd;
    *bell_fd = b;
    return 0;
}
