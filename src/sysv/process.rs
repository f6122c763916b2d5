//! The one process-control need that has no safe API: code that runs in a
//! child between its start and its `exec` (started by [`super::spawn`], or
//! by the standard library's fork for a test's command with a hook).

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Like [`super::spawn::Launch::die_with_parent`], for a command the
/// standard library starts, with SIGTERM: the child ends as a signalled
/// shmconf run does, cleaning up after itself. Tests start shmconf so, so
/// that a test binary killed mid-test (a timeout, ^C) leaves no run behind.
pub fn end_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    let hook = move || {
        // SAFETY: set_death_signal is async-signal-safe (see it).
        if unsafe { set_death_signal(libc::SIGTERM, parent) } {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook only makes async-signal-safe calls (see above).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// In a child before exec: `signal` when the thread that started it ends
/// (PR_SET_PDEATHSIG), or `_exit(128 + signal)` now if `parent` (the
/// process that started it) is gone already. False on a failure, errno set.
///
/// # Safety
/// Async-signal-safe: prctl(2), getppid(2), _exit(2); no memory of ours.
pub(super) unsafe fn set_death_signal(signal: libc::c_int, parent: libc::pid_t) -> bool {
    // SAFETY: prctl and getppid are system calls that touch no memory of
    // ours; nothing here allocates or takes a lock.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) == -1 {
            return false;
        }
        // The parent may have died before prctl took effect: then the
        // signal will never come, so go now. (In a new PID namespace the
        // parent outside it shows as 0; an orphan there shows its init.)
        let ppid = libc::getppid();
        if ppid != parent && ppid != 0 {
            libc::_exit(128 + signal);
        }
    }
    true
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

/// Classic BPF instructions over `struct seccomp_data`, for the two seccomp
/// programs of this module (the tracer's stops and the user-namespace ban).
mod bpf {
    use libc::{sock_filter, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};

    /// Offsets in struct seccomp_data: the call's number, its architecture,
    /// and the low 32 bits of its first argument (little-endian).
    pub const NR: u32 = 0;
    pub const ARCH: u32 = 4;
    pub const ARG0: u32 = 16;

    /// Load the 32-bit word at `offset` of seccomp_data.
    pub fn ld(offset: u32) -> sock_filter {
        sock_filter {
            code: (BPF_LD | BPF_W | BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: offset,
        }
    }

    /// Compare with `k` by `op` (BPF_JEQ, BPF_JGE, BPF_JSET), then skip `jt`
    /// instructions if it holds, `jf` if not.
    pub fn jmp(op: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter {
            code: (BPF_JMP | op | BPF_K) as u16,
            jt,
            jf,
            k,
        }
    }

    pub fn jeq(k: u32, jt: u8, jf: u8) -> sock_filter {
        jmp(BPF_JEQ, k, jt, jf)
    }

    /// End with the action `k` (SECCOMP_RET_*).
    pub fn ret(k: u32) -> sock_filter {
        sock_filter {
            code: (BPF_RET | BPF_K) as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
}

/// The seccomp program: SECCOMP_RET_TRACE (a ptrace stop before the call)
/// for [`traced_calls`] (read only on fd 0, write only on fds 1 and 2),
/// SECCOMP_RET_ALLOW for everything else, and for other architectures.
pub(super) fn stop_filter() -> Vec<libc::sock_filter> {
    use bpf::{jeq, ld, ret, ARCH, ARG0, NR};
    use traced_calls::*;
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

/// In a child before exec: be traced by the thread that started it
/// (PTRACE_TRACEME), with the seccomp program `filter` ([`stop_filter`])
/// that stops it before each of [`traced_calls`] (PTRACE_EVENT_SECCOMP,
/// once the tracer sets PTRACE_O_TRACESECCOMP after the exec stop). The
/// program runs unmodified; only the points at which it can be paused are
/// added. x86_64 only. False on a failure, errno set.
///
/// `no_new_privs` is set (seccomp requires it without CAP_SYS_ADMIN, e.g.
/// after the child dropped to another uid): a traced role cannot gain
/// privileges through a set-uid program.
///
/// # Safety
/// Async-signal-safe: ptrace(2) and prctl(2); the kernel copies `filter`
/// during the call.
pub(super) unsafe fn stop_at_ipc_calls(filter: &[libc::sock_filter]) -> bool {
    // SAFETY: ptrace(TRACEME) takes no memory; prctl reads `prog`, which
    // points into `filter`, alive and unchanged for the call.
    unsafe {
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
            return false;
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 {
            return false;
        }
        install_filter(filter)
    }
}

/// PR_SET_SECCOMP with `filter`; false on a failure, errno set.
///
/// # Safety
/// Async-signal-safe: one prctl(2) reading `filter`, which the kernel copies.
unsafe fn install_filter(filter: &[libc::sock_filter]) -> bool {
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` and the instructions it points to outlive the call;
    // the kernel only reads them.
    unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        ) != -1
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

/// A descriptor of process `pid` (pidfd_open(2)) that becomes readable
/// when the process ends, so one poll(2) can wait for its end beside its
/// pipes. An error where the kernel has none (ENOSYS before Linux 5.3 and
/// in some sandboxes) or the process is gone (ESRCH).
pub fn pidfd_open(pid: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just made for us and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) })
}

/// A resource bounded by [`Confinement::rlimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// RLIMIT_NPROC: processes of the real uid (all of them, not only the
    /// scenario's: the caller adds what the uid already runs).
    Processes,
    /// RLIMIT_AS: the address space of each process.
    AddressSpace,
}

/// What [`apply_confinement`] applies in the child, prepared before the
/// child is started (code between its start and its exec must not allocate).
#[derive(Default)]
pub struct Confinement {
    /// The files of the cgroups to join (one per hierarchy) that take the
    /// joining process's "0": `cgroup.procs` or, on cgroup v1, `tasks`.
    pub cgroups: Vec<std::fs::File>,
    pub rlimits: Vec<(Limit, u64)>,
    /// A mount namespace to enter (`/proc/PID/ns/mnt`); entering one resets
    /// the working directory, so `workdir` is entered again after it.
    pub mount_ns: Option<std::fs::File>,
    pub workdir: Option<std::ffi::CString>,
    /// Switch to these ids (after everything that needs privileges).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Capabilities kept (bit N = capability N); every other one leaves the
    /// bounding, permitted, effective, inheritable and ambient sets.
    pub keep_capabilities: u64,
}

/// The signals of `mask` (bit N-1 for signal N) back to their defaults
/// (a child's before its exec), by the raw system call: the C library's
/// sigaction refuses its own signals (32 and 33 in glibc), which a harness
/// started with them ignored would otherwise pass on. False on a failure,
/// errno set; EINVAL (SIGKILL, SIGSTOP) is nothing to reset.
///
/// # Safety
/// Async-signal-safe: rt_sigaction(2) on a local.
pub(super) unsafe fn reset_signals(mask: u64) -> bool {
    /// The kernel's `struct sigaction` (x86_64: handler, flags, restorer, mask).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if mask & (1 << (sig - 1)) == 0 {
            continue;
        }
        // SAFETY: rt_sigaction reads `default`, a local of the kernel's
        // layout, with the kernel's 8-byte signal set; errno is this task's.
        let set = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
        if set == -1 && super::Errno::last() != super::Errno::EINVAL {
            return false;
        }
    }
    true
}

/// Start `cmd` with every signal at its default disposition, whatever this
/// process ignores: as a user's shell starts a program, not as `nohup` or a
/// shell's `&` (which leave SIGHUP, SIGINT, SIGQUIT ignored across exec).
/// Tests that signal shmconf start it so.
pub fn with_default_signals(cmd: &mut Command) {
    let hook = || {
        // SAFETY: async-signal-safe (see the function).
        if unsafe { reset_signals(u64::MAX) } {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook only calls rt_sigaction(2).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// `struct __user_cap_header_struct` of <linux/capability.h>.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` of <linux/capability.h>.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// `CLOSE_RANGE_CLOEXEC` of <linux/close_range.h>.
const CLOSE_RANGE_CLOEXEC: libc::c_int = 1 << 2;

/// Least privilege for a program under test, as sandbox runners apply it in
/// the child before exec (see [`super::spawn::Launch::confine`], which
/// first sets every signal's disposition back to its default: what the
/// harness was started ignoring, as under `nohup` or a shell's `&`, must
/// not change how a program reacts to a signal a scenario sends), in this
/// order: join the scenario's cgroups, set
/// the rlimits, enter the scenario's mount namespace (and its working
/// directory again), give up the controlling terminal, mark every inherited
/// descriptor above 2 close-on-exec,
/// drop every capability not kept from the bounding set, clear the ambient
/// set, switch uid/gid, reduce the permitted, effective and inheritable sets
/// to the kept ones, set no_new_privs (no set-uid or file-capability
/// program can give any back), and forbid new user namespaces (in one, a
/// program would hold every capability again; see
/// [`no_user_namespace_filter`]). Any failure fails the spawn (the program
/// never runs unconfined).
///
/// False on a failure, errno set. `user_ns_filter` is
/// [`no_user_namespace_filter`]; `bounding` the capabilities the bounding
/// set holds (a bit per capability, as /proc/PID/status's CapBnd; all ones
/// where unknown): only those are dropped, one system call each. Run it
/// before the parent-death signal is set: a uid switch clears that signal.
///
/// # Safety
/// Async-signal-safe: every call below is a system call on memory that
/// `c` owns (prepared before the child was started, not touched since) or
/// on locals; nothing allocates or takes a lock. The uid and gid switches
/// are raw system calls: the C library's wrappers would signal every
/// thread of the harness, whose memory a `CLONE_VM` child shares.
pub(super) unsafe fn apply_confinement(c: &Confinement, user_ns_filter: &[libc::sock_filter], bounding: u64) -> bool {
    // SAFETY: as the function's contract says.
    unsafe {
        for procs in &c.cgroups {
            // "0": the writing process itself.
            if libc::write(std::os::fd::AsRawFd::as_raw_fd(procs), b"0".as_ptr().cast(), 1) != 1 {
                return false;
            }
        }
        for &(limit, value) in &c.rlimits {
            let resource = match limit {
                Limit::Processes => libc::RLIMIT_NPROC,
                Limit::AddressSpace => libc::RLIMIT_AS,
            };
            let rl = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &rl) == -1 {
                return false;
            }
        }
        if let Some(ns) = &c.mount_ns {
            if libc::setns(std::os::fd::AsRawFd::as_raw_fd(ns), libc::CLONE_NEWNS) == -1 {
                return false;
            }
        }
        if let Some(dir) = &c.workdir {
            if libc::chdir(dir.as_ptr()) == -1 {
                return false;
            }
        }
        // No controlling terminal: /dev/tty then fails (ENXIO), so the
        // user's terminal can be neither written to nor fed input
        // (TIOCSTI). TIOCNOTTY detaches only the caller when it is not a
        // session leader (a session of its own would make the program's
        // process group an orphaned one, which changes how its stops
        // behave and made traced runs four times slower).
        let tty = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if tty >= 0 {
            let detached = libc::ioctl(tty, libc::TIOCNOTTY);
            libc::close(tty);
            if detached == -1 {
                return false;
            }
        }
        if !mark_inherited_cloexec() || !drop_privileges(c, bounding) {
            return false;
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 {
            return false;
        }
        install_filter(user_ns_filter)
    }
}

/// Descriptors the harness itself inherited (a terminal on fd 3)
/// must not reach the program; close-on-exec keeps the standard
/// library's error pipe working until the exec. ENOSYS (before
/// Linux 5.11): nothing of ours is inheritable anyway. EINVAL: a
/// kernel without the CLOEXEC flag (gVisor): each open descriptor
/// is marked one by one, up to the descriptor limit.
///
/// # Safety
/// Async-signal-safe: close_range(2), getrlimit(2) and fcntl(2) only.
unsafe fn mark_inherited_cloexec() -> bool {
    // SAFETY: system calls on descriptors only; errno is this thread's.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 3, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) == -1 {
            match *libc::__errno_location() {
                libc::ENOSYS => {}
                libc::EINVAL => {
                    let mut nofile = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) == -1 {
                        return false;
                    }
                    let last = nofile.rlim_cur.min(1 << 20) as libc::c_int;
                    for fd in 3..last {
                        let flags = libc::fcntl(fd, libc::F_GETFD);
                        if flags != -1 && libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) == -1 {
                            return false;
                        }
                    }
                }
                _ => return false,
            }
        }
    }
    true
}

/// Drop every capability not kept from the bounding set (those `bounding`
/// says it holds), clear the ambient
/// set, switch gid and uid (no supplementary groups), and reduce the
/// permitted, effective and inheritable sets to the kept ones.
///
/// # Safety
/// Async-signal-safe: prctl(2), setgroups(2), setgid(2), setuid(2),
/// capget(2) and capset(2) on `c` (owned, untouched since the child started) and
/// locals.
unsafe fn drop_privileges(c: &Confinement, bounding: u64) -> bool {
    // SAFETY: as the function's contract says.
    unsafe {
        for cap in 0..64u32 {
            if (bounding & !c.keep_capabilities) & (1 << cap) == 0 {
                continue;
            }
            // EINVAL: past the kernel's last capability. EPERM: the
            // harness lacks CAP_SETPCAP (an unprivileged container), so
            // its bounding set, which is all a root program could regain
            // at exec, is the container's already.
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) == -1
                && !matches!(*libc::__errno_location(), libc::EINVAL | libc::EPERM)
            {
                return false;
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) == -1
            && *libc::__errno_location() != libc::EINVAL
        {
            return false;
        }
        if c.uid.is_some() || c.gid.is_some() {
            // Raw system calls: for this task only (see apply_confinement).
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == -1 {
                return false;
            }
            let gid = c.gid.or(c.uid);
            if let Some(gid) = gid {
                if libc::syscall(libc::SYS_setgid, gid) == -1 {
                    return false;
                }
            }
            if let Some(uid) = c.uid {
                if libc::syscall(libc::SYS_setuid, uid) == -1 {
                    return false;
                }
            }
        }
    }
    reduce_capabilities(c.keep_capabilities)
}

/// capget(2), then capset(2) of the permitted and effective sets masked by
/// `keep` (a bit per capability, linux/capability.h numbers) and an empty
/// inheritable set. Async-signal-safe (two system calls on locals), so
/// both a child before exec and a running process of ours use it.
fn reduce_capabilities(keep: u64) -> bool {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let Some(mut data) = capget() else {
        return false;
    };
    for (i, d) in data.iter_mut().enumerate() {
        let kept = (keep >> (32 * i)) as u32;
        d.permitted &= kept;
        d.effective &= kept;
        d.inheritable = 0;
    }
    // SAFETY: capset(2) reads the header and the two data structs, owned here.
    unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) != -1 }
}

