/* demo_mirror.c - demo chapter: mirrors. */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Run fn(m) in a child whose stderr is captured; print the first line the
 * child wrote, how many more followed, and how it ended.  Returns the wait
 * status.
 */
static int in_child(void (*fn)(void *), mmk_mirror *m, const char *prefix)
{
    static char buf[1 << 16];
    int st = cli_run_captured(fn, m, buf, sizeof buf);
    int frames = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "mmkit:", 6) || !strncmp(line, "child:", 6)) {
            printf("%s%s\n", prefix, line);
        } else if (!strncmp(line, "    #0 ", 7)) {
            /* The culprit's frame, without its key (path, offsets, build-id). */
            char *key = strstr(line, " [");
            printf("%s%.*s\n", prefix, key ? (int)(key - line) : (int)strlen(line), line);
        } else {
            frames++;
        }
    }
    printf("%s(and %d more frames, not shown)\n", prefix, frames);
    cli_print_end(prefix, st);
    return st;
}

static void stray(void *arg)
{
    mmk_mirror *m = arg;
    char *p = (char *)(uintptr_t)mmk_mirror_ro(m); /* the plugin's cast */
    p[42] = '!';
}

static void watched(void *arg)
{
    mmk_mirror *m = arg;
    if (mmk_mirror_set_policy(m, MMK_MIRROR_WATCH, NULL, NULL) != 0)
        return;
    volatile char *p = (volatile char *)(uintptr_t)mmk_mirror_ro(m);
    p[42] = '!'; /* two separate stores (volatile), two reports */
    p[43] = '?';
    static const char msg[] = "child: still running after 2 watched writes\n";
    if (write(2, msg, sizeof msg - 1) < 0)
        _exit(1);
}

int demo_mirror(void)
{
    mmk_mirror *m = mmk_mirror_create(1 << 16, 0);
    if (!m) {
        cli_error("mmk_mirror_create: %s", mmk_strerror(errno));
        return 1;
    }
    char *rw = mmk_mirror_rw(m);
    const char *ro = mmk_mirror_ro(m);
    printf("One memfd of %zu KiB, mapped twice:\n"
           "  read-write view %p\n  read-only  view %p\n\n",
           mmk_mirror_size(m) >> 10, (void *)rw, (const void *)ro);

    mmk_mirror_begin_write(m);
    strcpy(rw, "written in a write window");
    mmk_mirror_end_write(m);
    printf("The host writes inside a window; readers see it through the\n"
           "read-only view: \"%s\"\n\n", ro);

    const char *r = mmk_ro(m, rw + 100);
    printf("Conversions are O(1) and idempotent:\n"
           "  mmk_ro(rw + 100)          = ro + %td\n"
           "  mmk_rw(mmk_rw(ro + 100))  = rw + %td\n", r - ro,
           (char *)mmk_rw(m, mmk_rw(m, ro + 100)) - rw);
    errno = 0;
    void *out = mmk_rw(m, ro + mmk_mirror_size(m));
    printf("  mmk_rw(one past the end)  = %p (%s)\n\n", out, mmk_strerror(errno));
    int ok = r == ro + 100 && out == NULL && errno == EFAULT && !strcmp(ro, rw);

    printf("A plugin casts away const and writes through the read-only view.\n"
           "Default policy (in a child): one line, a backtrace, SIGSEGV:\n");
    int st = in_child(stray, m, "  ");
    ok &= st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
    ok &= ro[42] == 0;

#if defined(__x86_64__)
    printf("\nWatch mode (in a child): each stray write is logged with its\n"
           "backtrace, allowed once, and the page protected again:\n");
    st = in_child(watched, m, "  ");
    ok &= st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("  the shared memory now holds '%c%c' at offset 42\n", ro[42], ro[43]);
    ok &= ro[42] == '!' && ro[43] == '?';
#endif
    mmk_mirror_destroy(m);

    mmk_ring *ring = mmk_ring_create(4096);
    if (!ring) {
        cli_error("mmk_ring_create: %s", mmk_strerror(errno));
        return 1;
    }
    char *b = mmk_ring_base(ring);
    size_t size = mmk_ring_size(ring);
    memcpy(b + size - 5, "wrap-around", 11); /* crosses the end in one memcpy */
    printf("\nThe magic ring, same trick: 11 bytes written at offset %zu of a\n"
           "%zu-byte ring land as \"%.5s\" at the end and \"%.6s\" at the start.\n",
           size - 5, size, b + size - 5, b);
    ok &= !memcmp(b, "around", 6);
    mmk_ring_destroy(ring);

    printf("\n%s\n", ok ? "mirrors: ok" : "mirrors: UNEXPECTED RESULT");
    return ok ? 0 : 1;
}
