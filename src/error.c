/* error.c - mmk_strerror and mmk_version. */
#include "mmkit.h"

#include <limits.h>
#include <string.h>

/*
 * The version is set in the Makefile (VERSION) and repeated in mmkit.h: the
 * build passes the Makefile's numbers in, and a mismatch stops it here.
 */
#if defined(MMK_BUILD_VERSION_MAJOR)
#if MMK_BUILD_VERSION_MAJOR != MMK_VERSION_MAJOR || MMK_BUILD_VERSION_MINOR != MMK_VERSION_MINOR || \
    MMK_BUILD_VERSION_PATCH != MMK_VERSION_PATCH
#error "MMK_VERSION_* in include/mmkit.h disagree with VERSION in the Makefile"
#endif
_Static_assert(sizeof MMK_BUILD_VERSION_STRING == sizeof MMK_VERSION_STRING,
               "MMK_VERSION_STRING in include/mmkit.h disagrees with VERSION in the Makefile");
#endif

/* strerror() is not guaranteed thread-safe; strerrordesc_np (glibc >= 2.32)
 * returns a static description. */
extern const char *strerrordesc_np(int errnum);

const char *mmk_strerror(int err)
{
    if (err == INT_MIN)
        return "unknown error"; /* -INT_MIN does not exist */
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:            return "success";
    case MMK_EBUDGET:  return "mapping budget exhausted (vm.max_map_count share)";
    case MMK_ESIZE:    return "sizes do not match";
    case MMK_ESTATE:   return "object is not in a state that allows this call";
    case MMK_ECORRUPT: return "metadata failed a consistency check";
    default:           break;
    }
    const char *s = err < MMK_EBASE ? strerrordesc_np(err) : NULL;
    return s ? s : "unknown error";
}

const char *mmk_version(void)
{
    return MMK_VERSION_STRING;
}
