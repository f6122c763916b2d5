//! Starting a program without copying the harness: a `clone(CLONE_VM |
//! CLONE_VFORK)` child that runs what it must do before `exec` from data
//! prepared beforehand ([`Launch`]), as posix_spawn(3) does, instead of
//! fork(2) and closures.
//!
//! Why: the harness is multi-threaded, and a fork copies its page tables;
//! until the child execs, every write of either side is a copy-on-write
//! fault whose TLB flush interrupts the CPUs the harness's other threads
//! run on. Measured, that was a third of an exploration's time
//! (BENCHMARKS.md, "The spawn mechanism"). A `CLONE_VM` child shares the
//! harness's memory instead, and `CLONE_VFORK` suspends the calling
//! thread until the child execs or exits, so the child may use the
//! caller's data (read-only) and its own stack.
//!
//! What keeps the shared address space sound, in the child:
//! * It runs on a stack of its own (a per-thread mapping with a guard
//!   page), only the functions of [`super::process`] documented as
//!   async-signal-safe, and no allocation, lock, panic or C library call
//!   that touches process-wide state: the uid and gid switches are raw
//!   system calls, not the C library's wrappers (which signal every thread
//!   of the process they believe they are in: the harness's).
//! * Every signal is blocked around the clone, and the child sets every
//!   handled signal back to its default before unblocking any: a harness
//!   handler never runs on the child's stack.
//! * It reports a failure by writing the stage and errno into a [`Failure`]
//!   the caller reads once the clone returns, then `_exit`s.
//! * It has its own descriptor table, working directory, credentials and
//!   signal dispositions (no CLONE_FILES, CLONE_FS, CLONE_SIGHAND): what it
//!   changes before exec is its own.
//!
//! Nothing of the harness is mapped into the child after its exec, so
//! unlike a fork it inherits no SysV attachment either.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicI32, Ordering};

use super::process::{self, Confinement, MountPlan};

/// A program to start and what its child does before exec, all prepared
/// before the child exists: its arguments, environment (the harness's, with
/// the changes given) and working directory, then in this order a new
/// mount namespace, confinement, tracing and a parent-death signal.
pub struct Launch {
    /// The program first.
    argv: Vec<OsString>,
    /// Changes to the harness's environment: a value, or removed.
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<std::path::PathBuf>,
    mount_namespace: Option<MountPlan>,
    confinement: Option<Confinement>,
    traced: bool,
    death_signal: Option<libc::c_int>,
}

impl Launch {
    /// `program` (a path, or a name looked for on PATH), with no arguments.
    pub fn new(program: impl AsRef<OsStr>) -> Launch {
        Launch {
            argv: vec![program.as_ref().to_os_string()],
            env: Vec::new(),
            cwd: None,
            mount_namespace: None,
            confinement: None,
            traced: false,
            death_signal: None,
        }
    }
}

/// A started program: its pid (the leader of a new process group), and the
/// harness's ends of its standard input, output and error pipes.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What the child was doing when it failed; each stage is one step of
/// [`Launch`]'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Stage {
    Signals = 1,
    Stdio,
    WorkingDirectory,
    ProcessGroup,
    MountNamespace,
    Confinement,
    Tracing,
    DeathSignal,
    Exec,
}

impl Stage {
    const ALL: [Stage; 9] = [
        Stage::Signals,
        Stage::Stdio,
        Stage::WorkingDirectory,
        Stage::ProcessGroup,
        Stage::MountNamespace,
        Stage::Confinement,
        Stage::Tracing,
        Stage::DeathSignal,
        Stage::Exec,
    ];

    fn from_raw(raw: i32) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as i32 == raw)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Signals => "setting its signals to their defaults",
            Stage::Stdio => "connecting its standard streams",
            Stage::WorkingDirectory => "entering its working directory",
            Stage::ProcessGroup => "making its process group",
            Stage::MountNamespace => "making its mount namespace",
            Stage::Confinement => "confining it",
            Stage::Tracing => "asking to be traced",
            Stage::DeathSignal => "setting its parent-death signal",
            Stage::Exec => "executing it",
        })
    }
}

