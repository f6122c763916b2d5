//! The one process-control need that has no safe API: code that runs in a
//! forked child before `exec`.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make the child started by `cmd` die (SIGKILL) when the thread that spawns
/// it ends, whether it returns, panics or the whole process is SIGKILLed: a
/// supervisor that is killed outright must not leave its children running.
///
/// Linux delivers the parent-death signal when the *thread* that forked the
/// child exits, so spawn from a thread that outlives the child (a scenario's
/// own thread, which kills its children before it ends).
pub fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    let hook = move || {
        // SAFETY: prctl and getppid are async-signal-safe system calls that
        // touch no memory of ours; nothing here allocates or takes a lock,
        // as code between fork and exec must not.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then the
            // signal will never come, so go now. (In a new PID namespace the
            // parent outside it shows as 0; an orphan there shows its init.)
            let ppid = libc::getppid();
            if ppid != parent && ppid != 0 {
                libc::_exit(137);
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe calls (see above).
    unsafe {
        cmd.pre_exec(hook);
    }
}
