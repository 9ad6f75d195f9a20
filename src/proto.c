/*
 * proto.c - encode and parse mmkitd messages (see proto.h for the layout).
 *
 * The parser reads untrusted bytes from other processes: every read goes
 * through a cursor that knows how many bytes are left, and a message is
 * accepted only if its length is exactly what its fields add up to.
 */
#include "proto.h"

#include <errno.h>
#include <string.h>

/* ---- cursors ------------------------------------------------------------ */

struct rd {
    const uint8_t *p;
    size_t left;
    int bad;
};

static uint64_t get(struct rd *r, size_t n)
{
    uint64_t v = 0;
    if (r->bad || r->left < n) {
        r->bad = 1;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    r->left -= n;
    return v;
}

static const uint8_t *get_bytes(struct rd *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint8_t *put(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + n;
}

/* ---- names -------------------------------------------------------------- */

int mmk__proto_name_ok(const char *name, size_t len)
{
    if (!name || len == 0 || len > MMK_SEG_NAME_MAX || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* ---- header ------------------------------------------------------------- */

static int get_header(struct rd *r, size_t len, uint16_t *type, uint32_t *id)
{
    if (len < MMK__PROTO_HDR || len > MMK__PROTO_MAX)
        return -EBADMSG;
    uint32_t magic = (uint32_t)get(r, 4);
    uint16_t version = (uint16_t)get(r, 2);
    *type = (uint16_t)get(r, 2);
    *id = (uint32_t)get(r, 4);
    uint32_t length = (uint32_t)get(r, 4);
    if (magic != MMK__PROTO_MAGIC || length != len)
        return -EBADMSG;
    if (version != MMK__PROTO_VERSION)
        return -EPROTO;
    return 0;
}

static uint8_t *put_header(uint8_t *p, uint16_t type, uint32_t id)
{
    p = put(p, MMK__PROTO_MAGIC, 4);
    p = put(p, MMK__PROTO_VERSION, 2);
    p = put(p, type, 2);
    p = put(p, id, 4);
    return put(p, 0, 4); /* length, filled in by set_length */
}

static void set_length(uint8_t *buf, size_t len)
{
    put(buf + 12, len, 4);
}

int mmk__proto_peek(const void *buf, size_t len, uint16_t *type, uint32_t *id)
{
    struct rd r = { buf, len, 0 };
    *type = 0;
    *id = 0;
    return get_header(&r, len, type, id);
}

/* ---- requests ----------------------------------------------------------- */

int mmk__proto_parse_req(const void *buf, size_t len, struct mmk__req *q)
{
    struct rd r = { buf, len, 0 };
    memset(q, 0, sizeof *q);
    int e = get_header(&r, len, &q->op, &q->id);
    if (e)
        return e;
    if (q->op < MMK__T_REQ_FIRST || q->op > MMK__T_REQ_LAST || q->id == 0)
        return -EBADMSG;
    q->a = get(&r, 8);
    q->b = get(&r, 8);
    q->mode = (uint32_t)get(&r, 4);
    q->flags = (uint32_t)get(&r, 4);
    q->namelen = (size_t)get(&r, 2);
    const uint8_t *name = get_bytes(&r, q->namelen);
    if (r.bad || r.left != 0 || q->namelen > MMK_SEG_NAME_MAX)
        return -EBADMSG;
    memcpy(q->name, name, q->namelen);
    q->name[q->namelen] = '\0';

    /* What each op allows: a name (required, optional or none), flags. */
    int name_needed = 1;
    uint32_t flags_ok = 0;
    switch (q->op) {
    case MMK__T_HELLO:
    case MMK_OP_PING:
        name_needed = -1;
        break;
    case MMK_OP_SUBSCRIBE:
        flags_ok = MMK__SUB_RING;
        name_needed = 0;
        break;
    case MMK_OP_LIST: /* the name is a cursor: list names after it */
    case MMK_OP_UNSUBSCRIBE: /* empty: every segment */
        name_needed = 0;
        break;
    case MMK_OP_OPEN:
        flags_ok = MMK_SEG_RDWR;
        break;
    default:
        break;
    }
    if (q->flags & ~flags_ok)
        return -EINVAL;
    if (name_needed < 0 && q->namelen)
        return -EINVAL;
    if ((name_needed > 0 || q->namelen) && !mmk__proto_name_ok(q->name, q->namelen))
        return -EINVAL;
    if (q->op == MMK_OP_CREATE && (q->mode & ~0777u))
        return -EINVAL;
    if (q->op != MMK_OP_CREATE && q->mode)
        return -EINVAL;
    return 0;
}

int mmk__proto_put_req(void *buf, const struct mmk__req *q)
{
    if (q->namelen > MMK_SEG_NAME_MAX)
        return -EINVAL;
    uint8_t *b = buf, *p = put_header(b, q->op, q->id);
    p = put(p, q->a, 8);
    p = put(p, q->b, 8);
    p = put(p, q->mode, 4);
    p = put(p, q->flags, 4);
    p = put(p, q->namelen, 2);
    memcpy(p, q->name, q->namelen);
    p += q->namelen;
    set_length(b, (size_t)(p - b));
    return (int)(p - b);
}

/* ---- info records --------------------------------------------------------- */

size_t mmk__proto_info_size(size_t namelen)
{
    return MMK__PROTO_INFO_MIN + namelen;
}

static int get_info(struct rd *r, mmk_seg_info *in)
{
    memset(in, 0, sizeof *in);
    size_t n = (size_t)get(r, 2);
    const uint8_t *name = get_bytes(r, n);
    if (r->bad || !mmk__proto_name_ok((const char *)name, n))
        return -EBADMSG;
    memcpy(in->name, name, n);
    in->size = get(r, 8);
    in->mode = (uint32_t)get(r, 4);
    in->uid = (uint32_t)get(r, 4);
    in->gid = (uint32_t)get(r, 4);
    in->version = get(r, 8);
    in->holders = (uint32_t)get(r, 4);
    in->subscribers = (uint32_t)get(r, 4);
    in->mtime_ns = get(r, 8);
    if (r->bad || (in->mode & ~0777u))
        return -EBADMSG;
    return 0;
}

static uint8_t *put_info(uint8_t *p, const mmk_seg_info *in, size_t n)
{
    p = put(p, n, 2);
    memcpy(p, in->name, n);
    p += n;
    p = put(p, in->size, 8);
    p = put(p, in->mode, 4);
    p = put(p, in->uid, 4);
    p = put(p, in->gid, 4);
    p = put(p, in->version, 8);
    p = put(p, in->holders, 4);
    p = put(p, in->subscribers, 4);
    return put(p, in->mtime_ns, 8);
}

/* ---- replies ------------------------------------------------------------ */

#define REPLY_LEN (MMK__PROTO_HDR + 20)

int mmk__proto_put_reply(void *buf, uint32_t id, uint16_t op, int32_t status, uint64_t version)
{
    uint8_t *b = buf, *p = put_header(b, MMK__T_REPLY, id);
    p = put(p, (uint32_t)status, 4);
    p = put(p, op, 2);
    p = put(p, 0, 1);
    p = put(p, 0, 1);
    p = put(p, 0, 4);
    p = put(p, version, 8);
    set_length(b, REPLY_LEN);
    return REPLY_LEN;
}

int mmk__proto_add_info(void *buf, size_t len, const mmk_seg_info *info)
{
    size_t n = strnlen(info->name, MMK_SEG_NAME_MAX + 1);
    if (!mmk__proto_name_ok(info->name, n) || len < REPLY_LEN)
        return -EINVAL;
    if (len + mmk__proto_info_size(n) > MMK__PROTO_MAX)
        return -EMSGSIZE;
    uint8_t *b = buf;
    struct rd r = { b + MMK__PROTO_HDR + 8, 4, 0 };
    uint32_t count = (uint32_t)get(&r, 4);
    put(b + MMK__PROTO_HDR + 8, count + 1, 4);
    uint8_t *end = put_info(b + len, info, n);
    set_length(b, (size_t)(end - b));
    return (int)(end - b);
}

void mmk__proto_set_more(void *buf, int more)
{
    put((uint8_t *)buf + MMK__PROTO_HDR + 6, more ? 1 : 0, 1);
}

int mmk__proto_parse_reply(const void *buf, size_t len, struct mmk__reply *q)
{
    struct rd r = { buf, len, 0 };
    uint16_t type;
    memset(q, 0, sizeof *q);
    int e = get_header(&r, len, &type, &q->id);
    if (e)
        return e;
    if (type != MMK__T_REPLY)
        return -EBADMSG;
    q->status = (int32_t)(uint32_t)get(&r, 4);
    q->op = (uint16_t)get(&r, 2);
    uint8_t more = (uint8_t)get(&r, 1);
    uint8_t zero = (uint8_t)get(&r, 1);
    q->count = (uint32_t)get(&r, 4);
    q->version = get(&r, 8);
    if (r.bad || more > 1 || zero != 0 || q->status > 0 || q->status < -MMK_ELAST)
        return -EBADMSG;
    q->more = more;
    q->records = r.p;
    q->records_len = r.left;
    /* Check every record now, so that callers can walk them without fail. */
    size_t pos = 0;
    mmk_seg_info tmp;
    for (uint32_t i = 0; i < q->count; i++)
        if (mmk__proto_next_info(q, &pos, &tmp))
            return -EBADMSG;
    if (pos != q->records_len)
        return -EBADMSG;
    return 0;
}

int mmk__proto_next_info(const struct mmk__reply *q, size_t *pos, mmk_seg_info *info)
{
    if (*pos > q->records_len)
        return -EBADMSG;
    struct rd r = { q->records + *pos, q->records_len - *pos, 0 };
    int e = get_info(&r, info);
    if (e)
        return e;
    *pos = q->records_len - r.left;
    return 0;
}

/* ---- events ------------------------------------------------------------- */

int mmk__proto_put_event(void *buf, const mmk_seg_event *ev)
{
    size_t n = strnlen(ev->info.name, MMK_SEG_NAME_MAX + 1);
    if (!mmk__proto_name_ok(ev->info.name, n))
        return -EINVAL;
    uint8_t *b = buf, *p = put_header(b, MMK__T_EVENT, 0);
    p = put(p, ev->seq, 8);
    p = put(p, ev->kind, 2);
    p = put(p, ev->offset, 8);
    p = put(p, ev->length, 8);
    p = put_info(p, &ev->info, n);
    set_length(b, (size_t)(p - b));
    return (int)(p - b);
}

int mmk__proto_parse_event(const void *buf, size_t len, mmk_seg_event *ev)
{
    struct rd r = { buf, len, 0 };
    uint16_t type;
    uint32_t id;
    memset(ev, 0, sizeof *ev);
    int e = get_header(&r, len, &type, &id);
    if (e)
        return e;
    if (type != MMK__T_EVENT || id != 0)
        return -EBADMSG;
    ev->seq = get(&r, 8);
    ev->kind = (unsigned)get(&r, 2);
    ev->offset = get(&r, 8);
    ev->length = get(&r, 8);
    if (r.bad || ev->kind < MMK_EV_CREATE || ev->kind > MMK_EV_DETACH)
        return -EBADMSG;
    if (get_info(&r, &ev->info) || r.left != 0)
        return -EBADMSG;
    return 0;
}
