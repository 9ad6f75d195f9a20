/* demo_arena.c - demo chapter: growable arenas. */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

static long long size_on_disk(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* In a child: limit files to 2 MiB and store at 3 MiB, as a full disk would
 * refuse.  The store cannot return an error, so the process ends. */
static void store_past_limit(void *arg)
{
    const char *path = arg;
    mmk_arena *a = mmk_arena_open(path, (size_t)1 << 30, MMK_ARENA_CREATE | MMK_ARENA_TRUNC);
    if (!a)
        _exit(3);
    memset(mmk_arena_base(a), 'k', MiB);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = 2 * MiB;
    setrlimit(RLIMIT_FSIZE, &rl);
    int r = mmk_arena_reserve(a, 3 * MiB + 1);
    fprintf(stderr, "child: mmk_arena_reserve(3 MiB) -> %d (%s): the explicit call reports it\n",
            r, mmk_strerror(r));
    ((volatile char *)mmk_arena_base(a))[3 * MiB] = 1; /* a plain store cannot */
    _exit(0);
}

static int run_child(const char *path)
{
    char buf[2048];
    int st = cli_run_captured(store_past_limit, (void *)path, buf, sizeof buf);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        printf("  %s\n", line);
    cli_print_end("  ", st);
    return st;
}

int demo_arena(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/mmkit-demo-arena-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    mmk_arena *a = mmk_arena_open(path, (size_t)64 << 30, MMK_ARENA_CREATE | MMK_ARENA_TRUNC);
    if (!a) {
        cli_error("mmk_arena_open %s: %s", path, mmk_strerror(-errno));
        return 1;
    }
    char *base = mmk_arena_base(a);
    printf("An arena reserves 64 GiB of addresses over an empty file:\n"
           "  %s at %p, file size %lld\n", path, (void *)base, size_on_disk(path));

    printf("\nStores past the end of the file raise SIGBUS; the handler extends the\n"
           "file (in chunks that double from 1 MiB) and the store runs again:\n");
    char *first = mmk_arena_alloc(a, 64, 8);
    strcpy(first, "the first record, never moved");
    size_t offs[] = { 100, 3 * MiB, 40 * MiB, 200 * MiB + 123 };
    struct mmk_arena_stats st;
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        base[offs[i]] = 'x';
        mmk_arena_stats(a, &st);
        printf("  store at %10zu -> file %10lld bytes, %zu growth faults so far\n", offs[i],
               size_on_disk(path), st.faults);
    }
    int ok = mmk_arena_base(a) == base && !strcmp(first, "the first record, never moved");
    printf("  base still %p, first record still \"%s\"\n", (void *)mmk_arena_base(a), first);

    size_t used = mmk_arena_used(a);
    int r = mmk_arena_close(a);
    long long closed = size_on_disk(path);
    printf("\nClose trims the file to what was used (the last byte written), not to\n"
           "the last fault: used %zu, file now %lld bytes (close: %s)\n", used, closed,
           mmk_strerror(r));
    ok &= r == 0 && closed == (long long)(200 * MiB + 124) && used == 200 * MiB + 124;

    a = mmk_arena_open(path, (size_t)64 << 30, 0);
    if (a) {
        char *b = mmk_arena_base(a);
        printf("Reopened: used %zu, first record \"%s\", byte at 40 MiB '%c'\n",
               mmk_arena_used(a), b, b[40 * MiB]);
        ok &= mmk_arena_used(a) == used && b[40 * MiB] == 'x';
        mmk_arena_close(a);
    } else {
        ok = 0;
    }

    printf("\nWhen the file cannot grow (a full disk; here RLIMIT_FSIZE of 2 MiB in a\n"
           "child), explicit calls return the error; a plain store ends the process\n"
           "with one line naming the arena and the errno:\n");
    int cst = run_child(path);
    ok &= cst != -1 && WIFSIGNALED(cst) && WTERMSIG(cst) == SIGBUS;
    printf("  the file kept every byte stored before: %lld bytes\n", size_on_disk(path));
    unlink(path);

    printf("\n%s\n", ok ? "arenas: ok" : "arenas: UNEXPECTED RESULT");
    return ok ? 0 : 1;
}
