/*
 * A writer/reader pair whose system calls are made by threads, for
 * tests/threads.rs: system-call exploration must follow a program whatever
 * thread makes each call, as long as its calls are one at a time.
 *
 *   threaded ROLE MODE [streams]
 *
 * ROLE is writer or reader (the contract's pair: ftok("shmfile", 65),
 * 1024 bytes, 0666|IPC_CREAT; the writer stores one line whole, the reader
 * prints it and removes the segment). MODE says who makes the calls:
 *   bare        the main thread (the control: no thread at all);
 *   worker      one thread does it all while main joins it;
 *   relay       every call from a new thread, joined before the next (what
 *               the Go runtime does to a goroutine that moves between
 *               threads);
 *   concurrent  two threads make calls at once (the writer only): not one
 *               at a time, so it cannot be explored one call at a time;
 *   main-exits  one worker thread does it all; main ends first with
 *               pthread_exit, so the worker's end is the process's;
 *   exec-thread a thread other than main prints to stderr, then execs this
 *               program in bare mode (the exec takes main's id);
 *   launcher    a thread other than main forks, the child execs this
 *               program in bare mode, and that thread waits for it while
 *               main joins (a launcher of several threads, as Go's).
 * With "streams", the writer copies each byte into the segment as it reads
 * it (the original's gets()): a reader can print half a line.
 *
 * Calls go straight to the kernel (syscall(2)), output with write(2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum mode { BARE, WORKER, RELAY, CONCURRENT, MAIN_EXITS, EXEC_THREAD, LAUNCHER };
static enum mode mode;
static int streams;

/* One call, made by the thread the mode says. */
struct call {
    long nr;
    long a, b, c;
    long ret;
};

static void *make_call(void *arg)
{
    struct call *k = arg;
    k->ret = syscall(k->nr, k->a, k->b, k->c);
    if (k->ret < 0)
        k->ret = -errno;
    return NULL;
}

static long call3(long nr, long a, long b, long c)
{
    struct call k = {nr, a, b, c, 0};
    if (mode == RELAY) {
        pthread_t t;
        if (pthread_create(&t, NULL, make_call, &k) != 0 || pthread_join(t, NULL) != 0)
            abort();
    } else {
        make_call(&k);
    }
    return k.ret;
}

static void say(const char *s, size_t n)
{
    call3(SYS_write, 1, (long)s, (long)n);
}

static void fail(const char *why)
{
    call3(SYS_write, 2, (long)why, (long)strlen(why));
    call3(SYS_exit_group, 1, 0, 0);
}

static long segment(void)
{
    key_t key = ftok("shmfile", 65);
    if (key == -1)
        fail("threaded: ftok failed\n");
    long id = call3(SYS_shmget, key, 1024, 0666 | IPC_CREAT);
    if (id < 0)
        fail("threaded: shmget failed\n");
    return id;
}

static char *attach(long id)
{
    long addr = call3(SYS_shmat, id, 0, 0);
    if (addr < 0 && addr > -4096)
        fail("threaded: shmat failed\n");
    return (char *)addr;
}

static void writer(void)
{
    char *seg = attach(segment());
    say("Write Data: ", 12);
    char line[1024];
    size_t n = 0;
    int ended = 0;
    while (!ended && n < sizeof line - 1) {
        long got = call3(SYS_read, 0, (long)(line + n), 1);
        if (got < 0)
            fail("threaded: read failed\n");
        if (got == 0 || line[n] == '\n')
            ended = 1;
        else {
            if (streams)
                seg[n] = line[n];
            n++;
        }
    }
    if (n == 0 && !ended)
        fail("threaded: no line\n");
    memcpy(seg, line, n);
    seg[n] = '\0';
    char out[1100];
    int len = snprintf(out, sizeof out, "Data written in memory: %s\n", seg);
    say(out, (size_t)len);
    call3(SYS_shmdt, (long)seg, 0, 0);
}