/// Why a program could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// Before the child: a NUL byte in an argument, the environment or a
    /// path, or no pipe or stack could be made.
    Prepare { what: &'static str, source: std::io::Error },
    /// clone(2) itself failed (EAGAIN: a process limit; ENOMEM).
    Clone(super::Errno),
    /// The child failed at `stage` with `errno` and never ran the program.
    Child { stage: Stage, errno: super::Errno },
}

impl SpawnError {
    /// The errno behind the failure, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SpawnError::Prepare { source, .. } => source.raw_os_error(),
            SpawnError::Clone(e) | SpawnError::Child { errno: e, .. } => Some(*e as i32),
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Prepare { what, source } => write!(f, "preparing {what}: {source}"),
            SpawnError::Clone(e) => write!(f, "clone: {}", e.desc()),
            SpawnError::Child { stage, errno } => write!(f, "{stage}: {} (os error {})", errno.desc(), *errno as i32),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::Prepare { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<SpawnError> for std::io::Error {
    fn from(e: SpawnError) -> std::io::Error {
        let kind = e.errno().map_or(std::io::ErrorKind::Other, |n| {
            std::io::Error::from_raw_os_error(n).kind()
        });
        std::io::Error::new(kind, e)
    }
}

/// The errno of a failed spawn, whether it comes as a [`SpawnError`] inside
/// an `io::Error` or as a plain OS error.
pub fn errno_of(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<SpawnError>())
            .and_then(SpawnError::errno)
    })
}

impl Launch {
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Launch {
        self.argv.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.argv.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Set `key` in the program's environment.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Launch {
        self.env
            .push((key.as_ref().to_os_string(), Some(value.as_ref().to_os_string())));
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Launch
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Leave `key` out of the program's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Launch {
        self.env.push((key.as_ref().to_os_string(), None));
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<std::path::Path>) -> &mut Launch {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The program and its arguments.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// Start it in a mount namespace of its own, made before it execs (see
    /// [`process::make_mount_namespace`]).
    pub fn enter_new_mount_namespace(&mut self, plan: MountPlan) -> &mut Launch {
        self.mount_namespace = Some(plan);
        self
    }

    /// Least privilege for a program under test (see
    /// [`process::apply_confinement`]). Any failure fails the spawn: the
    /// program never runs unconfined.
    pub fn confine(&mut self, confinement: Confinement) -> &mut Launch {
        self.confinement = Some(confinement);
        self
    }

    /// Start it traced by the spawning thread, stopping before each of
    /// [`process::traced_calls`] (see [`process::stop_at_ipc_calls`]).
    pub fn trace_at_ipc_calls(&mut self) -> &mut Launch {
        self.traced = true;
        self
    }

    /// Make it die (SIGKILL) when the thread that spawns it ends, whether it
    /// returns, panics or the whole process is SIGKILLed: a supervisor that
    /// is killed outright must not leave its children running.
    ///
    /// Linux delivers the parent-death signal when the *thread* that started
    /// the child exits, so spawn from a thread that outlives the child (a
    /// scenario's own thread, which kills its children before it ends).
    pub fn die_with_parent(&mut self) -> &mut Launch {
        self.death_signal = Some(libc::SIGKILL);
        self
    }

    /// Start it as the leader of a new process group, its standard streams
    /// piped to the caller. Returns once it has exec'd (or failed to).
    pub fn spawn(&self) -> Result<Spawned, SpawnError> {
        let prepared = Prepared::new(self)?;
        let pipes = Pipes::new()?;
        STACK.with(|stack| {
            let stack = stack
                .get_or_init(ChildStack::new)
                .as_ref()
                .map_err(|e| SpawnError::Prepare {
                    what: "the child's stack",
                    source: std::io::Error::from_raw_os_error(*e as i32),
                })?;
            let failure = Failure::default();
            let plan = ChildPlan {
                launch: self,
                prepared: &prepared,
                stdio: [
                    pipes.stdin.0.as_raw_fd(),
                    pipes.stdout.1.as_raw_fd(),
                    pipes.stderr.1.as_raw_fd(),
                ],
                parent: std::process::id() as libc::pid_t,
                failure: &failure,
            };
            let pid = clone_vfork(stack, &plan)?;
            if let Some((stage, errno)) = failure.read() {
                reap(pid);
                return Err(SpawnError::Child { stage, errno });
            }
            Ok(Spawned {
                pid,
                stdin: pipes.stdin.1,
                stdout: pipes.stdout.0,
                stderr: pipes.stderr.0,
            })
        })
    }
}

/// Wait for a child that failed before exec (it has exited or is about to).
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid writes the status into a local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1 && super::Errno::last() == super::Errno::EINTR {}
}

