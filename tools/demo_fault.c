/* demo_fault.c - demo chapter: the fault router. */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct lazy {
    const char *name;
    char *base;
    size_t page;
    unsigned faults, writes;
};

/* Handler: a page is filled with its owner's name the first time it is
 * touched, the way a lazily loaded cache would fill it. */
static int lazy_fill(const mmk_fault *f, void *ctx)
{
    struct lazy *l = ctx;
    char *page = (char *)((uintptr_t)f->addr & ~(uintptr_t)(l->page - 1));
    if (mprotect(page, l->page, PROT_READ | PROT_WRITE) != 0)
        return MMK_FAULT_PASS;
    size_t n = strlen(l->name);
    memcpy(page, l->name, n + 1);
    l->faults++;
    l->writes += f->write == 1;
    return MMK_FAULT_RETRY;
}

int demo_fault(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    enum { N = 3, PAGES = 4 };
    static struct lazy owners[N] = { { .name = "cache" }, { .name = "journal" }, { .name = "heap" } };
    char *mem = mmap(NULL, N * PAGES * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        cli_error("mmap: %s", mmk_strerror(-errno));
        return 1;
    }
    mmk_area *areas[N];
    printf("Three subsystems each register their own address range with one router:\n");
    for (int i = 0; i < N; i++) {
        owners[i].base = mem + (size_t)i * PAGES * page;
        owners[i].page = page;
        areas[i] = mmk_area_register(owners[i].base, PAGES * page, lazy_fill, &owners[i]);
        if (!areas[i]) {
            cli_error("mmk_area_register: %s", mmk_strerror(-errno));
            return 1;
        }
        printf("  %-8s %p .. %p  (%d pages, PROT_NONE)\n", owners[i].name,
               (void *)owners[i].base, (void *)(owners[i].base + PAGES * page), PAGES);
    }
    printf("\nTouching pages: each fault goes to the owner of its address, which\n"
           "fills the page and asks for the access to be retried.\n");
    volatile char *j = owners[1].base + 2 * page;
    char c = *j; /* a read fault */
    owners[2].base[page + 100] = 'x'; /* a write fault */
    char *h = owners[2].base + page;
    printf("  read  journal page 2 -> \"%s\" (first byte '%c')\n", (char *)j, c);
    printf("  write heap page 1    -> \"%.4s\" then our 'x' at byte 100: '%c'\n", h, h[100]);
    for (int i = 0; i < N; i++)
        printf("  %-8s handled %u fault%s (%u on write)\n", owners[i].name, owners[i].faults,
               owners[i].faults == 1 ? "" : "s", owners[i].writes);
    int ok = owners[0].faults == 0 && owners[1].faults == 1 && owners[2].faults == 1 &&
             owners[2].writes == 1 && c == 'j' && h[100] == 'x';

    printf("\nA fault no area claims goes to the handler the process had before.\n"
           "Here that is SIG_DFL, so a child touching a stray address dies as usual:\n");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        volatile int *stray = (volatile int *)(uintptr_t)atoi("16");
        *stray = 1; /* no area holds address 16: the router chains to SIG_DFL */
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        printf("  child died of signal %d (%s)%s\n", WTERMSIG(st), strsignal(WTERMSIG(st)),
               WCOREDUMP(st) ? ", core dumped" : "");
    else
        printf("  child exited with status %d (unexpected)\n", WEXITSTATUS(st));
    ok &= WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;

    for (int i = 0; i < N; i++)
        mmk_area_unregister(areas[i]);
    munmap(mem, N * PAGES * page);
    printf("\n%s\n", ok ? "fault router: ok" : "fault router: UNEXPECTED RESULT");
    return ok ? 0 : 1;
}
