/* test_server_ring.c - events through a segment's event ring: what a
 * subscriber's descriptors cannot do, the pollable descriptor going quiet,
 * ring and socket subscribers seeing the same events, and the ring's
 * lifetime (unsubscribe, remove, last reader). */
#include "mmkit.h"
#include "evring.h"
#include "proto.h"
#include "server_util.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdint.h>
#include <sys/mman.h>

static struct test_server srv;

static void start(void)
{
    memset(&srv, 0, sizeof srv);
    cr_assert_eq(ts_start(&srv), 0, "server did not start");
}

static void stop(void)
{
    unsetenv("MMKIT_EVENT_RING");
    ts_cleanup(&srv);
}

TestSuite(ring, .init = start, .fini = stop, .timeout = 60);

/* A client whose subscriptions use rings (ring = 1) or socket messages. */
static mmk_client *client(int ring)
{
    setenv("MMKIT_EVENT_RING", ring ? "1" : "0", 1);
    mmk_client *c = mmk_client_connect(srv.sock, 5000);
    unsetenv("MMKIT_EVENT_RING");
    cr_assert_not_null(c, "connect: %s", strerror(errno));
    return c;
}

/* Send one request on a raw connection and wait for its reply, taking up
 * to two descriptors.  Returns the reply's status; *version its version. */
static int raw_call(int fd, const struct mmk__req *q, int fds[2], uint64_t *version)
{
    uint8_t buf[MMK__PROTO_MAX];
    int len = mmk__proto_put_req(buf, q);
    cr_assert_gt(len, 0);
    cr_assert_eq(send(fd, buf, (size_t)len, 0), len);
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = { buf, sizeof buf };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                         .msg_controllen = sizeof ctl.space };
    struct pollfd p = { .fd = fd, .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 5000), 1, "no reply");
    ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    cr_assert_gt(n, 0);
    fds[0] = fds[1] = -1;
    int k = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
        for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++, k++)
            memcpy(k < 2 ? &fds[k] : &(int){ 0 }, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    struct mmk__reply r;
    cr_assert_eq(mmk__proto_parse_reply(buf, (size_t)n, &r), 0);
    cr_assert_eq(r.id, q->id);
    if (version)
        *version = r.version;
    return r.status;
}

/* A raw connection that said hello and asked to subscribe to name with a
 * ring; fds get what came with the reply. */
static int raw_subscribe(const char *name, int fds[2], uint64_t *start)
{
    int fd = ts_raw(&srv);
    cr_assert_geq(fd, 0);
    struct mmk__req q = { .op = MMK__T_HELLO, .id = 1 };
    int none[2];
    cr_assert_eq(raw_call(fd, &q, none, NULL), 0);
    memset(&q, 0, sizeof q);
    q.op = MMK_OP_SUBSCRIBE;
    q.id = 2;
    q.flags = MMK__SUB_RING;
    q.namelen = strlen(name);
    memcpy(q.name, name, q.namelen);
    cr_assert_eq(raw_call(fd, &q, fds, start), 0);
    return fd;
}

/* The same, and the reply must carry the ring and its bell. */
static int raw_ring(const char *name, int fds[2], uint64_t *start)
{
    int fd = raw_subscribe(name, fds, start);
    cr_assert_geq(fds[0], 0, "no ring descriptor");
    cr_assert_geq(fds[1], 0, "no bell descriptor");
    return fd;
}

struct ro_check {
    int ring, bell;
};

