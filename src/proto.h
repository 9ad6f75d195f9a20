/*
 * proto.h - mmkitd's wire format, shared by the server and the client
 * library.  Every message is one SOCK_SEQPACKET datagram of at most
 * MMK__PROTO_MAX bytes; fields are little-endian and packed, read and
 * written field by field (no struct overlays), so the parser is the only
 * code that touches untrusted bytes.
 *
 *   header  (16)  u32 magic "MMK1" | u16 version | u16 type | u32 id | u32 length
 *   request (26+) u64 a | u64 b | u32 mode | u32 flags | u16 namelen | name
 *                 a = size (CREATE, GROW) or offset (PUBLISH); b = length (PUBLISH)
 *   reply   (20+) i32 status | u16 op | u8 more | u8 zero | u32 count | u64 version
 *                 | count x info
 *   event   (26+) u64 seq | u16 kind | u64 offset | u64 length | info
 *   info    (46+) u16 namelen | name | u64 size | u32 mode | u32 uid | u32 gid
 *                 | u64 version | u32 holders | u32 subscribers | u64 mtime_ns
 *
 * length is the datagram's exact size.  A request's id is chosen by the
 * client (non-zero); the reply carries it back.  Events carry id 0.  A
 * reply to OPEN carries the segment's descriptor (SCM_RIGHTS).  A SUBSCRIBE
 * to one segment with flag MMK__SUB_RING asks for the segment's event ring
 * (src/evring.h) instead of event messages: its reply carries two
 * descriptors, the ring (read-only) and its bell, and in version the ring
 * position the subscription starts at.
 */
#ifndef MMK_PROTO_H
#define MMK_PROTO_H

#include "mmkit.h"

#include <stddef.h>
#include <stdint.h>

#define MMK__PROTO_MAGIC   0x314b4d4du /* "MMK1" read as a little-endian u32 */
#define MMK__PROTO_VERSION 1
#define MMK__PROTO_MAX     65536
#define MMK__PROTO_HDR     16
#define MMK__PROTO_REQ     (MMK__PROTO_HDR + 26)
#define MMK__PROTO_INFO_MIN 46

/* Message types: requests are the MMK_OP_* values plus HELLO. */
enum {
    MMK__T_HELLO = 1,
    MMK__T_REQ_FIRST = MMK__T_HELLO,
    MMK__T_REQ_LAST = MMK_OP_PING,
    MMK__T_REPLY = 64,
    MMK__T_EVENT = 65
};

/* SUBSCRIBE flag: deliver through the segment's event ring. */
#define MMK__SUB_RING 0x1u

struct mmk__req {
    uint16_t op;
    uint32_t id;
    uint64_t a, b;
    uint32_t mode, flags;
    size_t   namelen;
    char     name[MMK_SEG_NAME_MAX + 1]; /* NUL-terminated */
};

struct mmk__reply {
    uint32_t id;
    uint16_t op;
    int32_t  status;
    int      more;
    uint32_t count;
    uint64_t version;
    const uint8_t *records;  /* count info records, inside the parsed buffer */
    size_t   records_len;
};

/* 1 if name is a valid segment name of len bytes (len excludes any NUL). */
int mmk__proto_name_ok(const char *name, size_t len);

/*
 * Parse a message whose header says type.  Each returns 0, or -EBADMSG
 * (not mmkit, wrong length, bad field), -EPROTO (another protocol version),
 * -EINVAL (a field out of range: bad name, unknown flag bits).
 * mmk__proto_peek reads only the header: type and id (for error replies).
 */
int mmk__proto_peek(const void *buf, size_t len, uint16_t *type, uint32_t *id);
int mmk__proto_parse_req(const void *buf, size_t len, struct mmk__req *r);
int mmk__proto_parse_reply(const void *buf, size_t len, struct mmk__reply *r);
int mmk__proto_parse_event(const void *buf, size_t len, mmk_seg_event *ev);
/* Read the next info record at *pos (advanced) of a parsed reply. */
int mmk__proto_next_info(const struct mmk__reply *r, size_t *pos, mmk_seg_info *info);

/*
 * Encoders write into buf (MMK__PROTO_MAX bytes) and return the message's
 * length, or -EMSGSIZE / -EINVAL.
 */
int mmk__proto_put_req(void *buf, const struct mmk__req *r);
/* A reply without records; append records with mmk__proto_add_info. */
int mmk__proto_put_reply(void *buf, uint32_t id, uint16_t op, int32_t status, uint64_t version);
/* Append one info record to the reply in buf of length len, set more; the
 * new length, or -EMSGSIZE if it does not fit (buf unchanged). */
int mmk__proto_add_info(void *buf, size_t len, const mmk_seg_info *info);
void mmk__proto_set_more(void *buf, int more);
int mmk__proto_put_event(void *buf, const mmk_seg_event *ev);
/* Size of an info record for a name of namelen bytes. */
size_t mmk__proto_info_size(size_t namelen);

#endif