/// Everything the child reads, as C data, made before the clone.
struct Prepared {
    /// Where to look for the program: the path itself if it has a slash,
    /// else each directory of PATH in turn, as execvp(3) does.
    candidates: Vec<CString>,
    /// Owns what `argv_ptrs` points to.
    #[allow(dead_code)]
    argv: Vec<CString>,
    /// argv with its terminating null.
    argv_ptrs: Vec<*const libc::c_char>,
    /// `/bin/sh CANDIDATE ARGS...` for a file without a `#!` line (ENOEXEC),
    /// as execvp(3) runs one; slot 1 is set by the child per candidate.
    sh_argv_ptrs: std::cell::UnsafeCell<Vec<*const libc::c_char>>,
    /// Owns what `envp` points to.
    #[allow(dead_code)]
    envp_owned: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// Signals the child sets back to their defaults (bit N-1 for signal N).
    to_default: u64,
    /// The harness's bounding set, which the child's starts as.
    bounding: u64,
    user_ns_filter: Vec<libc::sock_filter>,
    stop_filter: Vec<libc::sock_filter>,
}

fn c_string(what: &'static str, bytes: &[u8]) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|e| SpawnError::Prepare {
        what,
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })
}

impl Prepared {
    fn new(launch: &Launch) -> Result<Prepared, SpawnError> {
        let env = environment(&launch.env);
        let candidates = candidates(&launch.argv[0], &env)?;
        let argv = launch
            .argv
            .iter()
            .map(|a| c_string("an argument", a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let argv_ptrs = null_terminated(&argv);
        let mut sh_argv_ptrs = vec![c"/bin/sh".as_ptr(), std::ptr::null()];
        sh_argv_ptrs.extend(argv_ptrs.iter().skip(1));
        let mut envp_owned = Vec::with_capacity(env.len());
        for (k, v) in &env {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp_owned.push(c_string("the environment", &kv)?);
        }
        let envp = null_terminated(&envp_owned);
        let own = OwnStatus::read();
        // Handlers are the harness's (exec resets them anyway, but one must
        // not run in the child between unblocking and exec); SIGPIPE is
        // ignored by the Rust runtime, and a program expects its default as
        // the standard library's spawn gives it; confined, every ignored
        // signal too (see `process::apply_confinement`).
        let pipe = 1u64 << (libc::SIGPIPE - 1);
        let to_default = own.caught | (own.ignored & if launch.confinement.is_some() { u64::MAX } else { pipe });
        let cwd = match &launch.cwd {
            Some(d) => Some(c_string("the working directory", d.as_os_str().as_bytes())?),
            None => None,
        };
        Ok(Prepared {
            candidates,
            argv,
            argv_ptrs,
            sh_argv_ptrs: std::cell::UnsafeCell::new(sh_argv_ptrs),
            envp_owned,
            envp,
            cwd,
            to_default,
            bounding: own.bounding,
            user_ns_filter: if launch.confinement.is_some() {
                process::no_user_namespace_filter()
            } else {
                Vec::new()
            },
            stop_filter: if launch.traced {
                process::stop_filter()
            } else {
                Vec::new()
            },
        })
    }
}

/// What /proc/self/status says of this process's signal dispositions and
/// bounding set, read once per spawn; every bit set where it cannot be read
/// (every signal then reset, every capability dropped, as before this was
/// read). A disposition changed by another thread after the reading and
/// before the clone is not reset in the child: exec resets a handler
/// anyway, and the child unblocks signals only just before its exec.
struct OwnStatus {
    caught: u64,
    ignored: u64,
    bounding: u64,
}

impl OwnStatus {
    fn read() -> OwnStatus {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(u64::MAX)
        };
        OwnStatus {
            caught: field("SigCgt:"),
            ignored: field("SigIgn:"),
            bounding: field("CapBnd:"),
        }
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The child's environment: the harness's, with `changes` made in order.
fn environment(changes: &[(OsString, Option<OsString>)]) -> Vec<(OsString, OsString)> {
    let mut env: std::collections::BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (k, v) in changes {
        match v {
            Some(v) => env.insert(k.clone(), v.clone()),
            None => env.remove(k),
        };
    }
    env.into_iter().collect()
}

/// The paths execvp(3) would try for `program`, in order: itself if it
/// names a path; else each directory of the child's PATH (an empty entry is
/// the working directory; no PATH is glibc's default, /bin:/usr/bin).
fn candidates(program: &OsStr, env: &[(OsString, OsString)]) -> Result<Vec<CString>, SpawnError> {
    let bytes = program.as_bytes();
    if bytes.is_empty() {
        return Err(SpawnError::Prepare {
            what: "the program's name",
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        });
    }
    if bytes.contains(&b'/') {
        return Ok(vec![c_string("the program's path", bytes)?]);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or_else(|| b"/bin:/usr/bin".to_vec(), |(_, v)| v.clone().into_vec());
    path.split(|b| *b == b':')
        .map(|dir| {
            let mut full = if dir.is_empty() { b".".to_vec() } else { dir.to_vec() };
            full.push(b'/');
            full.extend_from_slice(bytes);
            c_string("the program's path", &full)
        })
        .collect()
}

/// The three pipes, each as (read end, write end), all close-on-exec and
/// above the standard descriptors (so the child's dup2s cannot overwrite one
/// with another).
struct Pipes {
    stdin: (OwnedFd, OwnedFd),
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
}

impl Pipes {
    fn new() -> Result<Pipes, SpawnError> {
        Ok(Pipes {
            stdin: pipe()?,
            stdout: pipe()?,
            stderr: pipe()?,
        })
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let fail = |source| SpawnError::Prepare { what: "a pipe", source };
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just made for us and nothing else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r).map_err(fail)?, above_stdio(w).map_err(fail)?))
}

/// `fd`, or a close-on-exec duplicate of it at 3 or above if it is 0, 1 or
/// 2 (a harness started with a standard stream closed).
fn above_stdio(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, owned by no one else.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above; `fd` is closed when dropped here.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Where the child says why it failed: written by the child (which shares
/// the caller's memory) before it exits, read by the caller after the clone
/// returns, which is after the child's exit or exec.
#[derive(Default)]
struct Failure {
    stage: AtomicI32,
    errno: AtomicI32,
}

impl Failure {
    fn set(&self, stage: Stage, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
        self.stage.store(stage as i32, Ordering::SeqCst);
    }

    fn read(&self) -> Option<(Stage, super::Errno)> {
        let stage = Stage::from_raw(self.stage.load(Ordering::SeqCst))?;
        Some((stage, super::Errno::from_raw(self.errno.load(Ordering::SeqCst))))
    }
}

/// What the child needs, by reference into the caller's (suspended) frame.
struct ChildPlan<'a> {
    launch: &'a Launch,
    prepared: &'a Prepared,
    /// The child's ends of stdin, stdout and stderr.
    stdio: [RawFd; 3],
    parent: libc::pid_t,
    failure: &'a Failure,
}

/// The child's stack: one mapping per thread that spawns (the thread is
/// suspended while its child uses it, so one is enough), with a guard page
/// below it. The child's code is a few frames of system calls.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

const CHILD_STACK_BYTES: usize = 256 * 1024;

thread_local! {
    static STACK: std::cell::OnceCell<Result<ChildStack, super::Errno>> = const { std::cell::OnceCell::new() };
}

impl ChildStack {
    fn new() -> Result<ChildStack, super::Errno> {
        let page = 4096;
        let len = CHILD_STACK_BYTES + page;
        // SAFETY: a new private anonymous mapping, owned by the ChildStack.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(super::Errno::last());
        }
        // The guard: an overflow faults instead of writing the harness's memory.
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } == -1 {
            let e = super::Errno::last();
            // SAFETY: the mapping just made, used by nothing.
            unsafe { libc::munmap(base, len) };
            return Err(e);
        }
        Ok(ChildStack { base, len })
    }

    /// The highest address, 16-byte aligned: x86_64 stacks grow down.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, whose length is a multiple of 16.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping this value owns; no child runs on it (a child
        // runs only while its spawning thread, this one, is suspended).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Clone the child onto `stack` with every signal blocked, wait (as
/// CLONE_VFORK does) for its exec or exit, then unblock.
fn clone_vfork(stack: &ChildStack, plan: &ChildPlan) -> Result<i32, SpawnError> {
    // SAFETY: sigset_t is plain data that sigfillset/pthread_sigmask fill.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are locals; pthread_sigmask changes only this thread.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    // SAFETY: the child runs `child_main` on `stack`, which nothing else
    // uses while this thread is suspended (CLONE_VFORK), with `plan`, which
    // lives in this frame until the clone returns (after the child's exec
    // or exit). `child_main` keeps to what a shared address space allows
    // (see the module's documentation).
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            plan as *const ChildPlan as *mut libc::c_void,
        )
    };
    let clone_errno = super::Errno::last();
    // SAFETY: restores this thread's own mask from a local.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    if pid == -1 {
        return Err(SpawnError::Clone(clone_errno));
    }
    Ok(pid)
}

