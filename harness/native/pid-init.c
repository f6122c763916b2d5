/* The init of a scenario's PID namespace: as PID 1 it reaps every orphan
 * the scenario's programs leave, until the harness kills it (which kills
 * the namespace); it dies with the harness too (the parent-death signal set
 * before exec is kept across it). The same as `shmconf pid-init`, in a few
 * kilobytes instead of the whole harness: one is started per scenario, and
 * per order when an exploration runs hundreds of them.
 *
 * SIGCHLD is blocked and caught, so one sigsuspend(2) sleeps until a child
 * has ended (a SIGCHLD sent between the reaping loop and the sleep stays
 * pending and ends the sleep at once): no polling, no lost wake-up. */
#define _GNU_SOURCE
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>

static void on_child(int sig) { (void)sig; }

int main(void)
{
    sigset_t chld, others;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, &others) != 0)
        return 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_child;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) != 0)
        return 1;
    sigdelset(&others, SIGCHLD);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        sigsuspend(&others);
    }
}
