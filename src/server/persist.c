/*
 * persist.c - --state-dir: segments kept as files so that a restarted
 * server has them back, contents included.
 *
 *   DIR/index       "mmkit-state 1 NEXT_SEQ", then one line per segment:
 *                   NAME SIZE MODE(octal) UID GID VERSION MTIME_NS
 *   DIR/NAME.seg    the contents (sparse: holes stay holes)
 *
 * Every file is written to DIR/.tmp-NAME, fsynced and renamed over the old
 * one, and the directory is fsynced, so a crash leaves the old or the new
 * file, never half of one.  The index is rewritten after every batch of
 * events that created, removed or grew a segment; contents are written at
 * shutdown (SIGTERM, SIGINT), when the memory stops changing.  A server
 * killed with SIGKILL keeps its names and sizes and loses the contents
 * written since it last stopped cleanly; that is the price of segments
 * living in memory rather than in files.
 *
 * The directory is the server's own (created 0700), but its files are
 * still parsed as untrusted: a bad line is skipped with a message.
 */
#include "server.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_CHUNK (1u << 20)

static int path_of(const struct mmk__srv *srv, char *buf, size_t cap, const char *prefix,
                   const char *name, const char *suffix)
{
    int n = snprintf(buf, cap, "%s/%s%s%s", srv->opts.state_dir, prefix, name, suffix);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int sync_dir(const struct mmk__srv *srv)
{
    int fd = mmk__sys_open(srv->opts.state_dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int e = mmk__sys_fsync(fd);
    mmk__sys_close(fd);
    return e;
}

/* Copy the data runs of [0, size) from in to out (both at the same offsets). */
static int copy_data(int in, int out, uint64_t size)
{
    char *buf = malloc(COPY_CHUNK);
    if (!buf)
        return -ENOMEM;
    int e = 0;
    off_t pos = 0;
    while ((uint64_t)pos < size) {
        off_t data = mmk__sys_lseek(in, pos, SEEK_DATA);
        if (data == -ENXIO || (data >= 0 && (uint64_t)data >= size))
            break; /* only holes left */
        if (data < 0) {
            e = (int)data;
            break;
        }
        off_t hole = mmk__sys_lseek(in, data, SEEK_HOLE);
        if (hole < 0 || (uint64_t)hole > size)
            hole = (off_t)size;
        for (pos = data; pos < hole;) {
            size_t want = (size_t)(hole - pos) < COPY_CHUNK ? (size_t)(hole - pos) : COPY_CHUNK;
            ssize_t n = mmk__sys_pread(in, buf, want, pos);
            if (n <= 0) {
                e = n < 0 ? (int)n : 0;
                pos = hole;
                break;
            }
            e = mmk__sys_pwrite_all(out, buf, (size_t)n, pos);
            if (e)
                break;
            pos += n;
        }
        if (e)
            break;
    }
    free(buf);
    return e;
}

static int save_contents(struct mmk__srv *srv, const struct mmk__seg *s, uint64_t size)
{
    char tmp[4096], dst[4096];
    int e = path_of(srv, tmp, sizeof tmp, ".tmp-", s->name, "");
    if (!e)
        e = path_of(srv, dst, sizeof dst, "", s->name, ".seg");
    if (e)
        return e;
    int fd = mmk__sys_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return fd;
    e = mmk__sys_ftruncate(fd, (off_t)size);
    if (!e)
        e = copy_data(s->fd, fd, size);
    if (!e)
        e = mmk__sys_fsync(fd);
    mmk__sys_close(fd);
    if (!e)
        e = mmk__sys_rename(tmp, dst);
    if (e)
        mmk__sys_unlink(tmp);
    return e;
}

int mmk__persist_index(struct mmk__srv *srv)
{
    char tmp[4096], dst[4096];
    int e = path_of(srv, tmp, sizeof tmp, ".tmp-", "index", "");
    if (!e)
        e = path_of(srv, dst, sizeof dst, "", "index", "");
    if (e)
        return e;
    int fd = mmk__sys_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return fd;
    char line[MMK_SEG_NAME_MAX + 160];
    int n = snprintf(line, sizeof line, "mmkit-state 1 %" PRIu64 "\n", srv->events.next_seq);
    e = mmk__sys_write_all(fd, line, (size_t)n);
    for (size_t i = 0; !e && i < srv->segs.n; i++) {
        mmk_seg_info in;
        mmk__seg_info(srv->segs.v[i], &in);
        n = snprintf(line, sizeof line, "%s %" PRIu64 " %03o %u %u %" PRIu64 " %" PRIu64 "\n",
                     in.name, in.size, in.mode, in.uid, in.gid, in.version, in.mtime_ns);
        e = mmk__sys_write_all(fd, line, (size_t)n);
    }
    if (!e)
        e = mmk__sys_fsync(fd);
    mmk__sys_close(fd);
    if (!e)
        e = mmk__sys_rename(tmp, dst);
    if (!e)
        e = sync_dir(srv);
    else
        mmk__sys_unlink(tmp);
    return e;
}

int mmk__persist_all(struct mmk__srv *srv)
{
    int first = 0;
    for (size_t i = 0; i < srv->segs.n; i++) {
        mmk_seg_info in;
        mmk__seg_info(srv->segs.v[i], &in);
        int e = save_contents(srv, srv->segs.v[i], in.size);
        if (e) {
            mmk__err(srv, "cannot save segment %s: %s", in.name, mmk_strerror(e));
            if (!first)
                first = e;
        }
    }
    int e = mmk__persist_index(srv);
    return first ? first : e;
}

void mmk__persist_forget(struct mmk__srv *srv, const char *name)
{
    char path[4096];
    if (!srv->opts.state_dir || path_of(srv, path, sizeof path, "", name, ".seg"))
        return;
    mmk__sys_unlink(path);
}

/* Fill s from DIR/NAME.seg if there is one. */
static int load_contents(struct mmk__srv *srv, struct mmk__seg *s)
{
    char path[4096];
    int e = path_of(srv, path, sizeof path, "", s->name, ".seg");
    if (e)
        return e;
    int fd = mmk__sys_open(path, O_RDONLY, 0);
    if (fd == -ENOENT)
        return 0; /* created and never saved: zeros */
    if (fd < 0)
        return fd;
    e = copy_data(fd, s->fd, s->size);
    mmk__sys_close(fd);
    return e;
}

static int load_line(struct mmk__srv *srv, const char *line)
{
    char name[MMK_SEG_NAME_MAX + 2];
    uint64_t size, version, mtime;
    unsigned mode, uid, gid;
    char extra;
    if (sscanf(line, "%256s %" SCNu64 " %o %u %u %" SCNu64 " %" SCNu64 " %c", name, &size, &mode,
               &uid, &gid, &version, &mtime, &extra) != 7)
        return -EBADMSG;
    if (!mmk__proto_name_ok(name, strlen(name)) || mode > 0777)
        return -EBADMSG;
    struct mmk__seg *s;
    int e = mmk__segtab_create(&srv->segs, name, size, mode, uid, gid, &s);
    if (e)
        return e;
    s->version = version;
    s->mtime_ns = mtime;
    e = load_contents(srv, s);
    if (e)
        mmk__err(srv, "segment %s: contents not restored: %s", name, mmk_strerror(e));
    return 0;
}

int mmk__persist_load(struct mmk__srv *srv)
{
    int e = mmk__sys_mkdir(srv->opts.state_dir, 0700);
    if (e && e != -EEXIST)
        return e;
    char path[4096];
    e = path_of(srv, path, sizeof path, "", "index", "");
    if (e)
        return e;
    int fd = mmk__sys_open(path, O_RDONLY, 0);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    FILE *f = fdopen(fd, "r");
    if (!f) {
        mmk__sys_close(fd);
        return -ENOMEM;
    }
    char line[1024];
    uint64_t next_seq = 0;
    if (!fgets(line, sizeof line, f) || sscanf(line, "mmkit-state 1 %" SCNu64, &next_seq) != 1) {
        fclose(f);
        mmk__err(srv, "%s: not an mmkit state index; starting empty", path);
        return 0;
    }
    /* Sequence numbers go on where the last run stopped. */
    if (next_seq > srv->events.next_seq)
        srv->events.next_seq = next_seq;
    unsigned lineno = 1;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        e = load_line(srv, line);
        if (e)
            mmk__err(srv, "%s:%u: entry skipped: %s", path, lineno, mmk_strerror(e));
    }
    fclose(f);
    return 0;
}