/// The child, between its clone and its exec. Never returns on success;
/// on a failure it notes the stage and errno and exits with 127.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildPlan the caller passed, alive and unchanged
    // while the caller is suspended.
    let plan = unsafe { &*(arg as *const ChildPlan) };
    // SAFETY: run_child keeps to async-signal-safe system calls on data
    // prepared before the clone (its contract).
    let (stage, errno) = unsafe { run_child(plan) };
    plan.failure.set(stage, errno);
    // SAFETY: _exit ends the child only, with no cleanup of shared state.
    unsafe { libc::_exit(127) }
}

/// The child's steps, in [`Launch`]'s order; returns only on a failure.
///
/// # Safety
/// Only in a child started by [`clone_vfork`] with `plan`.
unsafe fn run_child(plan: &ChildPlan) -> (Stage, i32) {
    let errno = || super::Errno::last() as i32;
    let launch = plan.launch;
    let prepared = plan.prepared;
    // SAFETY: each call is a system call on data prepared before the clone
    // or on locals (see the module's documentation).
    unsafe {
        if !process::reset_signals(prepared.to_default) {
            return (Stage::Signals, errno());
        }
        for (target, &fd) in plan.stdio.iter().enumerate() {
            // dup2 clears close-on-exec on the copy; the pipes are all above 2.
            if libc::dup2(fd, target as libc::c_int) == -1 {
                return (Stage::Stdio, errno());
            }
        }
        if let Some(dir) = &prepared.cwd {
            if libc::chdir(dir.as_ptr()) == -1 {
                return (Stage::WorkingDirectory, errno());
            }
        }
        if libc::setpgid(0, 0) == -1 {
            return (Stage::ProcessGroup, errno());
        }
        if let Some(plan) = &launch.mount_namespace {
            if !process::make_mount_namespace(plan) {
                return (Stage::MountNamespace, errno());
            }
        }
        if let Some(c) = &launch.confinement {
            if !process::apply_confinement(c, &prepared.user_ns_filter, prepared.bounding) {
                return (Stage::Confinement, errno());
            }
        }
        if launch.traced && !process::stop_at_ipc_calls(&prepared.stop_filter) {
            return (Stage::Tracing, errno());
        }
        if let Some(signal) = launch.death_signal {
            if !process::set_death_signal(signal, plan.parent) {
                return (Stage::DeathSignal, errno());
            }
        }
        // The mask last: every handler is the default by now.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) == -1 {
            return (Stage::Signals, errno());
        }
        (Stage::Exec, exec_first(prepared))
    }
}

