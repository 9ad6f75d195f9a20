/*
 * message_builder.c - build Cap'n Proto-style messages straight into a file
 * without knowing how big they will get, then read them back with read(2).
 *
 * Cap'n Proto frames a message as a segment table (u32 segment count - 1,
 * u32 size of each segment in 8-byte words, padded to a word) followed by the
 * segments.  Builders normally need several segments because a buffer cannot
 * grow in place.  In an arena it can: each message is one segment that grows
 * word by word, every pointer stays valid, and the file ends up holding the
 * stream of messages byte for byte, ready for any flat-array reader.
 *
 * Each message here is a root struct { seq :UInt64; text :Text }.
 *
 *   usage: message_builder [FILE] [MESSAGES]
 */
#include "mmkit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef uint64_t word;

/* ---- building ---------------------------------------------------------- */

struct builder {
    mmk_arena *arena;
    uint32_t *table;   /* this message's segment table */
    word *segment;     /* first word of its only segment */
};

static word *alloc_words(struct builder *b, size_t n)
{
    word *w = mmk_arena_alloc(b->arena, n * sizeof(word), sizeof(word));
    if (!w) {
        fprintf(stderr, "message_builder: alloc: %s\n", mmk_strerror(-errno));
        exit(1);
    }
    return w;
}

/* Offset in words from the end of the pointer at p to target. */
static word offset_bits(const word *p, const word *target)
{
    int64_t off = target - (p + 1);
    return ((word)(uint32_t)(int32_t)off << 2) & 0xfffffffcu;
}

static void struct_pointer(word *p, const word *target, uint16_t data_words, uint16_t ptrs)
{
    *p = offset_bits(p, target) | (word)data_words << 32 | (word)ptrs << 48;
}

static void byte_list_pointer(word *p, const word *target, uint32_t count)
{
    *p = 1 | offset_bits(p, target) | (word)2 << 32 /* byte elements */ | (word)count << 35;
}

static void message_begin(struct builder *b)
{
    b->table = (uint32_t *)alloc_words(b, 1); /* one segment: {0, size} */
    b->table[0] = 0;
    b->segment = alloc_words(b, 1);           /* the root pointer */
}

/* end: one past the last word allocated for this message. */
static void message_end(struct builder *b, const word *end)
{
    /* Everything allocated since the table belongs to the one segment. */
    b->table[1] = (uint32_t)(end - b->segment);
}

static void build_one(struct builder *b, uint64_t seq, const char *text)
{
    message_begin(b);
    word *root = alloc_words(b, 2); /* data: seq; pointers: text */
    struct_pointer(b->segment, root, 1, 1);
    root[0] = seq;
    size_t len = strlen(text) + 1; /* Text keeps its NUL */
    word *bytes = alloc_words(b, (len + 7) / 8);
    memcpy(bytes, text, len);
    byte_list_pointer(&root[1], bytes, (uint32_t)len);
    message_end(b, bytes + (len + 7) / 8);
}

/* The text of message i: a length nobody knows in advance. */
static void make_text(uint64_t i, char *buf, size_t cap)
{
    size_t len = (size_t)((i * 2654435761u) % 3000);
    if (len >= cap)
        len = cap - 1;
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)('a' + (i + k) % 26);
    buf[len] = 0;
}

/* ---- reading back with plain read(2) -------------------------------------- */

static int read_all(int fd, void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static int check_stream(const char *path, uint64_t messages)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    char want[4096];
    static word seg[1 << 12];
    uint64_t seen = 0;
    uint32_t table[2];
    while (read_all(fd, table, sizeof table) == 0) {
        if (table[0] != 0 || table[1] > sizeof seg / sizeof seg[0] ||
            read_all(fd, seg, table[1] * sizeof(word)) != 0)
            break;
        /* Follow the pointers as a Cap'n Proto reader would. */
        word root_ptr = seg[0];
        int32_t off = (int32_t)(uint32_t)root_ptr >> 2;
        const word *root = &seg[1 + off];
        const word *text_ptr = &root[1];
        int32_t toff = (int32_t)(uint32_t)*text_ptr >> 2;
        uint32_t count = (uint32_t)(*text_ptr >> 35);
        const char *text = (const char *)(text_ptr + 1 + toff);
        make_text(seen, want, sizeof want);
        if (root[0] != seen || count != strlen(want) + 1 || strcmp(text, want) != 0) {
            fprintf(stderr, "message %llu does not match\n", (unsigned long long)seen);
            break;
        }
        seen++;
    }
    close(fd);
    return seen == messages ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/tmp/mmkit-messages.bin";
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 20000;

    /* 64 GiB of address space; the file holds only what is written. */
    struct builder b = { .arena = mmk_arena_open(path, (size_t)64 << 30,
                                                 MMK_ARENA_CREATE | MMK_ARENA_TRUNC) };
    if (!b.arena) {
        fprintf(stderr, "message_builder: %s: %s\n", path, mmk_strerror(-errno));
        return 1;
    }
    char text[4096];
    for (uint64_t i = 0; i < n; i++) {
        make_text(i, text, sizeof text);
        build_one(&b, i, text);
    }
    size_t used = mmk_arena_used(b.arena);
    struct mmk_arena_stats st;
    mmk_arena_stats(b.arena, &st);
    int r = mmk_arena_close(b.arena); /* trims the file to exactly `used` */
    if (r < 0) {
        fprintf(stderr, "message_builder: close: %s\n", mmk_strerror(r));
        return 1;
    }
    printf("built %llu messages, %zu bytes, in %s (%zu growth faults, %zu growths)\n",
           (unsigned long long)n, used, path, st.faults, st.grows);
    if (check_stream(path, n) != 0) {
        fprintf(stderr, "message_builder: reading back with read(2) failed\n");
        return 1;
    }
    printf("read back %llu messages with read(2): all match\n", (unsigned long long)n);
    return 0;
}
