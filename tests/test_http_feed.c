/*
 * test_http_feed.c - the HTTP feed's pure parts: the shared event backlog
 * (positions, eviction, Last-Event-ID resume and reset) and the JSON writer
 * (escaping, UTF-8, limits).
 */
#include "http_feed.h"
#include "http_json.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void push(struct mmk__feed *f, uint64_t seq, const char *name)
{
    char text[64];
    int n = snprintf(text, sizeof text, "id: %llu\n\n", (unsigned long long)seq);
    cr_assert_eq(mmk__feed_push(f, seq, name, text, (size_t)n), 0);
}

Test(feed, keeps_the_last_cap_events_in_order)
{
    struct mmk__feed *f = mmk__feed_new(4);
    cr_assert_not_null(f);
    for (uint64_t s = 1; s <= 6; s++)
        push(f, s * 10, s % 2 ? "odd" : "even");
    cr_assert_eq(mmk__feed_begin(f), 2);
    cr_assert_eq(mmk__feed_end(f), 6);
    cr_assert_eq(mmk__feed_last_seq(f), 60);
    cr_assert_null(mmk__feed_at(f, 1), "an evicted position is gone");
    cr_assert_null(mmk__feed_at(f, 6), "a future position is not there");
    for (uint64_t p = 2; p < 6; p++) {
        const struct mmk__feed_event *e = mmk__feed_at(f, p);
        cr_assert_not_null(e);
        cr_assert_eq(e->seq, (p + 1) * 10);
        cr_assert_str_eq(e->name, (p + 1) % 2 ? "odd" : "even");
        char want[32];
        snprintf(want, sizeof want, "id: %llu\n\n", (unsigned long long)e->seq);
        cr_assert_eq(e->len, strlen(want));
        cr_assert_str_eq(e->text, want);
    }
    mmk__feed_free(f);
}

Test(feed, refuses_sequence_numbers_that_do_not_increase)
{
    struct mmk__feed *f = mmk__feed_new(4);
    push(f, 5, "a");
    cr_assert_eq(mmk__feed_push(f, 5, "a", "x", 1), -EINVAL);
    cr_assert_eq(mmk__feed_push(f, 4, "a", "x", 1), -EINVAL);
    cr_assert_eq(mmk__feed_push(f, 0, "a", "x", 1), -EINVAL);
    cr_assert_eq(mmk__feed_end(f), 1, "a refused push changes nothing");
    cr_assert_null(mmk__feed_new(0));
    cr_assert_eq(errno, EINVAL);
    mmk__feed_free(f);
}

Test(feed, resume_finds_the_first_event_after_the_id_with_gaps)
{
    struct mmk__feed *f = mmk__feed_new(8);
    uint64_t seqs[] = { 3, 4, 7, 9, 15 };  /* gaps: events not shown over HTTP */
    for (size_t i = 0; i < 5; i++)
        push(f, seqs[i], "s");
    uint64_t pos;
    cr_assert_eq(mmk__feed_resume(f, 0, &pos), 0);
    cr_assert_eq(pos, 0, "id 0: the whole backlog");
    cr_assert_eq(mmk__feed_resume(f, 4, &pos), 0);
    cr_assert_eq(pos, 2);
    cr_assert_eq(mmk__feed_resume(f, 5, &pos), 0);
    cr_assert_eq(pos, 2, "an id in a gap resumes at the next event");
    cr_assert_eq(mmk__feed_resume(f, 14, &pos), 0);
    cr_assert_eq(pos, 4);
    cr_assert_eq(mmk__feed_resume(f, 15, &pos), 0);
    cr_assert_eq(pos, 5, "up to date: the live edge");
    cr_assert_eq(mmk__feed_resume(f, 16, &pos), 1, "an id from the future resets");
    cr_assert_eq(pos, 5);
    mmk__feed_free(f);
}

Test(feed, resume_past_the_backlog_resets)
{
    struct mmk__feed *f = mmk__feed_new(3);
    for (uint64_t s = 1; s <= 5; s++)
        push(f, s, "s");               /* keeps 3, 4, 5; dropped 1, 2 */
    uint64_t pos;
    cr_assert_eq(mmk__feed_resume(f, 1, &pos), 1, "event 2 is gone: reset");
    cr_assert_eq(pos, mmk__feed_end(f));
    cr_assert_eq(mmk__feed_resume(f, 2, &pos), 0, "saw 2: 3, 4, 5 are all kept");
    cr_assert_eq(pos, mmk__feed_begin(f));
    mmk__feed_free(f);
}

