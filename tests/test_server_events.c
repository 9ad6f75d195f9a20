/* test_server_events.c - the server's event stream (src/server/events.c),
 * which the socket subscribers and the HTTP feed share: sequence numbers,
 * sinks, the bounded backlog and replay.  The server's files are compiled
 * in (they are not part of libmmkit). */
#include "server/events.c"
#include "server/segtab.c"
#include "server/seg_ring.c"

#include <criterion/criterion.h>

static struct mmk__segtab tab;
static struct mmk__seg *seg;

static void setup(void)
{
    mmk__segtab_init(&tab, 16, 1 << 20);
    cr_assert_eq(mmk__segtab_create(&tab, "ev", 4096, 0640, 1, 2, &seg), 0);
}

static void teardown(void)
{
    mmk__segtab_fini(&tab);
}

struct seen {
    uint64_t seq[64];
    unsigned kind[64];
    int n;
};

static void record(const mmk_seg_event *ev, void *ctx)
{
    struct seen *s = ctx;
    if (s->n < 64) {
        s->seq[s->n] = ev->seq;
        s->kind[s->n] = ev->kind;
        s->n++;
    }
}

TestSuite(events, .init = setup, .fini = teardown);

Test(events, every_sink_gets_every_event_numbered_without_gaps)
{
    struct mmk__events e;
    struct seen a = { .n = 0 }, b = { .n = 0 };
    cr_assert_eq(mmk__events_init(&e, 8, 0), 0);
    cr_assert_eq(mmk__events_add_sink(&e, record, &a), 0);
    cr_assert_eq(mmk__events_add_sink(&e, record, &b), 0);
    cr_assert_eq(mmk__events_last(&e), 0);
    cr_assert_eq(mmk__events_emit(&e, MMK_EV_CREATE, seg, 0, 0), 1);
    cr_assert_eq(mmk__events_emit(&e, MMK_EV_WRITE, seg, 16, 32), 2);
    mmk__events_del_sink(&e, record, &b);
    cr_assert_eq(mmk__events_emit(&e, MMK_EV_REMOVE, seg, 0, 0), 3);
    cr_assert_eq(a.n, 3);
    cr_assert_eq(b.n, 2, "a removed sink gets nothing more");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(a.seq[i], (uint64_t)i + 1);
    cr_assert_eq(a.kind[1], MMK_EV_WRITE);
    cr_assert_eq(mmk__events_last(&e), 3);
    mmk__events_fini(&e);
}

static mmk_seg_event last_ev;
static void keep(const mmk_seg_event *ev, void *ctx)
{
    (void)ctx;
    last_ev = *ev;
}

Test(events, event_carries_the_segment_after_the_change)
{
    struct mmk__events e;
    cr_assert_eq(mmk__events_init(&e, 8, 0), 0);
    mmk__events_add_sink(&e, keep, NULL);
    seg->version = 7;
    seg->holders = 3;
    mmk__events_emit(&e, MMK_EV_WRITE, seg, 100, 200);
    cr_assert_str_eq(last_ev.info.name, "ev");
    cr_assert_eq(last_ev.info.size, 4096);
    cr_assert_eq(last_ev.info.mode, 0640);
    cr_assert_eq(last_ev.info.uid, 1);
    cr_assert_eq(last_ev.info.gid, 2);
    cr_assert_eq(last_ev.info.version, 7);
    cr_assert_eq(last_ev.info.holders, 3);
    cr_assert_eq(last_ev.offset, 100);
    cr_assert_eq(last_ev.length, 200);
    mmk__events_fini(&e);
}

