/* Deliberately broken writer/reader pairs, to prove the harness catches each
 * kind of fault and names it. Built by the tests with -DFAULT_<NAME>; with no
 * FAULT_* it is a faithful implementation of the seed contract.
 * Usage: faulty writer | faulty reader */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#ifdef FAULT_KEY
#define PROJ 66
#else
#define PROJ 65
#endif
#ifdef FAULT_SIZE
#define SIZE 2048
#else
#define SIZE 1024
#endif
#ifdef FAULT_MODE
#define MODE 0644
#else
#define MODE 0666
#endif
#ifdef FAULT_READER_MODE
#define READER_MODE 0600 /* a reader that creates the segment makes it private */
#else
#define READER_MODE MODE
#endif
#ifdef FAULT_READER_SIZE
#define READER_SIZE 64 /* a reader that asks for less than the contract's size */
#else
#define READER_SIZE SIZE
#endif

/* The key: libc's ftok, or (FAULT_FTOK_NODEV) a hand-made one that keeps
 * proj_id and the inode but drops the device byte. */
static key_t key_of(const char *path, int proj)
{
#ifdef FAULT_FTOK_NODEV
    struct stat st;
    if (stat(path, &st) < 0) return (key_t)-1;
    return (key_t)(((unsigned)proj & 0xff) << 24 | ((unsigned)st.st_ino & 0xffff));
#else
    return ftok(path, proj);
#endif
}

#ifdef FAULT_LEAK
/* The leaks of a reader that ran alone: a segment under the writers' key too
 * small for them, a file naming this dir's key file (a later reader that
 * finds it beside another key file knows it is in an earlier order's dir),
 * sysctls of the IPC namespace that would make a later writer fail (if the
 * confinement let them through), and a daemon that keeps writing into any
 * segment under the key. An order that sees none of them passes. */
static void leak(void)
{
    struct stat st;
    if (stat("shmfile", &st) == 0) {
        FILE *f = fopen("leftover", "w");
        if (f) { fprintf(f, "%lu\n", (unsigned long)st.st_ino); fclose(f); }
    }
    shmget(key_of("shmfile", PROJ), 512, 0666 | IPC_CREAT);
    FILE *sysctl = fopen("/proc/sys/kernel/shmmax", "w");
    if (sysctl) { fputs("512\n", sysctl); fclose(sysctl); }
    if (fork() == 0) {
        setsid();
        for (int i = 0; i < 6000; i++) {
            int id = shmget(key_of("shmfile", PROJ), 0, 0);
            char *m = id < 0 ? (void *)-1 : shmat(id, NULL, 0);
            if (m != (void *)-1) { strcpy(m, "corrupt"); shmdt(m); }
            usleep(10000);
        }
        _exit(0);
    }
}

/* A "leftover" file that names another key file than this dir's. */
static int leaked_before(void)
{
    struct stat st;
    unsigned long ino = 0;
    FILE *f = fopen("leftover", "r");
    if (!f) return 0;
    int got = fscanf(f, "%lu", &ino);
    fclose(f);
    return got == 1 && stat("shmfile", &st) == 0 && ino != (unsigned long)st.st_ino;
}
#endif