/// The calling thread's capability sets as capget(2) gives them (v3: two
/// 32-bit halves). Async-signal-safe: one system call on locals.
fn capget() -> Option<[CapData; 2]> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) writes the two v3 data structs `data` holds, and
    // reads the header, both owned here and of the layout the kernel's.
    let done = unsafe { libc::syscall(libc::SYS_capget, &header as *const CapHeader, data.as_mut_ptr()) } != -1;
    done.then_some(data)
}

/// The calling thread's capability sets, a bit per capability
/// (linux/capability.h numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilitySets {
    pub effective: u64,
    pub permitted: u64,
}

impl CapabilitySets {
    /// The calling thread's sets, by capget(2).
    pub fn current() -> std::io::Result<CapabilitySets> {
        let data = capget().ok_or_else(std::io::Error::last_os_error)?;
        let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
        Ok(CapabilitySets {
            effective: join(data[0].effective, data[1].effective),
            permitted: join(data[0].permitted, data[1].permitted),
        })
    }
}

/// Reduce the calling thread's permitted and effective capabilities to
/// `keep` (a bit per capability, linux/capability.h numbers) and clear its
/// inheritable set: a single-threaded process of ours that needs only a
/// few gives up the rest for good.
pub fn keep_only_capabilities(keep: u64) -> std::io::Result<()> {
    if reduce_capabilities(keep) {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `AUDIT_ARCH_I386`: 32-bit calls of an x86_64 process have their own numbers.
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// The seccomp program that keeps a confined program from making a user
/// namespace (in which it would hold every capability again, and the
/// kernel's attack surface that comes with them), as Docker's default
/// profile does: unshare and clone with CLONE_NEWUSER fail with EPERM,
/// clone3 (whose flags a filter cannot read) with ENOSYS, so that libc falls
/// back to clone; x32 calls fail with ENOSYS. Everything else is allowed.
pub(super) fn no_user_namespace_filter() -> Vec<libc::sock_filter> {
    use bpf::{jmp, ld, ret, ARCH, ARG0, NR};
    use libc::{BPF_JEQ, BPF_JGE, BPF_JSET};
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // i386 numbers of <asm/unistd_32.h>.
    const I386_CLONE: u32 = 120;
    const I386_UNSHARE: u32 = 310;
    const CLONE3: u32 = 435; // the same on both

    // Layout (index: instruction), forward jumps only:
    //  0 ld arch   1 jeq x86_64 ?2:7   2 ld nr   3 jge x32 bit ?ENOSYS:4
    //  4 jeq clone3 ?ENOSYS:5   5 jeq unshare ?FLAGS:6   6 jeq clone ?FLAGS:ALLOW
    //  7 jeq i386 ?8:ALLOW   8 ld nr   9 jeq clone3 ?ENOSYS:10
    // 10 jeq unshare ?FLAGS:11   11 jeq clone ?FLAGS:ALLOW
    // 12 FLAGS: ld arg0   13 jset CLONE_NEWUSER ?EPERM:ALLOW
    // 14 ALLOW   15 EPERM   16 ENOSYS
    const FLAGS: usize = 12;
    const ALLOW: usize = 14;
    const EPERM: usize = 15;
    const ENOSYS: usize = 16;
    let to = |from: usize, target: usize| (target - from - 1) as u8;
    let p = vec![
        ld(ARCH),
        jmp(BPF_JEQ, AUDIT_ARCH_X86_64, 0, to(1, 7)),
        ld(NR),
        jmp(BPF_JGE, X32_SYSCALL_BIT, to(3, ENOSYS), 0),
        jmp(BPF_JEQ, CLONE3, to(4, ENOSYS), 0),
        jmp(BPF_JEQ, libc::SYS_unshare as u32, to(5, FLAGS), 0),
        jmp(BPF_JEQ, libc::SYS_clone as u32, to(6, FLAGS), to(6, ALLOW)),
        jmp(BPF_JEQ, AUDIT_ARCH_I386, 0, to(7, ALLOW)),
        ld(NR),
        jmp(BPF_JEQ, CLONE3, to(9, ENOSYS), 0),
        jmp(BPF_JEQ, I386_UNSHARE, to(10, FLAGS), 0),
        jmp(BPF_JEQ, I386_CLONE, to(11, FLAGS), to(11, ALLOW)),
        ld(ARG0),
        jmp(BPF_JSET, libc::CLONE_NEWUSER as u32, to(13, EPERM), to(13, ALLOW)),
        ret(libc::SECCOMP_RET_ALLOW),
        ret(libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    debug_assert_eq!(p.len(), ENOSYS + 1);
    p
}

/// The mount namespace [`make_mount_namespace`] makes, prepared before
/// the child is started from the harness's own mount table (which the child's copy is).
pub struct MountPlan {
    /// The one writable place: bound onto itself, so it is a mount of its own.
    pub writable_dir: std::ffi::CString,
    /// Every other mount point, with the flags it keeps (nosuid, nodev, ...),
    /// to be made read-only; none under /proc or `writable_dir`.
    pub read_only: Vec<(std::ffi::CString, libc::c_ulong)>,
}

/// In a child before exec: a mount namespace of its own, made before it
/// execs (so that it exists once the spawn returns): nothing propagates
/// back to the harness's mounts (/ is made private), /proc is a new
/// read-only mount of the child's PID namespace (so, for the init of a new
/// PID namespace, only that namespace's processes), `writable_dir` stays
/// writable and every other mount becomes read-only. False on a failure,
/// errno set (a container's security profile may forbid mount).
///
/// # Safety
/// Async-signal-safe: unshare(2) and mount(2) on C strings that `plan`
/// owns (prepared before the child was started, not touched since) or
/// literals; nothing allocates or takes a lock.
pub(super) unsafe fn make_mount_namespace(plan: &MountPlan) -> bool {
    let none = std::ptr::null::<libc::c_char>();
    let dir = plan.writable_dir.as_ptr();
    // SAFETY: as the function's contract says.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) == -1 {
            return false;
        }
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == -1
        {
            return false;
        }
        if libc::mount(dir, dir, none, libc::MS_BIND | libc::MS_REC, std::ptr::null()) == -1 {
            return false;
        }
        let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            proc_flags,
            std::ptr::null(),
        ) == -1
        {
            return false;
        }
        for (path, flags) in &plan.read_only {
            let flags = flags | libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
            // ENOENT, EINVAL: the mount went away since the plan was read
            // (a neighbour's: a container engine's layer, a sandbox's
            // tmpfs); its path, if any, is its parent mount's, which is
            // read-only already. Anything else fails the spawn.
            if libc::mount(none, path.as_ptr(), none, flags, std::ptr::null()) == -1
                && !matches!(*libc::__errno_location(), libc::ENOENT | libc::EINVAL)
            {
                return false;
            }
        }
    }
    true
}
