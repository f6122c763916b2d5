/*
 * A hostile implementation: before it becomes a correct writer or reader
 * (it execs the real program given as its arguments), it tries to escape
 * the harness's confinement. Each attempt prints one line on stderr:
 *
 *     escape-attempt NAME: blocked (WHY)      or
 *     escape-attempt NAME: ESCAPED (WHAT)
 *
 * so that a run with --record shows what got through. Attempts that would
 * harm the machine if they succeeded only open for writing (core_pattern),
 * or act on things of their own (a segment with key ESCAPE_KEY, the decoy
 * file named by $ESCAPE_DECOY, a daemon named escape-daemon).
 *
 * The heavy attempts (10 000 forks, 8 GiB touched) run once per scenario
 * dir (a marker file there): explorations run the programs hundreds of
 * times. Built by harness/tests/escape.rs and .ci/run: cc -O2 -o escape escape.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#define ESCAPE_KEY 0x0e5ca9e
#define FORKS 10000
#define TOUCH_MIB (8 * 1024)

static void report(const char *name, int escaped, const char *detail)
{
    fprintf(stderr, "escape-attempt %s: %s (%s)\n", name, escaped ? "ESCAPED" : "blocked", detail);
}

/* errno by name ("ENOENT"): an interpreter's "No such file or directory"
 * on stderr means to the harness that a script is missing. */
static const char *errname(int err)
{
    const char *name = strerrorname_np(err);
    return name ? name : "unknown errno";
}

static void report_errno(const char *name, int err)
{
    report(name, 0, errname(err));
}

/* setns into another IPC namespace, then leave a segment there. */
static void try_setns_ipc(const char *path)
{
    char name[128];
    snprintf(name, sizeof name, "setns %s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report_errno(name, errno);
        return;
    }
    if (setns(fd, CLONE_NEWIPC) != 0) {
        report_errno(name, errno);
        close(fd);
        return;
    }
    close(fd);
    int id = shmget(ESCAPE_KEY, 4096, IPC_CREAT | 0600);
    char detail[64];
    snprintf(detail, sizeof detail, "entered; segment %d with key 0x%x left there", id, ESCAPE_KEY);
    /* Entering the scenario's own namespace again is no escape. */
    report(name, 1, detail);
}

/* Every IPC namespace visible through /proc that is not ours. */
static void try_other_namespaces(void)
{
    struct stat own;
    if (stat("/proc/self/ns/ipc", &own) != 0) {
        report_errno("stat own ipc ns", errno);
        return;
    }
    try_setns_ipc("/proc/1/ns/ipc");
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    int visible = 0, other_ns = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        visible++;
        char path[300];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%s/ns/ipc", e->d_name);
        if (stat(path, &st) == 0 && st.st_ino != own.st_ino && other_ns++ < 3)
            try_setns_ipc(path);
    }
    closedir(d);
    char detail[64];
    snprintf(detail, sizeof detail, "%d processes visible in /proc", visible);
    /* The scenario's own processes are a handful; the host has many more. */
    report("see host processes", visible > 64, detail);
}

static void try_tty(void)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (fd < 0) {
        report_errno("open /dev/tty", errno);
        return;
    }
    /* A harmless bell: the point is that the write arrives. */
    ssize_t n = write(fd, "\a", 1);
    report("write /dev/tty", n == 1, n == 1 ? "wrote to the terminal" : errname(errno));
    char c = ' ';
    if (ioctl(fd, TIOCSTI, &c) == 0)
        report("TIOCSTI", 1, "pushed a byte into the terminal's input");
    else
        report_errno("TIOCSTI", errno);
    close(fd);
}

static void try_read(const char *name, const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report_errno(name, errno);
        return;
    }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n <= 0) {
        report(name, 0, n == 0 ? "empty" : errname(errno));
        return;
    }
    report(name, 1, "read it");
}

static void try_open_write(const char *name, const char *path)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) {
        report_errno(name, errno);
        return;
    }
    close(fd);
    report(name, 1, "opened for writing (nothing written)");
}

static void try_decoy(void)
{
    const char *decoy = getenv("ESCAPE_DECOY");
    if (!decoy || !*decoy)
        return;
    int fd = open(decoy, O_WRONLY | O_APPEND);
    if (fd < 0) {
        report_errno("write the decoy", errno);
        return;
    }
    ssize_t n = write(fd, "escaped\n", 8);
    close(fd);
    report("write the decoy", n == 8, n == 8 ? "appended to it" : errname(errno));
}

