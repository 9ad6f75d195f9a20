/*
 * stray_write.c - a shared cache, a buggy plugin, and the stray write caught
 * with its backtrace.
 *
 * The host keeps a price cache in a mirror.  Plugins only ever get the
 * read-only view; the host updates prices inside write windows.  One plugin
 * "normalises" a price in place through a cast-away const - the kind of bug
 * that corrupts a shared cache once in a million runs.
 *
 *   stray_write           the default policy: report and die of SIGSEGV
 *   stray_write --watch   watch mode: report every stray write, let it happen
 *
 * The report names the culprit first, then its callers:
 *
 *   mmkit: stray write at 0x7f... (mirror 0x55..., offset 32)
 *       #0 plugin_round (stray_write.c:65) [/.../stray_write+0x396b va=0x396b id=1046...]
 *       #1 main (stray_write.c:90) [...]
 *
 * (set MMKIT_SYMBOLIZER=build/mmkit when mmkit is not installed; without a
 * symbolizer the frames are "stray_write+0x396b [...]", which
 * `mmkit symbolize < report` names later).
 */
#include "mmkit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct price {
    char symbol[8];
    double value;
};

struct cache {
    unsigned count;
    struct price prices[16];
};

/* The host: the only code that writes, always inside a window. */
static void host_update(mmk_mirror *m, const char *symbol, double value)
{
    mmk_mirror_begin_write(m);
    struct cache *c = mmk_mirror_rw(m);
    struct price *p = &c->prices[c->count++];
    snprintf(p->symbol, sizeof p->symbol, "%s", symbol);
    p->value = value;
    mmk_mirror_end_write(m);
}

/* A well-behaved plugin: reads only. */
static double plugin_total(const struct cache *c)
{
    double total = 0;
    for (unsigned i = 0; i < c->count; i++)
        total += c->prices[i].value;
    return total;
}

/* The buggy plugin: rounds prices in place, through a cast.  (Not static:
 * plugins are called from elsewhere; the report would name it either way.) */
void plugin_round(const struct cache *c);
__attribute__((noinline)) void plugin_round(const struct cache *c)
{
    struct price *p = (struct price *)&c->prices[1];
    p->value = (double)(long)(p->value + 0.5);
}

int main(int argc, char **argv)
{
    mmk_mirror *m = mmk_mirror_create(sizeof(struct cache), 0);
    if (!m) {
        fprintf(stderr, "mmk_mirror_create: %s\n", mmk_strerror(errno));
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "--watch") == 0) {
        int r = mmk_mirror_set_policy(m, MMK_MIRROR_WATCH, NULL, NULL);
        if (r < 0) {
            fprintf(stderr, "watch mode: %s\n", mmk_strerror(r));
            return 1;
        }
    }
    host_update(m, "ACME", 12.25);
    host_update(m, "GLOBEX", 99.75);

    const struct cache *view = mmk_mirror_ro(m); /* all a plugin ever sees */
    printf("cache at %p (read-only view), %u prices, total %.2f\n", (const void *)view,
           view->count, plugin_total(view));
    printf("running the rounding plugin...\n");
    fflush(stdout);
    plugin_round(view); /* the stray write: caught here */
    printf("still running (watch mode): GLOBEX is now %.2f, %zu stray write%s logged\n",
           view->prices[1].value, mmk_mirror_strays(m), mmk_mirror_strays(m) == 1 ? "" : "s");
    mmk_mirror_destroy(m);
    return 0;
}
