/* test_report.c - fault reports: the frame-line grammar, mmk_fault_report()
 * from a handler of one's own (the reporter thread names the culprit and the
 * process goes on), mmk_report_symbolize(), argument checks.  The dying
 * paths (symbolizer process, time limit, stripped binaries, shared
 * libraries) are in tests/cli/report.sh. */
#include "mmkit.h"
#include "report_text.h"

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- the grammar ----------------------------------------------------------- */

Test(report, a_frame_line_parses_into_its_key)
{
    const char *l = "    #3 obj+0x10 [/srv/my app/obj+0x1a2b va=0x2b2b id=00ffA0]";
    struct mmk__frame_key k;
    cr_assert_eq(mmk__frame_parse(l, strlen(l), &k), 0);
    cr_expect_eq(k.index, 3);
    cr_expect_eq(k.indent, 4);
    cr_expect_eq(k.path_len, strlen("/srv/my app/obj"));
    cr_expect_eq(strncmp(k.path, "/srv/my app/obj", k.path_len), 0);
    cr_expect_eq(k.offset, 0x1a2b);
    cr_expect(k.has_vaddr);
    cr_expect_eq(k.vaddr, 0x2b2b);
    cr_expect_eq(k.build_id_len, 3);
    cr_expect(k.build_id[0] == 0x00 && k.build_id[1] == 0xff && k.build_id[2] == 0xa0);
}

Test(report, lines_that_are_not_frames_do_not_parse)
{
    const char *bad[] = {
        "mmkit: stray write at 0x1 (mirror 0x2, offset 3)",
        "    #0 0x7ffd00001234",                     /* no object: no key */
        "    # 0 a+0x1 [/a+0x1]",                    /* no index */
        "    #0 a+0x1 [/a+0x]",                      /* no offset digits */
        "    #0 a+0x1 [/a+0x12345678901234567]",     /* 17 digits */
        "    #0 a+0x1 [/a+0x1 id=abc]",              /* odd build-id */
        "    #0 a+0x1 [/a+0x1 id=zz]",
        "    #0 a+0x1 [/a+0x1 va=12]",               /* va without 0x */
        "    #0 a+0x1 [+0x1]",                       /* no path */
        "    #0 a+0x1 [/a+0x1",                      /* not closed */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mmk__frame_key k;
        cr_expect_neq(mmk__frame_parse(bad[i], strlen(bad[i]), &k), 0, "%s", bad[i]);
    }
}

Test(report, a_named_frame_keeps_its_key_and_reads_like_valgrind)
{
    const char *l = "    #0 obj+0x10 [/x/obj+0x10 va=0x10 id=ab]";
    struct mmk__frame_key k;
    cr_assert_eq(mmk__frame_parse(l, strlen(l), &k), 0);
    char out[256];
    struct mmk__frame_name lines = { .function = "plugin_round", .file = "/src/examples/stray_write.c",
                                     .line = 58 };
    mmk__frame_format(out, sizeof out, &k, &lines);
    cr_expect_str_eq(out, "    #0 plugin_round (stray_write.c:58) [/x/obj+0x10 va=0x10 id=ab]");
    struct mmk__frame_name syms = { .function = "helper@@V_1", .function_offset = 0x2a };
    mmk__frame_format(out, sizeof out, &k, &syms);
    cr_expect_str_eq(out, "    #0 helper+0x2a (obj) [/x/obj+0x10 va=0x10 id=ab]");
    struct mmk__frame_name inl = { .function = "main", .file = "m.c", .line = 9, .ninlined = 2,
                                   .inlined = { { "inner", "/i/a.h", 3 }, { "outer", "b.h", 5 } } };
    mmk__frame_format(out, sizeof out, &k, &inl);
    cr_expect_str_eq(out, "    #0 inner (a.h:3) (inlined)\n"
                          "    #0 outer (b.h:5) (inlined)\n"
                          "    #0 main (m.c:9) [/x/obj+0x10 va=0x10 id=ab]");
    struct mmk__frame_name none = { 0 };
    size_t need = mmk__frame_format(out, 8, &k, &none);
    cr_expect_eq(need, strlen("    #0 obj+0x10 [/x/obj+0x10 va=0x10 id=ab]"));
    cr_expect_eq(strlen(out), 7, "cut, NUL-terminated");
}

/* ---- mmk_fault_report from a handler of one's own ------------------------- */

static char *area_page;