/// execve each candidate in turn as execvp(3) does: a candidate that is
/// missing or not a directory's entry is skipped, EACCES is remembered and
/// the search goes on, ENOEXEC runs the file with /bin/sh. Returns the errno
/// of the last failure.
///
/// # Safety
/// Async-signal-safe: execve(2) on prepared C data. Writes the prepared
/// shell argv's slot 1 (the caller is suspended and reads it no more).
unsafe fn exec_first(p: &Prepared) -> i32 {
    let mut denied = false;
    let mut last = libc::ENOENT;
    for candidate in &p.candidates {
        let path: &CStr = candidate;
        // SAFETY: null-terminated arrays of pointers to prepared C strings.
        unsafe { libc::execve(path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp.as_ptr()) };
        last = super::Errno::last() as i32;
        match last {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            libc::ENOEXEC => {
                // SAFETY: the shell argv is this child's to fill (see above);
                // slot 1 exists (made with two entries and the arguments).
                unsafe {
                    let sh = &mut *p.sh_argv_ptrs.get();
                    if let Some(slot) = sh.get_mut(1) {
                        *slot = path.as_ptr();
                    }
                    libc::execve(c"/bin/sh".as_ptr(), sh.as_ptr(), p.envp.as_ptr());
                }
                return super::Errno::last() as i32;
            }
            _ => return last,
        }
    }
    if denied {
        libc::EACCES
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Run `launch`, close its stdin, and return (stdout, exit code).
    fn run(launch: &Launch) -> (String, i32) {
        let spawned = launch.spawn().unwrap();
        drop(spawned.stdin);
        let mut out = String::new();
        std::fs::File::from(spawned.stdout).read_to_string(&mut out).unwrap();
        let mut status = 0;
        // SAFETY: waitpid writes into a local.
        assert_eq!(unsafe { libc::waitpid(spawned.pid, &mut status, 0) }, spawned.pid);
        (out, libc::WEXITSTATUS(status))
    }

    /// An executable file `name` in `dir` holding `body`.
    fn executable(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path
    }

    fn sh(script: &str) -> Launch {
        let mut launch = Launch::new("sh");
        launch.args(["-c", script]);
        launch
    }

    #[test]
    fn arguments_environment_and_working_directory_reach_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let mut launch = sh("printf '%s|%s|%s|%s' \"$0\" \"$1\" \"$SHMCONF_SPAWN_TEST\" \"$(pwd -P)\"");
        launch
            .args(["zero", "one two"])
            .env("SHMCONF_SPAWN_TEST", "set here")
            .current_dir(dir.path());
        let (out, code) = run(&launch);
        let dir = dir.path().canonicalize().unwrap();
        assert_eq!(out, format!("zero|one two|set here|{}", dir.display()));
        assert_eq!(code, 0);
    }

    #[test]
    fn a_removed_variable_is_not_passed_on() {
        let mut launch = sh("printf '%s' \"${HOME-unset}\"");
        launch.env("HOME", "/set-then-removed").env_remove("HOME");
        assert_eq!(run(&launch).0, "unset");
    }

    #[test]
    fn the_program_leads_its_own_process_group_with_no_signal_blocked_or_handled() {
        // SigBlk and SigCgt of a program that installs no handler (cat):
        // nothing blocked, nothing caught; the test process has a handler
        // (the Rust runtime's SIGSEGV one) and its spawning thread blocked
        // every signal around the clone.
        let (out, _) = run(&sh(
            "echo $$ $(cut -d' ' -f5 /proc/$$/stat); exec cat /proc/self/status | grep -E '^Sig(Blk|Cgt)'",
        ));
        let mut lines = out.lines();
        let ids: Vec<&str> = lines.next().unwrap().split(' ').collect();
        assert_eq!(ids[0], ids[1], "its pid is its process group: {out}");
        for line in lines {
            assert!(line.ends_with("0000000000000000"), "{line}");
        }
    }

    /// A field of the program's /proc/self/status, as a bit mask.
    fn status_mask(launch: &mut Launch, field: &str) -> u64 {
        launch.args([
            "-c",
            &format!("exec cat /proc/self/status | sed -n 's/^{field}:[[:space:]]*//p'"),
        ]);
        let (out, code) = run(launch);
        assert_eq!(code, 0, "{out}");
        u64::from_str_radix(out.trim(), 16).unwrap()
    }

    #[test]
    fn ignored_signals_stay_ignored_but_sigpipe_and_confined_programs_start_from_the_defaults() {
        let bit = |sig: libc::c_int| 1u64 << (sig - 1);
        // SAFETY: SIGWINCH's default is to be ignored: ignoring it changes
        // nothing else this test process does.
        unsafe { libc::signal(libc::SIGWINCH, libc::SIG_IGN) };
        let plain = status_mask(&mut Launch::new("sh"), "SigIgn");
        assert_ne!(
            plain & bit(libc::SIGWINCH),
            0,
            "kept ignored, as a shell's child would: {plain:x}"
        );
        assert_eq!(
            plain & bit(libc::SIGPIPE),
            0,
            "the Rust runtime's SIG_IGN is not passed on: {plain:x}"
        );
        let mut confined = Launch::new("sh");
        confined.confine(Confinement::default());
        let confined = status_mask(&mut confined, "SigIgn");
        assert_eq!(
            confined, 0,
            "a confined program ignores nothing it did not ask to: {confined:x}"
        );
    }

    #[test]
    fn a_confined_program_keeps_only_the_capabilities_it_is_given() {
        let keep = 1u64 << 15; // CAP_IPC_OWNER
        let mut confined = Launch::new("sh");
        confined.confine(Confinement {
            keep_capabilities: keep,
            ..Confinement::default()
        });
        let bounding = status_mask(&mut confined, "CapBnd");
        // SAFETY: geteuid only returns a number.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(bounding, keep, "{bounding:x}");
        } else {
            assert_eq!(
                bounding & !keep,
                bounding & !keep & OwnStatus::read().bounding,
                "{bounding:x}"
            );
        }
    }

    #[test]
    fn a_missing_program_fails_at_exec_with_enoent() {
        let err = Launch::new("/nonexistent/shmconf-spawn-test").spawn().unwrap_err();
        assert!(
            matches!(
                err,
                SpawnError::Child {
                    stage: Stage::Exec,
                    errno: super::super::Errno::ENOENT
                }
            ),
            "{err}"
        );
        assert_eq!(errno_of(&std::io::Error::from(err)), Some(libc::ENOENT));
    }

    #[test]
    fn a_file_without_execute_permission_fails_with_eacces_and_path_search_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\necho no\n").unwrap();
        let err = Launch::new(&plain).spawn().unwrap_err();
        assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
        // On PATH: a denied candidate first, a runnable one after it.
        let runnable = tempfile::tempdir().unwrap();
        executable(runnable.path(), "plain", "#!/bin/sh\necho found\n");
        let mut launch = Launch::new("plain");
        launch.env(
            "PATH",
            format!("{}:{}", dir.path().display(), runnable.path().display()),
        );
        assert_eq!(run(&launch).0, "found\n");
    }

    #[test]
    fn a_script_without_an_interpreter_line_runs_with_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        let script = executable(dir.path(), "bare", "echo \"bare $1\"\n");
        let mut launch = Launch::new(&script);
        launch.arg("ran");
        assert_eq!(run(&launch), ("bare ran\n".to_string(), 0));
    }

    #[test]
    fn a_failing_stage_is_named() {
        let mut launch = Launch::new("true");
        launch.current_dir("/nonexistent/shmconf-spawn-test");
        let err = launch.spawn().unwrap_err();
        assert!(
            matches!(
                err,
                SpawnError::Child {
                    stage: Stage::WorkingDirectory,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("entering its working directory: "), "{err}");
    }

    #[test]
    fn a_nul_byte_is_refused_before_any_child() {
        let refused = |launch: &Launch| match launch.spawn() {
            Err(SpawnError::Prepare { what, .. }) => what,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(Launch::new("true").arg("a\0b")), "an argument");
        assert_eq!(refused(Launch::new("true").env("A", "b\0c")), "the environment");
        assert_eq!(
            refused(Launch::new("true").current_dir("/tmp\0x")),
            "the working directory"
        );
        assert_eq!(refused(&Launch::new("tr\0ue")), "the program's path");
    }

    #[test]
    fn the_harness_threads_and_memory_are_untouched_by_many_spawns() {
        // Spawns from several threads at once while another thread keeps
        // allocating: a child that ran a harness handler or wrote the
        // caller's memory would crash or corrupt this process.
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    for j in 0..25 {
                        let (out, code) = run(&sh(&format!("echo {i}-{j}")));
                        assert_eq!((out, code), (format!("{i}-{j}\n"), 0));
                    }
                })
            })
            .collect();
        let mut junk = Vec::new();
        for n in 0..20_000 {
            junk.push(vec![n as u8; 64]);
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(junk.len(), 20_000);
    }
}
