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

/// The system calls at which a traced role stops (x86_64 numbers): every
/// SysV shared-memory call, reading the standard input, writing the
/// standard output or error, and the exit. Anything else runs untraced.
pub mod traced_calls {
    pub const READ: i64 = libc::SYS_read;
    pub const WRITE: i64 = libc::SYS_write;
    pub const READV: i64 = libc::SYS_readv;
    pub const WRITEV: i64 = libc::SYS_writev;
    pub const SHMGET: i64 = libc::SYS_shmget;
    pub const SHMAT: i64 = libc::SYS_shmat;
    pub const SHMCTL: i64 = libc::SYS_shmctl;
    pub const SHMDT: i64 = libc::SYS_shmdt;
    pub const EXIT: i64 = libc::SYS_exit;
    pub const EXIT_GROUP: i64 = libc::SYS_exit_group;
}

/// `AUDIT_ARCH_X86_64` of <linux/audit.h>: a filter must check the
/// architecture, or a 32-bit call with another numbering would slip by.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// The seccomp program: SECCOMP_RET_TRACE (a ptrace stop before the call)
/// for [`traced_calls`] (read only on fd 0, write only on fds 1 and 2),
/// SECCOMP_RET_ALLOW for everything else, and for other architectures.
fn stop_filter() -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    use traced_calls::*;
    // Offsets in struct seccomp_data: nr, arch, instruction pointer, args.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const ARG0: u32 = 16; // low 32 bits on little-endian x86_64
    let ld = |off: u32| libc::sock_filter {
        code: (BPF_LD | BPF_W | BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: off,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ret = |k: u32| libc::sock_filter {
        code: (BPF_RET | BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // Forward jumps only, as BPF requires; offsets count from the next
    // instruction. Layout (index: instruction):
    //  0 ld arch        1 jeq x86_64 ?2:ALLOW   2 ld nr
    //  3-8 jeq shm*/exit ?TRACE:next            9-10 jeq read/readv ?FD0:next
    // 11-12 jeq write/writev ?FD12:next|ALLOW  13 FD0: ld arg0   14 jeq 0 ?TRACE:ALLOW
    // 15 FD12: ld arg0  16 jeq 1 ?TRACE:next   17 jeq 2 ?TRACE:ALLOW
    // 18 ALLOW          19 TRACE
    const ALLOW: usize = 18;
    const TRACE: usize = 19;
    const FD0: usize = 13;
    const FD12: usize = 15;
    let to = |from: usize, target: usize| (target - from - 1) as u8;
    let mut p = vec![ld(ARCH), jeq(AUDIT_ARCH_X86_64, 0, to(1, ALLOW)), ld(NR)];
    for (i, nr) in [SHMGET, SHMAT, SHMDT, SHMCTL, EXIT_GROUP, EXIT].into_iter().enumerate() {
        p.push(jeq(nr as u32, to(3 + i, TRACE), 0));
    }
    p.push(jeq(READ as u32, to(9, FD0), 0));
    p.push(jeq(READV as u32, to(10, FD0), 0));
    p.push(jeq(WRITE as u32, to(11, FD12), 0));
    p.push(jeq(WRITEV as u32, to(12, FD12), to(12, ALLOW)));
    p.push(ld(ARG0));
    p.push(jeq(0, to(14, TRACE), to(14, ALLOW)));
    p.push(ld(ARG0));
    p.push(jeq(1, to(16, TRACE), 0));
    p.push(jeq(2, to(17, TRACE), to(17, ALLOW)));
    p.push(ret(libc::SECCOMP_RET_ALLOW));
    p.push(ret(libc::SECCOMP_RET_TRACE));
    debug_assert_eq!(p.len(), TRACE + 1);
    p
}

/// Start the child of `cmd` traced by the spawning thread (PTRACE_TRACEME),
/// with a seccomp filter that stops it before each of [`traced_calls`]
/// (PTRACE_EVENT_SECCOMP, once the tracer sets PTRACE_O_TRACESECCOMP after
/// the exec stop). The program runs unmodified; only the points at which it
/// can be paused are added. x86_64 only.
///
/// `no_new_privs` is set (seccomp requires it without CAP_SYS_ADMIN, e.g.
/// after the child dropped to another uid): a traced role cannot gain
/// privileges through a set-uid program.
pub fn trace_at_ipc_calls(cmd: &mut Command) {
    let filter = stop_filter();
    let hook = move || {
        let prog = libc::sock_fprog {
            len: filter.len() as libc::c_ushort,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: ptrace(TRACEME) and prctl are async-signal-safe system
        // calls; `prog` points into `filter`, which the closure owns and
        // which lives (unchanged, allocated before the fork) until exec, and
        // the kernel copies the program during the call. Nothing here
        // allocates or takes a lock.
        unsafe {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog as libc::c_ulong,
                0,
                0,
            ) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe calls (see above).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Bytes in a pipe not read yet (FIONREAD; either end of a pipe answers).
pub fn pipe_unread(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to
    // `n`, alive for the call; an fd that is not a pipe only fails.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) };
    (r == 0).then_some(n.max(0) as usize)
}