Test(events, replay_from_the_backlog_or_erange)
{
    struct mmk__events e;
    cr_assert_eq(mmk__events_init(&e, 4, 0), 0);
    for (int i = 0; i < 10; i++)
        mmk__events_emit(&e, MMK_EV_WRITE, seg, (uint64_t)i, 1);
    struct seen s = { .n = 0 };
    cr_assert_eq(mmk__events_replay(&e, 6, record, &s), 0);
    cr_assert_eq(s.n, 4, "the last four are kept");
    cr_assert_eq(s.seq[0], 7);
    cr_assert_eq(s.seq[3], 10);
    s.n = 0;
    cr_assert_eq(mmk__events_replay(&e, 10, record, &s), 0);
    cr_assert_eq(s.n, 0, "nothing newer than the last");
    cr_assert_eq(mmk__events_replay(&e, 99, record, &s), -ERANGE, "an id never given out");
    cr_assert_eq(mmk__events_replay(&e, 5, record, &s), -ERANGE, "seq 6 was dropped");
    cr_assert_eq(mmk__events_replay(&e, 0, record, &s), -ERANGE);
    cr_assert_eq(s.n, 0, "no partial replay");
    mmk__events_fini(&e);
}

Test(events, sequence_goes_on_after_a_restart_but_old_events_are_gone)
{
    struct mmk__events e;
    cr_assert_eq(mmk__events_init(&e, 16, 500), 0); /* the index said: next is 500 */
    cr_assert_eq(mmk__events_emit(&e, MMK_EV_CREATE, seg, 0, 0), 500);
    struct seen s = { .n = 0 };
    cr_assert_eq(mmk__events_replay(&e, 499, record, &s), 0);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(mmk__events_replay(&e, 400, record, &s), -ERANGE,
                 "events of the previous run cannot be replayed");
    mmk__events_fini(&e);
}

Test(events, access_follows_file_permissions)
{
    struct mmk__cred root = { .uid = 0 }, owner = { .uid = 1, .gid = 9 },
                     member = { .uid = 5, .gid = 9, .ngroups = 1, .groups = { 2 } },
                     other = { .uid = 6, .gid = 6 };
    cr_assert_eq(mmk__seg_access(0000, 1, 2, &root, 6), 0);
    cr_assert_eq(mmk__seg_access(0640, 1, 2, &owner, 6), 0);
    cr_assert_eq(mmk__seg_access(0440, 1, 2, &owner, 2), -EACCES);
    cr_assert_eq(mmk__seg_access(0640, 1, 2, &member, 4), 0, "supplementary group");
    cr_assert_eq(mmk__seg_access(0640, 1, 2, &member, 2), -EACCES);
    cr_assert_eq(mmk__seg_access(0640, 1, 2, &other, 4), -EACCES);
    cr_assert_eq(mmk__seg_access(0604, 1, 2, &other, 4), 0);
    cr_assert_eq(mmk__seg_access(0064, 1, 2, &owner, 4), -EACCES, "owner bits only, as for files");
}

Test(events, table_keeps_names_sorted_and_finds_the_next)
{
    struct mmk__seg *s;
    cr_assert_eq(mmk__segtab_create(&tab, "b", 0, 0600, 0, 0, &s), 0);
    cr_assert_eq(mmk__segtab_create(&tab, "a", 0, 0600, 0, 0, &s), 0);
    cr_assert_eq(mmk__segtab_create(&tab, "c", 0, 0600, 0, 0, &s), 0);
    cr_assert_eq(mmk__segtab_create(&tab, "b", 0, 0600, 0, 0, &s), -EEXIST);
    cr_assert_eq(tab.n, 4);
    cr_assert_str_eq(tab.v[0]->name, "a");
    cr_assert_str_eq(tab.v[3]->name, "ev");
    cr_assert_eq(mmk__segtab_after(&tab, "b"), 2);
    cr_assert_eq(mmk__segtab_after(&tab, "bb"), 2);
    cr_assert_eq(mmk__segtab_after(&tab, ""), 0);
    mmk__segtab_remove(&tab, mmk__segtab_find(&tab, "b"));
    cr_assert_null(mmk__segtab_find(&tab, "b"));
    cr_assert_eq(tab.n, 3);
    cr_assert_eq(mmk__segtab_create(&tab, "big", (uint64_t)1 << 21, 0600, 0, 0, &s), -EFBIG);
}