/* The checks a subscriber of any uid must fail; returns 0 or a line. */
static int ring_is_read_only(void *arg)
{
    const struct ro_check *k = arg;
    struct stat st;
    CHILD_CHECK(fstat(k->ring, &st) == 0 && (size_t)st.st_size >= mmk__evring_size(1));
    size_t len = (size_t)st.st_size;
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, k->ring, 0);
    CHILD_CHECK(p != MAP_FAILED);
    CHILD_CHECK(mmk__evring_check(p, len) == 0);
    CHILD_CHECK(mprotect(p, len, PROT_READ | PROT_WRITE) != 0);
    munmap(p, len);
    CHILD_CHECK(mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, k->ring, 0) == MAP_FAILED);
    CHILD_CHECK(write(k->ring, "x", 1) < 0);
    CHILD_CHECK(ftruncate(k->ring, 0) < 0);
    /* Reopening read-write: refused to other uids (0600); where allowed
     * (the server's uid, root), the seals still refuse every write. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", k->ring);
    int rw = open(path, O_RDWR);
    if (rw >= 0) {
        CHILD_CHECK(pwrite(rw, "x", 1, 0) < 0);
        CHILD_CHECK(mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0) == MAP_FAILED);
        CHILD_CHECK(ftruncate(rw, (off_t)len * 2) < 0);
        close(rw);
    }
    /* No subscriber can ring the bell for the others. */
    CHILD_CHECK(send(k->bell, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EPIPE);
    return 0;
}

Test(ring, descriptors_cannot_write_the_ring_or_ring_the_bell)
{
    mmk_client *c = client(1);
    cr_assert_eq(mmk_seg_create(c, "ro", 4096, 0644), 0);
    int fds[2];
    int fd = raw_ring("ro", fds, NULL);
    struct ro_check k = { fds[0], fds[1] };
    cr_assert_eq(ring_is_read_only(&k), 0, "as the creator's uid");
    int r = ts_as_nobody(ring_is_read_only, &k);
    if (r == 250)
        cr_log_warn("cannot become nobody here: the other-uid half did not run");
    else
        cr_assert_eq(r, 0, "as another uid");
    close(fds[0]);
    close(fds[1]);
    close(fd);
    mmk_client_close(c);
}

Test(ring, raw_reader_sees_events_from_the_position_it_was_given)
{
    mmk_client *c = client(1);
    cr_assert_eq(mmk_seg_create(c, "pos", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_publish(c, "pos", 0, 1, NULL), 0); /* before: not for us */
    int fds[2];
    uint64_t pos;
    int fd = raw_ring("pos", fds, &pos);
    struct stat st;
    cr_assert_eq(fstat(fds[0], &st), 0);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fds[0], 0);
    cr_assert_neq(p, MAP_FAILED);
    mmk_seg_event ev;
    uint64_t at = pos;
    cr_assert_eq(mmk__evring_read(p, &at, &ev), 0, "an event from before the subscription");
    cr_assert_eq(mmk_seg_publish(c, "pos", 8, 16, NULL), 0);
    cr_assert_eq(mmk__evring_read(p, &at, &ev), 1);
    cr_assert_eq(ev.kind, MMK_EV_WRITE);
    cr_assert_eq(ev.offset, 8);
    cr_assert_eq(ev.length, 16);
    cr_assert_eq(ev.info.version, 2);
    cr_assert_eq(ev.info.subscribers, 1);
    /* The bell rang: readable now. */
    struct pollfd pb = { .fd = fds[1], .events = POLLIN };
    cr_assert_eq(poll(&pb, 1, 2000), 1);
    munmap(p, (size_t)st.st_size);
    close(fds[0]);
    close(fds[1]);
    close(fd);
    mmk_client_close(c);
}

Test(ring, pollable_descriptor_wakes_on_publish_and_goes_quiet)
{
    mmk_client *pub = client(1), *sub = client(1);
    cr_assert_eq(mmk_seg_create(pub, "bell", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_subscribe(sub, "bell"), 0);
    struct pollfd p = { .fd = mmk_client_fd(sub), .events = POLLIN };
    cr_assert_eq(poll(&p, 1, 0), 0, "readable before anything happened");
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 3; i++)
            cr_assert_eq(mmk_seg_publish(pub, "bell", (uint64_t)i, 1, NULL), 0);
        cr_assert_eq(poll(&p, 1, 2000), 1, "round %d: no wake-up", round);
        cr_assert_eq(mmk_client_pending(sub), 3);
        int got = 0, wakes = 0;
        /* A poll loop: take until nothing, poll again; it must go quiet. */
        for (;;) {
            mmk_seg_event ev;
            while (mmk_seg_next_event(sub, &ev, 0) == 0) {
                cr_assert_eq(ev.offset, (uint64_t)got);
                got++;
            }
            if (poll(&p, 1, 50) == 0)
                break;
            cr_assert_lt(++wakes, 3, "the descriptor stays readable with nothing to take");
        }
        cr_assert_eq(got, 3);
        cr_assert_eq(mmk_client_pending(sub), 0);
    }
    mmk_client_close(sub);
    mmk_client_close(pub);
}

