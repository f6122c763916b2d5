//! Running an unmodified program one system call at a time.
//!
//! A traced role (`shmconf::sysv::process::trace_at_ipc_calls`) stops before
//! each call that matters for shared memory (shmget, shmat, shmdt, shmctl,
//! read of stdin, write of stdout/stderr, exit): a *point*. Between two
//! points it runs freely; at a point it waits until the scheduler lets it
//! go. With every other role held at its point, what runs between two
//! points is exactly one role's step, so an order of steps is an
//! interleaving at system-call granularity, replayable.
//!
//! All ptrace requests come from the thread that spawned the tracee (the
//! scenario's thread): the kernel accepts them only from the tracer.

use std::time::{Duration, Instant};

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use shmconf::sysv::process::traced_calls as nr;

use crate::events::Ending;

/// The call a role is stopped before, decoded from its registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// Not started yet: stopped at its exec.
    Start,
    ShmGet {
        key: i32,
        size: u64,
        flags: i32,
    },
    ShmAt {
        id: i32,
    },
    ShmDt {
        addr: u64,
    },
    ShmCtl {
        id: i32,
        cmd: i32,
    },
    /// read or readv of fd 0.
    ReadStdin,
    /// write or writev of fd 1 or 2.
    Write {
        fd: i32,
        len: u64,
    },
    Exit {
        code: i32,
    },
}

impl Call {
    /// As the timeline and the order labels show it.
    pub fn describe(&self) -> String {
        match self {
            Call::Start => "start".into(),
            Call::ShmGet { key, size, flags } => {
                format!("shmget({:#x}, {size}, {:#o})", *key as u32, flags)
            }
            Call::ShmAt { id } => format!("shmat({id})"),
            Call::ShmDt { addr } => format!("shmdt({addr:#x})"),
            Call::ShmCtl { id, cmd } => match *cmd {
                libc::IPC_RMID => format!("shmctl({id}, IPC_RMID)"),
                libc::IPC_STAT => format!("shmctl({id}, IPC_STAT)"),
                c => format!("shmctl({id}, {c})"),
            },
            Call::ReadStdin => "read(0)".into(),
            Call::Write { fd, len } => format!("write({fd}, {len} bytes)"),
            Call::Exit { code } => format!("exit({code})"),
        }
    }

    /// What it returned, as a timeline shows it after the call (" = 0",
    /// " = 0x7f...", " = -1 EINVAL"); empty when not known.
    pub fn describe_result(&self, result: Option<i64>) -> String {
        match (result, self) {
            (Some(r), _) if r < 0 => format!(" = -1 {}", nix::errno::Errno::from_raw((-r) as i32)),
            (Some(r), Call::ShmAt { .. }) => format!(" = {r:#x}"),
            (Some(r), _) => format!(" = {r}"),
            (None, _) => String::new(),
        }
    }

    /// What the call does to the segment table: None (not a table call),
    /// Some(false) it only reads it (IPC_STAT, SHM_STAT, a lookup without
    /// IPC_CREAT), Some(true) it may change it (a creation, an attach or
    /// detach, a removal). Reads of the table commute with each other.
    pub fn table_access(&self) -> Option<bool> {
        const STATS: [i32; 4] = [libc::IPC_STAT, 13, 14, 15]; // SHM_STAT, SHM_INFO, SHM_STAT_ANY
        match self {
            Call::ShmGet { flags, .. } => Some(flags & libc::IPC_CREAT != 0),
            Call::ShmCtl { cmd, .. } => Some(!STATS.contains(cmd)),
            Call::ShmAt { .. } | Call::ShmDt { .. } => Some(true),
            _ => None,
        }
    }
}

/// Do two events conflict (may not commute)? Each says what it touched:
/// `r:table`/`w:table` (it read or changed the segment table), `stdin:R`
/// (run R's input), `r:ID` (it ran while segment ID was attached, so it may
/// have read it) and `w:ID` (the segment's content changed during it).
/// Reads of one thing commute with each other; a write conflicts with any
/// read or write of it.
pub fn conflict(a: &[String], b: &[String]) -> bool {
    let has = |set: &[String], t: &str| set.iter().any(|x| x == t);
    a.iter().any(|t| match (t.strip_prefix("r:"), t.strip_prefix("w:")) {
        (Some(id), _) => has(b, &format!("w:{id}")),
        (_, Some(id)) => has(b, t) || has(b, &format!("r:{id}")),
        _ => has(b, t),
    })
}