/* Not static, not inlined: the report must name it as the culprit. */
void report_test_culprit(volatile char *p);
static const int culprit_line = __LINE__ + 3; /* the store below */
__attribute__((noinline)) void report_test_culprit(volatile char *p)
{
    p[1] = 1; /* the faulting store */
    __asm__ volatile("" ::: "memory");
}

static int on_fault(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    mmk_fault_report(f, "caught by my own handler", 0);
    mprotect(area_page, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE);
    return MMK_FAULT_RETRY;
}

/* In a child: fault once through an area whose handler reports; write
 * "went on" after it.  The parent reads the child's stderr. */
__attribute__((noinline, noreturn)) static void fault_and_report(int start_thread)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    area_page = mmap(NULL, pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area_page == MAP_FAILED || !mmk_area_register(area_page, pg, on_fault, NULL))
        _exit(3);
    if (start_thread && mmk_report_start() != 0)
        _exit(4);
    report_test_culprit(area_page);
    static const char msg[] = "went on\n";
    if (write(2, msg, sizeof msg - 1) < 0)
        _exit(5);
    _exit(0); /* no exit handlers: the report must be out already */
}

static int run_child(int start_thread, char *err, size_t cap)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        fault_and_report(start_thread);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(p[0], err + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = 0;
    close(p[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return st;
}

Test(report, own_handler_report_is_named_by_the_reporter_thread_and_the_process_goes_on)
{
    static char err[1 << 16];
    int st = run_child(1, err, sizeof err);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x: %s", st, err);
    char want[128];
    snprintf(want, sizeof want,
             "mmkit: caught by my own handler\n    #0 report_test_culprit (test_report.c:%d) [",
             culprit_line);
    cr_expect(starts_with(err, want), "the culprit's frame first, by name and line:\n%s", err);
    cr_expect(strstr(err, " fault_and_report (test_report.c:"), "its caller below:\n%s", err);
    const char *went = strstr(err, "went on\n");
    cr_expect(went && went > strstr(err, "report_test_culprit"),
              "the report is out before the program goes on:\n%s", err);
    cr_expect(!strstr(err, "on_fault") && !strstr(err, "mmk_"), "no handler frames:\n%s", err);
}

Test(report, without_the_reporter_thread_the_frames_are_raw_at_once)
{
    static char err[1 << 16];
    int st = run_child(0, err, sizeof err);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x: %s", st, err);
    cr_expect(starts_with(err, "mmkit: caught by my own handler\n    #0 test_report+0x"),
              "raw frame 0:\n%s", err);
    cr_expect(strstr(err, "went on\n"), "%s", err);
}

/* ---- mmk_report_symbolize ---------------------------------------------------- */

Test(report, symbolize_names_a_frame_of_this_program_and_leaves_other_lines)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(n, 0);
    self[n] = 0;
    /* The key of report_test_culprit's first byte, by hand: its ELF
     * address is its run-time address minus the load bias. */
    struct dl_find_object fo;
    cr_assert_eq(_dl_find_object((void *)report_test_culprit, &fo), 0);
    uintptr_t va = (uintptr_t)(void *)report_test_culprit - (uintptr_t)fo.dlfo_link_map->l_addr;
    char text[8192];
    snprintf(text, sizeof text, "hello\n    #0 x+0x1 [%s+0x1 va=0x%lx]\nbye", self, (unsigned long)va);
    size_t len;
    char *out = mmk_report_symbolize(text, strlen(text), NULL, &len);
    cr_assert_not_null(out);
    cr_expect_eq(len, strlen(out));
    cr_expect(starts_with(out, "hello\n    #0 report_test_culprit (test_report.c:"), "%s", out);
    cr_expect(strstr(out, "]\nbye") && out[len - 1] == 'e', "%s", out);
    free(out);
}

Test(report, bad_arguments)
{
    mmk_fault f = { 0 };
    cr_expect_eq(mmk_fault_report(NULL, "x", 0), -EINVAL);
    cr_expect_eq(mmk_fault_report(&f, NULL, 0), -EINVAL);
    cr_expect_eq(mmk_fault_report(&f, "x", 2), -EINVAL);
    errno = 0;
    cr_expect_null(mmk_report_symbolize(NULL, 0, NULL, NULL));
    cr_expect_eq(errno, EINVAL);
    cr_expect_eq(mmk_report_start(), 0);
    cr_expect_eq(mmk_report_start(), 0, "a second start does nothing");
}