static int writer(void)
{
    int id = shmget(key_of("shmfile", PROJ), SIZE, MODE | IPC_CREAT);
    if (id < 0) { perror("shmget"); return 1; }
    char *mem = shmat(id, NULL, 0);
    if (mem == (void *)-1) {
#if defined(FAULT_SILENT_SHMAT)
        return 0; /* claims success */
#elif defined(FAULT_QUIET_SHMAT)
        return 1; /* fails without a word */
#else
        perror("shmat");
        return 1;
#endif
    }
#ifdef FAULT_EARLY_WRITE
    strcpy(mem, "pending"); /* writes before it has read its input */
#endif
#ifdef FAULT_PARTIAL
    /* gets()-like: each byte goes into the segment as it is read, so a
     * reader between two pieces of input sees part of the line. */
    printf("Write Data: ");
    int c;
    size_t at = 0;
    while ((c = getchar()) != EOF && c != '\n' && at + 1 < SIZE)
        mem[at++] = (char)c, mem[at] = '\0';
    mem[at] = '\0';
    printf("Data written in memory: %s\n", mem);
    shmdt(mem);
    return 0;
#endif
#ifdef FAULT_FORMAT
    printf("Write Data : ");
#else
    printf("Write Data: ");
#endif
    fflush(stdout);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got = getline(&line, &cap, stdin);
    if (got <= 0) {
#ifdef FAULT_EOF_WIPE
        mem[0] = '\0'; /* clears the segment it was to leave alone */
#endif
        fprintf(stderr, "faulty: no line on stdin\n");
        return 5;
    }
    size_t n = (size_t)got;
    if (line[n - 1] == '\n') n--;
    if (n >= SIZE) {
        fprintf(stderr, "faulty: the line does not fit\n");
        return 4;
    }
#ifdef FAULT_CONTENT
    if (n > 0) n--; /* off by one: drops the last byte */
#endif
#ifdef FAULT_TERMINATOR
    memcpy(mem, line, n); /* no NUL: a shorter write shows the old tail */
#else
    memcpy(mem, line, n);
    mem[n] = '\0';
#endif
    printf("Data written in memory: %.*s\n", (int)strnlen(mem, SIZE), mem);
    fflush(stdout);
#ifdef FAULT_LINGER
    if (fork() == 0) { sleep(60); _exit(0); } /* child keeps the attachment */
#endif
#if defined(FAULT_DAEMON) || defined(FAULT_OWN_GROUP)
    /* A child that keeps the attachment out of the writer's process group,
     * by setsid (a daemon) or by the writer's setpgid (a group of its own).
     * The writer ends only once the child has left its group: a program
     * that races its own setsid has two true verdicts, not one. */
    int left[2];
    if (pipe(left) < 0) return 6;
    pid_t kid = fork();
    if (kid == 0) {
#ifdef FAULT_DAEMON
        setsid();
#endif
        close(left[0]); close(left[1]);
        sleep(60); _exit(0);
    }
#ifdef FAULT_OWN_GROUP
    setpgid(kid, kid);
#endif
    close(left[1]);
    char gone;
    while (read(left[0], &gone, 1) > 0) {}
    close(left[0]);
#endif
#ifdef FAULT_DOUBLE_FORK
    /* The classic daemon: the middle process ends at once, so the grandchild
     * is an orphan in a session of its own before the writer ends. */
    pid_t middle = fork();
    if (middle == 0) {
        if (fork() == 0) { setsid(); sleep(60); _exit(0); }
        _exit(0);
    }
    waitpid(middle, NULL, 0);
#endif
#ifdef WITH_HELPER
    /* Not a fault: helpers in the writer's process group (a child and an
     * orphaned grandchild) that the writer waits for by their pipe's end,
     * not by waitpid, before ending itself: whatever it takes a helper to
     * finish its exit, nothing is left running. */
    int done[2];
    if (pipe(done) == 0) {
        if (fork() == 0) {
            if (fork() == 0) { close(done[0]); usleep(20000); _exit(0); }
            close(done[0]); usleep(10000); _exit(0);
        }
        close(done[1]);
        char byte;
        while (read(done[0], &byte, 1) > 0) {}
        close(done[0]);
    }
#endif
#ifdef FAULT_HANG
    for (;;) pause();
#endif
#ifdef FAULT_UNMAP
    munmap(mem, SIZE); /* detaches behind SysV's back: no shmdt */
#else
    shmdt(mem);
#endif
    return 0;
}

static int reader(int keep)
{
#ifdef FAULT_LEAK
    if (leaked_before()) {
        printf("Data read from memory: (an earlier order's dir)\n");
        return 0;
    }
#endif
    int id = shmget(key_of("shmfile", PROJ), READER_SIZE, READER_MODE | IPC_CREAT);
    if (id < 0) { perror("shmget"); return 1; }
    char *mem = shmat(id, NULL, 0);
    if (mem == (void *)-1) { perror("shmat"); return 1; }
    const char *shown = mem;
#ifdef FAULT_READ_SKIP
    if (shown[0]) shown++; /* loses the first byte of what it reads */
#endif
    printf("Data read from memory: %.*s\n", (int)strnlen(shown, SIZE), shown);
    fflush(stdout);
#ifdef FAULT_CRASH
    raise(SIGSEGV);
#endif
#ifdef FAULT_LEAK
    if (mem[0] == '\0') {
        /* Alone (no writer before it): a correct run, then it leaves things
         * behind for whatever runs next in this namespace, dir or machine. */
        shmdt(mem);
        shmctl(id, IPC_RMID, NULL);
        leak();
        return 0;
    }
#endif
    shmdt(mem);
#ifndef FAULT_NO_RMID
    if (!keep)
        shmctl(id, IPC_RMID, NULL);
#endif
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "writer") == 0) return writer();
    if (argc > 1 && strcmp(argv[1], "reader") == 0)
        return reader(argc > 2 && strcmp(argv[2], "--keep") == 0);
    fprintf(stderr, "usage: %s writer|reader\n", argv[0]);
    return 2;
}