/// What a step of `run` that executed `call` touched (see [`conflict`]):
/// `attached` is the segment it had attached before the call, `reached`
/// each segment it could reach during the step and whether its content
/// changed across it.
pub fn touches(run: &str, call: &Call, attached: Option<i32>, reached: &[(i32, bool)]) -> Vec<String> {
    let mut out = Vec::new();
    // An exit while attached detaches: a change of the table.
    let exit_detaches = matches!(call, Call::Exit { .. }) && attached.is_some();
    match call.table_access() {
        Some(false) => out.push("r:table".to_string()),
        Some(true) => out.extend(["r:table".to_string(), "w:table".to_string()]),
        None if exit_detaches => out.extend(["r:table".to_string(), "w:table".to_string()]),
        None => {}
    }
    if *call == Call::ReadStdin {
        out.push(format!("stdin:{run}"));
    }
    for &(id, changed) in reached {
        out.push(format!("r:{id}"));
        if changed {
            out.push(format!("w:{id}"));
        }
    }
    out
}

/// A sleep set (partial-order reduction): choices that need not be taken
/// from here, because an order that takes them here was explored already,
/// each with what its event touched. A choice wakes once an event that
/// conflicts with it happens. The engine and the explorer's tests share it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SleepSet(pub Vec<(crate::scenario::Choice, Vec<String>)>);

impl SleepSet {
    pub fn asleep(&self, choice: &crate::scenario::Choice) -> bool {
        self.0.iter().any(|(c, _)| c == choice)
    }

    /// After `choice` ran an event that touched `touches`.
    pub fn advance(&mut self, choice: &crate::scenario::Choice, touches: &[String]) {
        self.0.retain(|(c, t)| c != choice && !conflict(t, touches));
    }
}

/// Where a traced role is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Stopped before this call.
    At(Call),
    /// Gone: how it ended.
    Ended(Ending),
}

/// What went wrong with the tracing itself (not a verdict on the program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// The program did something this tracer does not follow.
    Unsupported(String),
    /// It did not reach its next point in time (killed with its group).
    TimedOut,
    /// A ptrace or wait call failed.
    Failed(String),
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceError::Unsupported(s) | TraceError::Failed(s) => f.write_str(s),
            TraceError::TimedOut => f.write_str("it did not reach its next system call in time"),
        }
    }
}

/// One traced role, held at its current point.
#[derive(Debug)]
pub struct Tracee {
    pid: Pid,
    stop: Stop,
    /// Options set (after the exec stop).
    started: bool,
    /// Points stopped at so far.
    points: usize,
    /// What the last table call stepped over returned (-errno on failure).
    result: Option<i64>,
}

fn failed(what: &str, e: nix::errno::Errno) -> TraceError {
    TraceError::Failed(format!("{what}: {e}"))
}

impl Tracee {
    /// A child just spawned with `trace_at_ipc_calls`: it stops at its exec
    /// (SIGTRAP), where it is held until its first step.
    pub fn new(pid: i32) -> Tracee {
        Tracee {
            pid: Pid::from_raw(pid),
            stop: Stop::At(Call::Start),
            started: false,
            points: 0,
            result: None,
        }
    }

    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    /// What the call of the last step returned, when it was a table call
    /// (shmget, shmat, shmdt, shmctl) that returned: -errno on failure.
    pub fn last_result(&self) -> Option<i64> {
        self.result
    }

    pub fn ended(&self) -> Option<&Ending> {
        match &self.stop {
            Stop::Ended(e) => Some(e),
            Stop::At(_) => None,
        }
    }

