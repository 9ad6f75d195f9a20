/* report.c - async-signal-safe line formatting for fatal reports. */
#include "report.h"
#include "sys.h"

void mmk__line_str(struct mmk__line *l, const char *s)
{
    while (*s && l->n < sizeof l->buf - 1)
        l->buf[l->n++] = *s++;
}

void mmk__line_hex(struct mmk__line *l, uintptr_t v)
{
    char tmp[2 + 2 * sizeof v];
    int i = (int)sizeof tmp;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    while (i < (int)sizeof tmp && l->n < sizeof l->buf - 1)
        l->buf[l->n++] = tmp[i++];
}

void mmk__line_dec(struct mmk__line *l, long long v)
{
    char tmp[24];
    int i = (int)sizeof tmp;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    while (i < (int)sizeof tmp && l->n < sizeof l->buf - 1)
        l->buf[l->n++] = tmp[i++];
}

void mmk__line_end(struct mmk__line *l)
{
    l->buf[l->n++] = '\n';
    mmk__sys_write_all(2, l->buf, l->n);
    l->n = 0;
}