struct seen {
    uint64_t seq[64], version[64], offset[64];
    int n;
};

static void drain(mmk_client *c, struct seen *s, int want)
{
    while (s->n < want) {
        mmk_seg_event ev;
        int e = mmk_seg_next_event(c, &ev, 5000);
        cr_assert_eq(e, 0, "after %d events: %s", s->n, mmk_strerror(e));
        if (ev.kind != MMK_EV_WRITE)
            continue;
        s->seq[s->n] = ev.seq;
        s->version[s->n] = ev.info.version;
        s->offset[s->n] = ev.offset;
        s->n++;
    }
}

Test(ring, ring_socket_and_all_subscribers_see_the_same_events_once)
{
    mmk_client *pub = client(1), *r = client(1), *s = client(0), *both = client(1);
    cr_assert_eq(mmk_seg_create(pub, "same", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_subscribe(r, "same"), 0);
    cr_assert_eq(mmk_seg_subscribe(s, "same"), 0);
    cr_assert_eq(mmk_seg_subscribe(both, "same"), 0);
    cr_assert_eq(mmk_seg_subscribe(both, NULL), 0); /* every segment, too */
    for (int i = 0; i < 40; i++)
        cr_assert_eq(mmk_seg_publish(pub, "same", (uint64_t)i, 1, NULL), 0);
    struct seen a = { 0 }, b = { 0 }, c = { 0 };
    drain(r, &a, 40);
    drain(s, &b, 40);
    drain(both, &c, 40);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(a.seq[i], b.seq[i]);
        cr_assert_eq(a.seq[i], c.seq[i], "event %d twice or missing", i);
        cr_assert_eq(a.version[i], b.version[i]);
        cr_assert_eq(a.offset[i], (uint64_t)i);
        cr_assert_eq(c.offset[i], (uint64_t)i);
        if (i)
            cr_assert_gt(a.seq[i], a.seq[i - 1]);
    }
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(both, &ev, 200), -ETIMEDOUT, "a duplicate arrived");
    mmk_client_close(both);
    mmk_client_close(s);
    mmk_client_close(r);
    mmk_client_close(pub);
}