    /// Let the role execute the call it is stopped at and run to its next
    /// point (or its end). Only this role runs meanwhile; a role that does
    /// not get there by `deadline` is SIGKILLed and this says so.
    pub fn step(&mut self, deadline: Instant) -> Result<&Stop, TraceError> {
        if self.ended().is_some() {
            return Ok(&self.stop);
        }
        if !self.started {
            // The exec stop: wait for it, then ask for the seccomp stops,
            // the exit stop, and to hear of any new task (not followed).
            match self.wait(deadline)? {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => {}
                WaitStatus::Exited(_, code) => {
                    self.stop = Stop::Ended(Ending::Exited { code });
                    return Ok(&self.stop);
                }
                other => return Err(TraceError::Failed(format!("unexpected first stop: {other:?}"))),
            }
            let options = ptrace::Options::PTRACE_O_TRACESECCOMP
                | ptrace::Options::PTRACE_O_TRACEEXIT
                | ptrace::Options::PTRACE_O_TRACESYSGOOD
                | ptrace::Options::PTRACE_O_EXITKILL
                | ptrace::Options::PTRACE_O_TRACECLONE
                | ptrace::Options::PTRACE_O_TRACEFORK
                | ptrace::Options::PTRACE_O_TRACEVFORK;
            ptrace::setoptions(self.pid, options).map_err(|e| failed("PTRACE_SETOPTIONS", e))?;
            self.started = true;
        }
        // A table call is followed to its return (one syscall-exit stop), so
        // what the kernel answered can be held against the table after it.
        let mut in_call = matches!(&self.stop, Stop::At(c) if c.table_access().is_some());
        self.result = None;
        let mut deliver: Option<Signal> = None;
        loop {
            if in_call {
                ptrace::syscall(self.pid, deliver.take()).map_err(|e| failed("PTRACE_SYSCALL", e))?;
            } else {
                ptrace::cont(self.pid, deliver.take()).map_err(|e| failed("PTRACE_CONT", e))?;
            }
            match self.wait(deadline)? {
                WaitStatus::PtraceSyscall(_) if in_call => {
                    let regs = ptrace::getregs(self.pid).map_err(|e| failed("PTRACE_GETREGS", e))?;
                    self.result = Some(regs.rax as i64);
                    in_call = false;
                }
                WaitStatus::PtraceEvent(_, _, event) if event == libc::PTRACE_EVENT_SECCOMP => {
                    let call = self.decode()?;
                    self.points += 1;
                    self.stop = Stop::At(call);
                    return Ok(&self.stop);
                }
                WaitStatus::PtraceEvent(_, _, event) if event == libc::PTRACE_EVENT_EXIT => {
                    let status = ptrace::getevent(self.pid).map_err(|e| failed("PTRACE_GETEVENTMSG", e))? as i32;
                    // Every program stops at least at its exit call: ending
                    // normally without one stop means the kernel (a
                    // sandbox's) does not deliver seccomp trace stops.
                    if self.points == 0 && !libc::WIFSIGNALED(status) {
                        return Err(TraceError::Unsupported(
                            "it ran to its end without one system-call stop: seccomp trace stops do not work here"
                                .into(),
                        ));
                    }
                    self.stop = Stop::Ended(ending_of(status));
                    // Let it finish exiting; it stays a zombie for its
                    // group's owner to reap (see procs).
                    let _ = ptrace::cont(self.pid, None);
                    return Ok(&self.stop);
                }
                WaitStatus::PtraceEvent(_, _, event)
                    if [
                        libc::PTRACE_EVENT_FORK,
                        libc::PTRACE_EVENT_VFORK,
                        libc::PTRACE_EVENT_CLONE,
                    ]
                    .contains(&event) =>
                {
                    return Err(TraceError::Unsupported(
                        "it started another process or thread, which system-call exploration does not follow yet"
                            .into(),
                    ));
                }
                // A signal for the program (SIGSEGV, SIGPIPE, ...): deliver it.
                WaitStatus::Stopped(_, sig) => deliver = Some(sig),
                WaitStatus::Exited(_, code) => {
                    self.stop = Stop::Ended(Ending::Exited { code });
                    return Ok(&self.stop);
                }
                WaitStatus::Signaled(_, sig, _) => {
                    self.stop = Stop::Ended(Ending::Signaled {
                        signal: sig.as_str().into(),
                    });
                    return Ok(&self.stop);
                }
                _ => {}
            }
        }
    }

    /// The call the tracee is stopped before.
    fn decode(&self) -> Result<Call, TraceError> {
        let regs = ptrace::getregs(self.pid).map_err(|e| failed("PTRACE_GETREGS", e))?;
        let (arg0, arg1, arg2) = (regs.rdi, regs.rsi, regs.rdx);
        Ok(match regs.orig_rax as i64 {
            nr::SHMGET => Call::ShmGet {
                key: arg0 as i32,
                size: arg1,
                flags: arg2 as i32,
            },
            nr::SHMAT => Call::ShmAt { id: arg0 as i32 },
            nr::SHMDT => Call::ShmDt { addr: arg0 },
            nr::SHMCTL => Call::ShmCtl {
                id: arg0 as i32,
                cmd: arg1 as i32,
            },
            nr::READ | nr::READV => Call::ReadStdin,
            nr::WRITE => Call::Write {
                fd: arg0 as i32,
                len: arg2,
            },
            nr::WRITEV => Call::Write {
                fd: arg0 as i32,
                len: 0,
            },
            nr::EXIT | nr::EXIT_GROUP => Call::Exit { code: arg0 as i32 },
            other => return Err(TraceError::Failed(format!("stopped at unexpected system call {other}"))),
        })
    }

