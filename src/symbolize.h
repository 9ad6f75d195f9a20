/*
 * symbolize.h - internal: frame keys to function, file and line, with
 * elfutils' libdwfl.  Never used inside a signal handler (it allocates and
 * opens files); the reporter thread and `mmkit symbolize` use it.
 *
 *     struct mmk__symbolizer *s = mmk__symbolizer_new("/srv/debug");
 *     char *out = mmk__report_rewrite(text, len, mmk__symbolize_key, s, &n);
 *     mmk__symbolizer_free(s);
 */
#ifndef MMK_SYMBOLIZE_H
#define MMK_SYMBOLIZE_H

#include "report_text.h"

struct mmk__symbolizer;

/*
 * A symbolizer that looks for each frame's object, in this order: in
 * debug_dir (if not NULL) as .build-id/xx/rest.debug, NAME.debug and NAME;
 * at the path the report names; in /usr/lib/debug/.build-id.  A file is
 * used only if its build-id is the frame's (or the frame has none and the
 * file is the one at the reported path).  Objects found are kept open for
 * later frames.  NULL with errno on failure.
 */
struct mmk__symbolizer *mmk__symbolizer_new(const char *debug_dir);
void mmk__symbolizer_free(struct mmk__symbolizer *s);

/* An mmk__resolve_fn; ctx is a struct mmk__symbolizer.  nm's strings stay
 * valid until the symbolizer is freed. */
int mmk__symbolize_key(void *ctx, const struct mmk__frame_key *k, struct mmk__frame_name *nm);

#endif