static const char *json_str(struct mmk__jbuf *b, const char *s, size_t n)
{
    mmk__jbuf_free(b);
    mmk__jbuf_init(b, 1024);
    mmk__jbuf_str(b, s, n);
    cr_assert_eq(b->err, 0);
    return b->p;
}

Test(json, escapes_quotes_backslashes_and_control_characters)
{
    struct mmk__jbuf b;
    mmk__jbuf_init(&b, 1024);
    cr_assert_str_eq(json_str(&b, "plain", 5), "\"plain\"");
    cr_assert_str_eq(json_str(&b, "a\"b\\c", 5), "\"a\\\"b\\\\c\"");
    cr_assert_str_eq(json_str(&b, "l1\nl2\tx\r\x01\x7f", 10), "\"l1\\nl2\\tx\\u000d\\u0001\\u007f\"");
    cr_assert_str_eq(json_str(&b, "nul\0in", 6), "\"nul\\u0000in\"");
    mmk__jbuf_free(&b);
}

Test(json, keeps_valid_utf8_and_replaces_invalid_bytes)
{
    struct mmk__jbuf b;
    mmk__jbuf_init(&b, 1024);
    cr_assert_str_eq(json_str(&b, "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x99\x82", 15),
                     "\"gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x99\x82\"");
    cr_assert_str_eq(json_str(&b, "\xff", 1), "\"\\ufffd\"");
    cr_assert_str_eq(json_str(&b, "\xc3", 1), "\"\\ufffd\"", "truncated sequence");
    cr_assert_str_eq(json_str(&b, "\xc0\xaf", 2), "\"\\ufffd\\ufffd\"", "overlong");
    cr_assert_str_eq(json_str(&b, "\xed\xa0\x80", 3), "\"\\ufffd\\ufffd\\ufffd\"", "surrogate");
    cr_assert_str_eq(json_str(&b, "\xf4\x90\x80\x80", 4), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"", "past U+10FFFF");
    mmk__jbuf_free(&b);
}

Test(json, segment_object_and_write_range)
{
    struct mmk__http_seg seg = { .name = "s\"1", .size = 4096, .mode = 0644, .uid = 7, .gid = 8,
                                 .version = 3, .holders = 2, .subscribers = 1 };
    struct mmk__http_event ev = { .kind = MMK__HTTP_WRITE, .offset = 10, .length = 20 };
    struct mmk__jbuf b;
    mmk__jbuf_init(&b, 1024);
    mmk__jbuf_seg(&b, &seg, NULL);
    cr_assert_str_eq(b.p, "{\"name\":\"s\\\"1\",\"size\":4096,\"mode\":\"0644\",\"owner\":7,\"group\":8,"
                          "\"version\":3,\"holders\":2,\"subscribers\":1}");
    mmk__jbuf_free(&b);
    mmk__jbuf_init(&b, 1024);
    mmk__jbuf_seg(&b, &seg, &ev);
    cr_assert(strstr(b.p, ",\"offset\":10,\"length\":20}") != NULL, "%s", b.p);
    ev.kind = MMK__HTTP_ATTACH;
    mmk__jbuf_free(&b);
    mmk__jbuf_init(&b, 1024);
    mmk__jbuf_seg(&b, &seg, &ev);
    cr_assert(strstr(b.p, "offset") == NULL, "only a write has a range");
    mmk__jbuf_free(&b);
}

Test(json, a_limit_is_never_passed)
{
    struct mmk__jbuf b;
    mmk__jbuf_init(&b, 16);
    mmk__jbuf_str(&b, "0123456789", 10);
    cr_assert_eq(b.err, 0);
    cr_assert_eq(b.len, 12);
    mmk__jbuf_str(&b, "0123456789", 10);
    cr_assert_eq(b.err, -E2BIG);
    cr_assert_leq(b.len, 16);
    mmk__jbuf_lit(&b, "x");
    cr_assert_eq(b.err, -E2BIG, "the error sticks");
    mmk__jbuf_free(&b);
}