static void reader(void)
{
    long id = segment();
    char *seg = attach(id);
    char out[1100];
    int len = snprintf(out, sizeof out, "Data read from memory: %.*s\n", 1023, seg);
    say(out, (size_t)len);
    call3(SYS_shmdt, (long)seg, 0, 0);
    call3(SYS_shmctl, id, IPC_RMID, 0);
}

static void (*role)(void);
static char **args;

/* exec-thread: this program again, bare, from a thread other than main. */
static void *exec_bare(void *arg)
{
    (void)arg;
    call3(SYS_write, 2, (long)"threaded: exec from a thread\n", 29);
    char *argv[] = {"/proc/self/exe", args[1], "bare", NULL};
    execv("/proc/self/exe", argv);
    abort();
}

/* launcher: fork, the child execs this program bare, wait for it here. */
static int child_status;

static void *launch_bare(void *arg)
{
    (void)arg;
    pid_t child = fork();
    if (child == 0) {
        char *argv[] = {"/proc/self/exe", args[1], "bare", NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    if (child < 0 || waitpid(child, &child_status, 0) != child)
        abort();
    return NULL;
}

static void *run_role(void *arg)
{
    (void)arg;
    role();
    return NULL;
}

/* The second thread of "concurrent": it prints, waits until main is about
 * to make its first call, and prints again, so one of its calls comes
 * while main's is pending (or main's while its is): calls at once, however
 * the two threads are scheduled. */
static atomic_int started, main_calls;

static void *chatter(void *arg)
{
    (void)arg;
    atomic_store(&started, 1);
    call3(SYS_write, 2, (long)"threaded: chatter\n", 18);
    while (!atomic_load(&main_calls))
        ;
    call3(SYS_write, 2, (long)"threaded: chatter\n", 18);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        fail("usage: threaded writer|reader bare|worker|relay|concurrent [streams]\n");
    args = argv;
    role = strcmp(argv[1], "writer") == 0 ? writer : reader;
    streams = argc > 3 && strcmp(argv[3], "streams") == 0;
    if (strcmp(argv[2], "bare") == 0)
        mode = BARE;
    else if (strcmp(argv[2], "worker") == 0)
        mode = WORKER;
    else if (strcmp(argv[2], "relay") == 0)
        mode = RELAY;
    else if (strcmp(argv[2], "concurrent") == 0)
        mode = CONCURRENT;
    else if (strcmp(argv[2], "main-exits") == 0)
        mode = MAIN_EXITS;
    else if (strcmp(argv[2], "exec-thread") == 0)
        mode = EXEC_THREAD;
    else if (strcmp(argv[2], "launcher") == 0)
        mode = LAUNCHER;
    else
        fail("threaded: unknown mode\n");

    pthread_t t;
    switch (mode) {
    case BARE:
    case RELAY:
        role();
        break;
    case WORKER:
        if (pthread_create(&t, NULL, run_role, NULL) != 0 || pthread_join(t, NULL) != 0)
            abort();
        break;
    case CONCURRENT:
        if (pthread_create(&t, NULL, chatter, NULL) != 0)
            abort();
        while (!atomic_load(&started))
            ;
        atomic_store(&main_calls, 1);
        role();
        pthread_join(t, NULL);
        break;
    case MAIN_EXITS:
        if (pthread_create(&t, NULL, run_role, NULL) != 0)
            abort();
        pthread_exit(NULL);
    case EXEC_THREAD:
        if (pthread_create(&t, NULL, exec_bare, NULL) != 0)
            abort();
        pthread_join(t, NULL); /* never returns: the exec replaces us */
        abort();
    case LAUNCHER:
        if (pthread_create(&t, NULL, launch_bare, NULL) != 0 || pthread_join(t, NULL) != 0)
            abort();
        call3(SYS_exit_group, WIFEXITED(child_status) ? WEXITSTATUS(child_status) : 1, 0, 0);
    }
    call3(SYS_exit_group, 0, 0, 0);
    return 0;
}