    /// Wait for the tracee's next stop, polling so a deadline can end it:
    /// past it the tracee is killed (its stop then says how it ended).
    fn wait(&mut self, deadline: Instant) -> Result<WaitStatus, TraceError> {
        let flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG;
        let mut spins = 0u32;
        loop {
            match waitpid(self.pid, Some(flags)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => return Ok(status),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(failed("waitpid", e)),
            }
            if Instant::now() >= deadline {
                let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
                return Err(TraceError::TimedOut);
            }
            // Most steps take microseconds: spin first, then back off.
            spins += 1;
            if spins < 200 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros((spins as u64).min(1000)));
            }
        }
    }
}

/// A wait status (as PTRACE_EVENT_EXIT reports it) as an ending.
fn ending_of(status: i32) -> Ending {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        Ending::Signaled {
            signal: Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string()),
        }
    } else {
        Ending::Exited {
            code: libc::WEXITSTATUS(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::procs::Proc;

    #[test]
    fn reads_commute_and_writes_conflict() {
        let stat = touches(
            "r",
            &Call::ShmCtl {
                id: 0,
                cmd: libc::IPC_STAT,
            },
            Some(0),
            &[(0, false)],
        );
        let other_stat = touches(
            "w",
            &Call::ShmCtl {
                id: 0,
                cmd: libc::IPC_STAT,
            },
            None,
            &[],
        );
        assert!(
            !conflict(&stat, &other_stat),
            "two table reads: {stat:?} {other_stat:?}"
        );
        let rmid = touches(
            "w",
            &Call::ShmCtl {
                id: 0,
                cmd: libc::IPC_RMID,
            },
            None,
            &[],
        );
        assert!(conflict(&stat, &rmid));
        // A step that changed the segment's content conflicts with one that
        // only had it attached; two that only had it attached do not.
        let wrote = touches("w", &Call::ReadStdin, Some(0), &[(0, true)]);
        let looked = touches("r", &Call::Write { fd: 1, len: 3 }, Some(0), &[(0, false)]);
        assert!(conflict(&wrote, &looked) && conflict(&looked, &wrote));
        let looked_too = touches("q", &Call::Write { fd: 1, len: 3 }, Some(0), &[(0, false)]);
        assert!(!conflict(&looked, &looked_too));
        // An exit while attached detaches (a table change); detached, it touches nothing.
        assert!(conflict(
            &touches("w", &Call::Exit { code: 0 }, Some(0), &[(0, false)]),
            &stat
        ));
        assert!(touches("w", &Call::Exit { code: 0 }, None, &[]).is_empty());
        // A run's input: its reads and its pieces.
        assert_eq!(touches("w", &Call::ReadStdin, None, &[]), vec!["stdin:w".to_string()]);
    }

    /// The C reference (gets() semantics, as the original) stops at each
    /// point in program order; input arrives in two pieces and it reads
    /// between them; its end is seen. In a private IPC namespace.
    #[test]
    fn an_unmodified_writer_stops_at_each_point_in_order() {
        if !shmconf::ipcns::can_unshare_ipc() {
            eprintln!("skipped: no IPC namespace can be made here");
            return;
        }
        let points = shmconf::ipcns::in_private_ipc_ns(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("shmfile"), "").unwrap();
            let writer = std::path::Path::new(env!("SHMCONF_C_REFERENCE_DIR")).join("c-writer");
            let mut cmd = std::process::Command::new(writer);
            cmd.current_dir(dir.path());
            let mut proc = Proc::spawn_traced("w", cmd, None).unwrap();
            let mut tracee = Tracee::new(proc.pid);
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut seen = Vec::new();
            let mut fed = 0;
            loop {
                let stop = tracee.step(deadline).unwrap().clone();
                match stop {
                    Stop::At(call) => {
                        if call == Call::ReadStdin && proc.stdin_unread() == Some(0) {
                            let piece: &[u8] = if fed == 0 { b"hel" } else { b"lo\n" };
                            fed += 1;
                            proc.write_stdin(piece, fed == 2).unwrap();
                        }
                        seen.push(call.describe());
                    }
                    Stop::Ended(e) => {
                        seen.push(format!("ended: {e}"));
                        break;
                    }
                }
            }
            proc.kill_group();
            seen
        })
        .unwrap();
        let shown = points.join(" | ");
        assert!(shown.starts_with("shmget(0x41"), "{shown}");
        // On a pipe stdio flushes the output at exit, after the detach.
        let order: Vec<&str> = [
            "shmat(0)",
            "read(0)",
            "read(0)",
            "shmdt",
            "write(1, 42 bytes)",
            "exit(0)",
            "ended: exit code 0",
        ]
        .to_vec();
        let mut at = 0;
        for want in order {
            let found = points[at..].iter().position(|p| p.starts_with(want));
            assert!(found.is_some(), "{want} after point {at} in {shown}");
            at += found.unwrap_or(0) + 1;
        }
    }
}
