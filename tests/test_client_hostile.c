/* test_client_hostile.c - the client library against a server that is not
 * mmkitd's: whatever listens on the socket path, a ring it hands out can
 * neither crash the client (a ring that may shrink, a ring of garbage) nor
 * hang it (slots that never settle).  A fake server in a thread speaks
 * just enough of the protocol. */
#include "mmkit.h"
#include "evring.h"
#include "proto.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum ring_kind { UNSEALED, GARBAGE, UNSETTLED };

struct fake {
    char path[108];
    int listen_fd;
    enum ring_kind kind;
    int plain_subscribes; /* SUBSCRIBE without the ring flag, seen */
    pthread_t t;
};

static void send_with_fds(int fd, const void *buf, size_t len, int a, int b)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(2 * sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = { (void *)buf, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (a >= 0) {
        int fds[2] = { a, b };
        mh.msg_control = ctl.space;
        mh.msg_controllen = CMSG_SPACE(2 * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, sizeof fds);
    }
    sendmsg(fd, &mh, MSG_NOSIGNAL);
}

/* A ring of the kind under test, and its bell (already rung). */
static void make_ring(enum ring_kind kind, int *ring, int *bell, int *keep)
{
    size_t len = mmk__evring_size(8);
    int fd = memfd_create("fake-ring", MFD_ALLOW_SEALING);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)len), 0);
    uint64_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(m, MAP_FAILED);
    mmk__evring_init(m, 8);
    if (kind == GARBAGE)
        memset(m, 0xa5, len);
    if (kind == UNSETTLED) {
        /* Five events announced, no slot ever stamped. */
        __atomic_store_n(&((struct mmk__evring_hdr *)m)->head, 5, __ATOMIC_RELEASE);
    }
    munmap(m, len);
    if (kind != UNSEALED)
        cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(send(sv[1], "x", 1, 0), 1);
    *ring = fd;
    *bell = sv[0];
    *keep = sv[1];
}

static void *serve(void *arg)
{
    struct fake *f = arg;
    int c = accept(f->listen_fd, NULL, NULL);
    int keep = -1;
    uint8_t buf[MMK__PROTO_MAX], out[512];
    for (ssize_t n; c >= 0 && (n = recv(c, buf, sizeof buf, 0)) > 0;) {
        struct mmk__req q;
        if (mmk__proto_parse_req(buf, (size_t)n, &q) != 0)
            break;
        int len = mmk__proto_put_reply(out, q.id, q.op, 0, 0);
        if (q.op == MMK_OP_SUBSCRIBE && (q.flags & MMK__SUB_RING)) {
            int ring, bell;
            make_ring(f->kind, &ring, &bell, &keep);
            send_with_fds(c, out, (size_t)len, ring, bell);
            close(ring);
            close(bell);
            continue;
        }
        if (q.op == MMK_OP_SUBSCRIBE) /* counted before the client can look */
            __atomic_add_fetch(&f->plain_subscribes, 1, __ATOMIC_SEQ_CST);
        send_with_fds(c, out, (size_t)len, -1, -1);
        if (q.op == MMK_OP_SUBSCRIBE) {
            /* On the socket from now on: one event to show it works. */
            mmk_seg_event ev = { .seq = 7, .kind = MMK_EV_WRITE, .offset = 1, .length = 2 };
            snprintf(ev.info.name, sizeof ev.info.name, "%s", q.name);
            len = mmk__proto_put_event(out, &ev);
            send_with_fds(c, out, (size_t)len, -1, -1);
        }
    }
    if (keep >= 0)
        close(keep);
    if (c >= 0)
        close(c);
    return NULL;
}

static void fake_start(struct fake *f, enum ring_kind kind)
{
    memset(f, 0, sizeof *f);
    f->kind = kind;
    snprintf(f->path, sizeof f->path, "/tmp/mmkit-fake-%d-%d.sock", (int)getpid(), (int)kind);
    unlink(f->path);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->path);
    f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    cr_assert_geq(f->listen_fd, 0);
    cr_assert_eq(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(f->listen_fd, 4), 0);
    cr_assert_eq(pthread_create(&f->t, NULL, serve, f), 0);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->t, NULL);
    close(f->listen_fd);
    unlink(f->path);
}

/* A ring the client must refuse: the subscription falls back to event
 * messages and works. */
static void refused(enum ring_kind kind)
{
    struct fake f;
    fake_start(&f, kind);
    mmk_client *c = mmk_client_connect(f.path, 2000);
    cr_assert_not_null(c);
    cr_assert_eq(mmk_seg_subscribe(c, "seg"), 0);
    cr_assert_eq(__atomic_load_n(&f.plain_subscribes, __ATOMIC_SEQ_CST), 1, "the client kept a ring it should have refused");
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(c, &ev, 2000), 0);
    cr_assert_eq(ev.seq, 7);
    cr_assert_str_eq(ev.info.name, "seg");
    mmk_client_close(c);
    fake_stop(&f);
}

Test(hostile, a_ring_that_could_shrink_is_refused)
{
    refused(UNSEALED);
}

Test(hostile, a_ring_of_garbage_is_refused)
{
    refused(GARBAGE);
}

Test(hostile, slots_that_never_settle_do_not_hang_the_reader, .timeout = 20)
{
    struct fake f;
    fake_start(&f, UNSETTLED);
    mmk_client *c = mmk_client_connect(f.path, 2000);
    cr_assert_not_null(c);
    cr_assert_eq(mmk_seg_subscribe(c, "seg"), 0);
    cr_assert_eq(__atomic_load_n(&f.plain_subscribes, __ATOMIC_SEQ_CST), 0);
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(c, &ev, 500), -EOVERFLOW);
    cr_assert_eq(mmk_seg_next_event(c, &ev, 200), -ETIMEDOUT);
    cr_assert_eq(mmk_client_pending(c), 0);
    mmk_client_close(c);
    fake_stop(&f);
}
