/* tmpdir.h - a fresh directory under $TMPDIR per test (removed after it),
 * paths inside it and the size of a file there.  The including file names
 * the directory: #define TMPDIR_TAG "mmk-...-XXXXXX" before the include,
 * and uses setup/teardown as the test's .init/.fini. */
#ifndef MMK_TEST_TMPDIR_H
#define MMK_TEST_TMPDIR_H

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TMPDIR_TAG
#error "define TMPDIR_TAG (a mkdtemp template) before including tmpdir.h"
#endif

static size_t page;
static char dir[PATH_MAX];

__attribute__((unused)) static void setup(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/" TMPDIR_TAG, t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
}

__attribute__((unused)) static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

__attribute__((unused)) static const char *path_of(const char *name)
{
    static char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

__attribute__((unused)) static off_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
    return st.st_size;
}

#endif
