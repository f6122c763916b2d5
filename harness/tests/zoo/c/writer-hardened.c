/* Zoo, C, hardened writer. Creates (IPC_EXCL first, so it knows whether the
 * segment is its own), attaches, reads one line into a private buffer, and
 * only then stores it: a line that does not fit or no line at all leaves the
 * segment as it was (a segment made for the refused line is removed again). */
#include "hardened.h"
#include <unistd.h>

static int shmid = -1, created = 0;
static char *seg = NULL;

/* Undo what this run did to the table, then fail. */
static void refuse(const char *fmt, ...)
{
    int saved = errno;
    if (seg != NULL && shmdt(seg) != 0)
        fprintf(stderr, "%s: detaching after a refusal failed: %s\n", prog, strerror(errno));
    if (created && shmctl(shmid, IPC_RMID, NULL) != 0)
        fprintf(stderr, "%s: removing the segment made for the refused line failed: %s\n", prog,
                strerror(errno));
    errno = saved;
    va_list ap;
    va_start(ap, fmt);
    vdie(fmt, ap);
}

int main(int argc, char **argv)
{
    prog = "zoo-c-writer";
    struct opts o = parse(argc, argv, 1);
    key_t key = key_of(&o);

    for (int attempt = 0; shmid < 0; attempt++) {
        shmid = shmget(key, o.size, o.mode | IPC_CREAT | IPC_EXCL);
        if (shmid >= 0) {
            created = 1;
            break;
        }
        if (errno != EEXIST)
            die("shmget(create %#x, %zu bytes) failed: %s", (unsigned)key, o.size, strerror(errno));
        if (o.exclusive)
            die("a segment with key %#x exists already (exclusive create asked)", (unsigned)key);
        shmid = shmget(key, o.size, o.mode);
        /* Removed between our two calls: try creating again, a bounded number of times. */
        if (shmid < 0 && (errno != ENOENT || attempt >= 8))
            die("shmget(open %#x, %zu bytes) failed: %s", (unsigned)key, o.size, strerror(errno));
    }
    void *addr = shmat(shmid, NULL, 0);
    if (addr == (void *)-1)
        refuse("shmat failed: %s", strerror(errno));
    seg = addr;

    if (fputs("Write Data: ", stdout) == EOF || fflush(stdout) != 0)
        refuse("cannot write the prompt: %s", strerror(errno));

    size_t limit = fault("writer-truncate") ? 100 : o.size - 1;
    char *line = malloc(o.size);
    if (line == NULL)
        refuse("out of memory for a %zu-byte line", o.size);
    size_t len = 0;
    int c, got_any = 0, overlong = 0;
    while ((c = getchar()) != EOF) {
        got_any = 1;
        if (c == '\n')
            break;
        if (len == limit) {
            if (fault("writer-truncate"))
                continue;
            overlong = 1;
            break;
        }
        line[len++] = (char)c;
        if (fault("writer-streams-line")) /* the fault: each byte into the segment as it comes */
            seg[len - 1] = (char)c;
    }
    if (ferror(stdin))
        refuse("reading standard input failed: %s", strerror(errno));
    if (!got_any) {
        if (fault("writer-clear-at-eof"))
            memset(seg, 0, o.size);
        refuse("nothing to store: standard input was empty");
    }
    if (overlong)
        refuse("input line exceeds the %zu bytes the segment can hold with its terminator",
               o.size - 1);

    memcpy(seg, line, len);
    if (!fault("writer-no-nul"))
        seg[len] = '\0';
    free(line);

    size_t shown = strnlen(seg, o.size);
    if (fputs("Data written in memory: ", stdout) == EOF || fwrite(seg, 1, shown, stdout) != shown
        || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        die("cannot write the confirmation: %s", strerror(errno));
    if (shmdt(seg) != 0)
        die("shmdt failed: %s", strerror(errno));
    return 0;
}