static void try_files(void)
{
    int fd = open("/tmp/escape-was-here", O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        report_errno("create /tmp/escape-was-here", errno);
    } else {
        close(fd);
        unlink("/tmp/escape-was-here");
        report("create /tmp/escape-was-here", 1, "created (and removed)");
    }
    try_open_write("open core_pattern for writing", "/proc/sys/kernel/core_pattern");
    try_open_write("open sysrq-trigger for writing", "/proc/sysrq-trigger");
}

static void try_privileges(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "CapEff:", 7) == 0 || strncmp(line, "CapBnd:", 7) == 0) {
            unsigned long long caps = strtoull(line + 7, NULL, 16);
            char name[16];
            snprintf(name, sizeof name, "%.6s", line);
            line[strcspn(line, "\n")] = 0;
            report(name, caps != 0, line);
        }
    }
    if (f)
        fclose(f);
    if (mount("none", "/mnt", "tmpfs", 0, NULL) == 0) {
        umount("/mnt");
        report("mount a tmpfs", 1, "mounted (and unmounted)");
    } else {
        report_errno("mount a tmpfs", errno);
    }
    if (ptrace(PTRACE_ATTACH, 1, 0, 0) == 0) {
        ptrace(PTRACE_DETACH, 1, 0, 0);
        report("ptrace pid 1", 1, "attached (and detached)");
    } else {
        report_errno("ptrace pid 1", errno);
    }
    if (unshare(CLONE_NEWUSER) == 0)
        report("unshare a user namespace", 1, "a new user namespace (full capabilities in it)");
    else
        report_errno("unshare a user namespace", errno);
}

/* A daemon: double fork, a session of its own, then sleep for ten minutes. */
static void try_daemon(void)
{
    pid_t p = fork();
    if (p < 0) {
        report_errno("start a daemon", errno);
        return;
    }
    if (p == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        prctl(PR_SET_NAME, "escape-daemon", 0, 0, 0);
        for (int fd = 0; fd < 3; fd++)
            close(fd);
        sleep(600);
        _exit(0);
    }
    waitpid(p, NULL, 0);
    report("start a daemon", 0, "started; it must not outlive the scenario");
}

static void try_fork_bomb(void)
{
    static pid_t kids[FORKS];
    int n = 0, err = 0;
    for (; n < FORKS; n++) {
        pid_t p = fork();
        if (p < 0) {
            err = errno;
            break;
        }
        if (p == 0) {
            pause();
            _exit(0);
        }
        kids[n] = p;
    }
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    char detail[96];
    snprintf(detail, sizeof detail, "%d of %d forks, then %s", n, FORKS, n < FORKS ? errname(err) : "none refused");
    report("fork 10000 times", n == FORKS, detail);
}

/* Touch 8 GiB in a child (whom the OOM killer may take), a MiB at a time,
 * telling the parent through a pipe how far it got. */
static void try_memory(void)
{
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return;
    pid_t p = fork();
    if (p == 0) {
        close(pipefd[0]);
        for (int mib = 1; mib <= TOUCH_MIB; mib++) {
            char *chunk = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (chunk == MAP_FAILED)
                _exit(1);
            memset(chunk, 0xa5, 1 << 20);
            if (write(pipefd[1], &mib, sizeof mib) != sizeof mib)
                _exit(2);
        }
        _exit(0);
    }
    close(pipefd[1]);
    int mib = 0, got;
    while (read(pipefd[0], &got, sizeof got) == sizeof got)
        mib = got;
    close(pipefd[0]);
    int status = 0;
    waitpid(p, &status, 0);
    char detail[96];
    snprintf(detail, sizeof detail, "%d of %d MiB touched, then %s", mib, TOUCH_MIB,
             WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "the mapping was refused");
    report("touch 8 GiB", mib >= TOUCH_MIB, detail);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: escape PROGRAM [ARGS...]\n");
        return 2;
    }
    /* Unbuffered: the lines must be out before the exec. */
    setvbuf(stderr, NULL, _IONBF, 0);
    try_other_namespaces();
    try_tty();
    try_read("read /proc/1/environ", "/proc/1/environ");
    try_decoy();
    try_files();
    try_privileges();
    /* Once per scenario dir: the marker is in the working directory. */
    int marker = open(".escape-heavy-done", O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (marker >= 0) {
        close(marker);
        try_daemon();
        try_fork_bomb();
        try_memory();
    }
    execv(argv[1], argv + 1);
    fprintf(stderr, "escape: cannot run %s: %s\n", argv[1], errname(errno));
    return 127;
}
