/* Zoo, C, hardened pair: what the writer and reader share (options, key).
 * Every call's result is checked; any failure is one line on stderr in this
 * program's own words and a nonzero exit. Faults for the zoo's negative tests
 * are switched on by ZOO_FAULT=<name> (see ../README.md). */
#ifndef ZOO_HARDENED_H
#define ZOO_HARDENED_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/types.h>

struct opts {
    const char *key_file;
    long proj_id;
    int have_key;
    key_t key;
    size_t size;
    int mode;
    int exclusive; /* writer only */
    int keep;      /* reader only */
};

static const char *prog = "zoo-c";

static int fault(const char *name)
{
    const char *f = getenv("ZOO_FAULT");
    return f != NULL && strcmp(f, name) == 0;
}

/* Exit status for failures; the silent-exit fault reports success instead. */
static void vdie(const char *fmt, va_list ap)
{
    if (fault("writer-silent-exit") && strstr(prog, "writer") != NULL)
        exit(0);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    exit(1);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdie(fmt, ap);
}

static void usage(const char *why)
{
    fprintf(stderr, "%s: %s\nusage: %s [--key-file PATH] [--proj-id N] [--key HEX] [--size N] "
                    "[--mode OCTAL] [--exclusive] [--keep]\n", prog, why, prog);
    exit(2);
}

static unsigned long number(const char *text, int base, const char *what)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, base);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-')
        usage(what);
    return v;
}

static struct opts parse(int argc, char **argv, int writer)
{
    struct opts o = { "shmfile", 65, 0, 0, 1024, 0666, 0, 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--exclusive") == 0 && writer) {
            o.exclusive = 1;
        } else if (strcmp(a, "--keep") == 0 && !writer) {
            o.keep = 1;
        } else if (strcmp(a, "--key-file") == 0 && more) {
            o.key_file = argv[++i];
        } else if (strcmp(a, "--proj-id") == 0 && more) {
            o.proj_id = (long)number(argv[++i], 0, "--proj-id wants a number");
        } else if (strcmp(a, "--key") == 0 && more) {
            const char *t = argv[++i];
            if (strncmp(t, "0x", 2) == 0 || strncmp(t, "0X", 2) == 0)
                t += 2;
            unsigned long k = number(t, 16, "--key wants a hexadecimal key");
            if (k > 0xffffffffUL)
                usage("--key does not fit 32 bits");
            if (k == 0)
                usage("--key 0 is IPC_PRIVATE, which no other process could find");
            o.key = (key_t)(unsigned int)k;
            o.have_key = 1;
        } else if (strcmp(a, "--size") == 0 && more) {
            o.size = number(argv[++i], 10, "--size wants a decimal byte count");
            if (o.size == 0)
                usage("--size must be at least 1");
        } else if (strcmp(a, "--mode") == 0 && more) {
            unsigned long m = number(argv[++i], 8, "--mode wants octal permission bits");
            if (m > 0777)
                usage("--mode has bits beyond 0777");
            o.mode = (int)m;
        } else {
            usage("unexpected argument");
        }
    }
    return o;
}

/* ftok's key, refusing the failure the seed silently turned into 0xffffffff. */
static key_t key_of(const struct opts *o)
{
    if (o->have_key)
        return o->key;
    long proj = o->proj_id;
    if (fault("wrong-proj-id"))
        proj += 1;
    if ((proj & 0xff) == 0)
        die("project id %ld has a zero low byte, which ftok cannot use", o->proj_id);
    struct stat st;
    if (stat(o->key_file, &st) != 0)
        die("key file %s unusable: %s", o->key_file, strerror(errno));
    if (fault("ftok-drops-device")) /* the fault: a home-made ftok without st_dev's byte */
        return (key_t)(((unsigned)proj & 0xff) << 24 | ((unsigned)st.st_ino & 0xffff));
    key_t key = ftok(o->key_file, (int)proj);
    if (key == (key_t)-1)
        die("ftok(%s) failed: %s", o->key_file, strerror(errno));
    return key;
}

#endif
