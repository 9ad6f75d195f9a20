/*
 * report.h - async-signal-safe one-line reports to stderr, for the few
 * documented fatal paths in signal handlers (no stdio, no malloc there).
 *
 *     struct mmk__line l = MMK__LINE_INIT;
 *     mmk__line_str(&l, "mmkit: stray write at ");
 *     mmk__line_hex(&l, addr);
 *     mmk__line_end(&l);          // appends '\n' and writes it to fd 2
 *
 * Text past the buffer is cut, never overflowed.
 */
#ifndef MMK_REPORT_H
#define MMK_REPORT_H

#include <stddef.h>
#include <stdint.h>

struct mmk__line {
    char buf[512];
    size_t n;
};

#define MMK__LINE_INIT { .n = 0 }

void mmk__line_str(struct mmk__line *l, const char *s);
void mmk__line_hex(struct mmk__line *l, uintptr_t v);  /* 0x... */
void mmk__line_dec(struct mmk__line *l, long long v);
/* Append a newline and write the line to stderr in one write(2). */
void mmk__line_end(struct mmk__line *l);

#endif
