/* ipcs.c - `mmkit ipcs` and `mmkit ipcrm`: list and remove mmkit's SysV
 * segments, a thin layer over mmk_shmctl (SHM_INFO, SHM_STAT_ANY, IPC_RMID). */
#include "cli.h"
#include "mmkit.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void store_error(const char *what, int r)
{
    char dir[4096] = "?";
    mmk_shm_dir(dir, sizeof dir);
    if (r == -EPERM)
        cli_error("%s: store %s is unsafe: writable by others without the sticky bit, "
                  "or owned by a user other than root and you", what, dir);
    else
        cli_error("%s: store %s: %s", what, dir, mmk_strerror(r));
}

static const char *owner_name(uid_t uid, char *buf, size_t len)
{
    struct passwd *pw = getpwuid(uid);
    if (pw)
        snprintf(buf, len, "%s", pw->pw_name);
    else
        snprintf(buf, len, "%u", (unsigned)uid);
    return buf;
}

static const char *status_of(const struct shmid_ds *ds)
{
    int dest = (ds->shm_perm.mode & SHM_DEST) != 0, locked = (ds->shm_perm.mode & SHM_LOCKED) != 0;
    return dest && locked ? "dest locked" : dest ? "dest" : locked ? "locked" : "";
}

static int print_limits(void)
{
    struct shminfo lim;
    int r = mmk_shm_limits(&lim);
    if (r < 0) {
        store_error("ipcs -l", r);
        return 1;
    }
    char dir[4096] = "";
    mmk_shm_dir(dir, sizeof dir);
    printf("store: %s\n", dir);
    printf("max number of segments = %lu\n", lim.shmmni);
    printf("max seg size (kbytes) = %lu\n", lim.shmmax / 1024);
    printf("max total shared memory (kbytes) = %lu (not enforced; the disk is)\n",
           lim.shmall / 1024 * 4);
    printf("min seg size (bytes) = %lu\n", lim.shmmin);
    return 0;
}

int cmd_ipcs(int argc, char **argv)
{
    int json = 0, limits = 0;
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "limits", no_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "mlh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': break; /* segments are all there is */
        case 'j': json = 1; break;
        case 'l': limits = 1; break;
        case 'h':
            puts("usage: mmkit ipcs [-m] [--json] [-l|--limits]");
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) {
        cli_error("ipcs: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (limits)
        return print_limits();
    struct shm_info info;
    int maxid = mmk_shmctl(0, SHM_INFO, (struct shmid_ds *)&info);
    if (maxid < 0) {
        store_error("ipcs", maxid);
        return 1;
    }
    if (json)
        putchar('[');
    else
        printf("\n------ Shared Memory Segments (mmkit) --------\n"
               "%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n",
               "key", "shmid", "owner", "perms", "bytes", "nattch", "status");
    int n = 0;
    for (int id = 0; id <= maxid; id++) {
        struct shmid_ds ds;
        if (mmk_shmctl(id, SHM_STAT_ANY, &ds) < 0)
            continue;
        char key[16], perms[8], owner[64];
        snprintf(key, sizeof key, "0x%08x", (unsigned)ds.shm_perm.__key);
        snprintf(perms, sizeof perms, "%o", ds.shm_perm.mode & 0777);
        owner_name(ds.shm_perm.uid, owner, sizeof owner);
        if (json) {
            printf("%s{\"key\":\"%s\",\"shmid\":%d,\"owner\":", n ? "," : "", key, id);
            cli_json_string(owner);
            printf(",\"perms\":\"%s\",\"bytes\":%zu,\"nattch\":%lu,\"status\":", perms,
                   (size_t)ds.shm_segsz, (unsigned long)ds.shm_nattch);
            cli_json_string(status_of(&ds));
            putchar('}');
        } else {
            printf("%-10s %-10d %-10s %-10s %-10zu %-10lu %-12s\n", key, id, owner, perms,
                   (size_t)ds.shm_segsz, (unsigned long)ds.shm_nattch, status_of(&ds));
        }
        n++;
    }
    if (json)
        puts("]");
    else
        putchar('\n');
    return 0;
}

static int parse_num(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int remove_id(int id, const char *what)
{
    int r = mmk_shmctl(id, IPC_RMID, NULL);
    if (r < 0) {
        cli_error("ipcrm %s: %s", what, r == -EINVAL ? "no such segment" : mmk_strerror(r));
        return 1;
    }
    return 0;
}

int cmd_ipcrm(int argc, char **argv)
{
    static const struct option opts[] = {
        { "shmem-id", required_argument, NULL, 'm' },
        { "shmem-key", required_argument, NULL, 'M' },
        { "all", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c, failed = 0, did = 0;
    long long v;
    char what[64];
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:M:ah", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (parse_num(optarg, 0, 0x7fffffff, &v) < 0) {
                cli_error("ipcrm: bad id '%s'", optarg);
                return 2;
            }
            snprintf(what, sizeof what, "-m %lld", v);
            failed |= remove_id((int)v, what);
            did = 1;
            break;
        case 'M': {
            if (parse_num(optarg, -0x80000000LL, 0xffffffffLL, &v) < 0 || v == 0) {
                cli_error("ipcrm: bad key '%s'", optarg);
                return 2;
            }
            snprintf(what, sizeof what, "-M %s", optarg);
            int id = mmk_shmget((key_t)v, 0, 0);
            if (id < 0) {
                cli_error("ipcrm %s: %s", what, id == -ENOENT ? "no such key" : mmk_strerror(id));
                failed = 1;
            } else {
                failed |= remove_id(id, what);
            }
            did = 1;
            break;
        }
        case 'a': {
            struct shm_info info;
            int maxid = mmk_shmctl(0, SHM_INFO, (struct shmid_ds *)&info);
            if (maxid < 0) {
                store_error("ipcrm --all", maxid);
                return 1;
            }
            for (int id = 0; id <= maxid; id++) {
                struct shmid_ds ds;
                if (mmk_shmctl(id, SHM_STAT_ANY, &ds) < 0)
                    continue;
                snprintf(what, sizeof what, "--all (shmid %d)", id);
                failed |= remove_id(id, what);
            }
            did = 1;
            break;
        }
        case 'h':
            puts("usage: mmkit ipcrm -m ID | -M KEY | --all");
            return 0;
        default:
            return 2;
        }
    }
    if (!did || optind < argc) {
        cli_error("usage: mmkit ipcrm -m ID | -M KEY | --all");
        return 2;
    }
    return failed;
}