static void remove_ends_subscription(int ring)
{
    mmk_client *own = client(1), *sub = client(ring);
    cr_assert_eq(mmk_seg_create(own, "gone", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_subscribe(sub, "gone"), 0);
    cr_assert_eq(mmk_seg_remove(own, "gone"), 0);
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(sub, &ev, 5000), 0);
    cr_assert_eq(ev.kind, MMK_EV_REMOVE);
    cr_assert_str_eq(ev.info.name, "gone");
    /* A new segment of the same name is not the one subscribed to. */
    cr_assert_eq(mmk_seg_create(own, "gone", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_publish(own, "gone", 0, 0, NULL), 0);
    cr_assert_eq(mmk_seg_next_event(sub, &ev, 300), -ETIMEDOUT);
    cr_assert_eq(mmk_seg_unsubscribe(sub, "gone"), -ENOENT);
    mmk_client_close(sub);
    mmk_client_close(own);
}

Test(ring, remove_ends_a_ring_subscription)
{
    remove_ends_subscription(1);
}

Test(ring, remove_ends_a_socket_subscription)
{
    remove_ends_subscription(0);
}

Test(ring, unsubscribe_stops_ring_events)
{
    mmk_client *pub = client(1), *sub = client(1);
    cr_assert_eq(mmk_seg_create(pub, "quiet", 4096, 0644), 0);
    cr_assert_eq(mmk_seg_subscribe(sub, "quiet"), 0);
    cr_assert_eq(mmk_seg_subscribe(sub, "quiet"), -EALREADY);
    cr_assert_eq(mmk_seg_publish(pub, "quiet", 0, 0, NULL), 0);
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(sub, &ev, 5000), 0);
    cr_assert_eq(mmk_seg_unsubscribe(sub, "quiet"), 0);
    cr_assert_eq(mmk_seg_publish(pub, "quiet", 0, 0, NULL), 0);
    cr_assert_eq(mmk_seg_next_event(sub, &ev, 300), -ETIMEDOUT);
    mmk_seg_info in;
    cr_assert_eq(mmk_seg_stat(pub, "quiet", &in), 0);
    cr_assert_eq(in.subscribers, 0);
    /* And again: a new ring for the new subscription. */
    cr_assert_eq(mmk_seg_subscribe(sub, "quiet"), 0);
    cr_assert_eq(mmk_seg_publish(pub, "quiet", 1, 2, NULL), 0);
    cr_assert_eq(mmk_seg_next_event(sub, &ev, 5000), 0);
    cr_assert_eq(ev.offset, 1);
    cr_assert_eq(ev.length, 2);
    mmk_client_close(sub);
    mmk_client_close(pub);
}

Test(ring, the_ring_goes_with_its_last_reader)
{
    mmk_client *pub = client(1);
    cr_assert_eq(mmk_seg_create(pub, "cycle", 4096, 0644), 0);
    int before = ts_count_fds(srv.pid);
    cr_assert_gt(before, 0);
    for (int i = 0; i < 50; i++) {
        mmk_client *a = client(1), *b = client(1);
        cr_assert_eq(mmk_seg_subscribe(a, "cycle"), 0);
        cr_assert_eq(mmk_seg_subscribe(b, "cycle"), 0);
        cr_assert_eq(mmk_seg_publish(pub, "cycle", 0, 0, NULL), 0);
        cr_assert_eq(mmk_seg_unsubscribe(a, "cycle"), 0);
        mmk_client_close(b); /* a connection that ends drops its subscription */
        mmk_client_close(a);
    }
    /* Hang-ups are handled in the server's next batches: wait for them. */
    mmk_seg_info in;
    int now = -1;
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(mmk_seg_stat(pub, "cycle", &in), 0);
        if (in.subscribers == 0 && (now = ts_count_fds(srv.pid)) <= before)
            break;
        ts_sleep_ms(10);
    }
    cr_assert_eq(in.subscribers, 0);
    cr_assert_eq(now, before, "the server keeps descriptors of unused rings");
    mmk_client_close(pub);
}

Test(ring, a_server_without_rings_answers_with_event_messages)
{
    ts_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    static const char *const args[] = { "--no-event-rings", NULL };
    cr_assert_eq(ts_start_args(&srv, args), 0, "server did not start");
    mmk_client *pub = client(1), *sub = client(1);
    cr_assert_eq(mmk_seg_create(pub, "plain", 4096, 0644), 0);
    /* Asked for a ring, the server subscribes without one: no descriptors. */
    int fds[2];
    int fd = raw_subscribe("plain", fds, NULL);
    cr_assert_eq(fds[0], -1, "a ring came from a server told not to make any");
    close(fd);
    /* The library takes that as a subscription by messages, and it works. */
    cr_assert_eq(mmk_seg_subscribe(sub, "plain"), 0);
    cr_assert_eq(mmk_seg_publish(pub, "plain", 4, 4, NULL), 0);
    mmk_seg_event ev;
    cr_assert_eq(mmk_seg_next_event(sub, &ev, 5000), 0);
    cr_assert_eq(ev.kind, MMK_EV_WRITE);
    cr_assert_eq(ev.offset, 4);
    cr_assert_str_eq(ev.info.name, "plain");
    mmk_client_close(sub);
    mmk_client_close(pub);
}
