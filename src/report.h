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

/* ---- fault reports with their frames (src/report.c) ---------------------- */

/*
 * A fault report: the line head (its text so far; no newline) followed by
 * the frames of the interrupted context ucontext, the faulting instruction
 * first, one line each (backtrace.h, report_text.h).  Async-signal-safe.
 *
 * MMK__REPORT_NOW, for a process about to die: head is written at once;
 * the frames go to the symbolizer (`mmkit symbolize`, run with fork and
 * execve, both safe here), which writes them named to stderr; if it is
 * missing, fails, or takes longer than the time limit (then it is killed),
 * the raw frames are written instead.
 * MMK__REPORT_LATER, for a process that goes on: head and raw frames are
 * queued for the reporter thread (mmk__report_start), which names the
 * frames in-process and writes the report; the call waits for that, at most
 * the time limit (then the thread writes it when it can).  Raw at once to
 * stderr if the thread is not running or the queue is full.
 */
enum { MMK__REPORT_NOW = 0, MMK__REPORT_LATER = 1 };
void mmk__report_fault(struct mmk__line *head, const void *ucontext, int when);

/*
 * Outside handlers: what a report needs and a handler cannot do (load the
 * unwinder, find the program's path, read MMKIT_SYMBOLIZER and
 * MMKIT_SYMBOLIZE_MS).  Runs from a constructor too; idempotent.
 */
void mmk__report_prepare(void);

/* Start the reporter thread (once).  Outside handlers.  0 or -errno. */
int mmk__report_start(void);

/* Wait until every queued report is written, at most timeout_ms.
 * 0, or -ETIMEDOUT. */
int mmk__report_flush(long timeout_ms);

#endif
