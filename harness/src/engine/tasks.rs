//! What every task of a running program is doing, from /proc: the barriers
//! that wait for a program to reach a state look at all of its threads and
//! all of its descendants, not at one thread. A Go program may block in
//! read(2) on any of its threads; a program behind a launcher that runs it
//! and waits is the launcher's child.

use std::path::PathBuf;

/// Most tasks looked at in one tree (a fork bomb must not make a barrier
/// walk without end).
const MAX_TASKS: usize = 4096;

/// Every task (thread) of `root` and of its descendants, as (pid, tid):
/// /proc/PID/task/TID lists threads, /proc/PID/task/TID/children each
/// thread's children. Missing entries (a task that just ended) are skipped.
pub fn tree(root: i32) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    let mut queue = vec![root];
    let mut seen_processes = std::collections::BTreeSet::new();
    while let Some(pid) = queue.pop() {
        if !seen_processes.insert(pid) || out.len() >= MAX_TASKS {
            continue;
        }
        let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for thread in threads.filter_map(Result::ok) {
            let Some(tid) = thread.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else {
                continue;
            };
            out.push((pid, tid));
            if let Ok(children) = std::fs::read_to_string(thread.path().join("children")) {
                queue.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            }
        }
    }
    out
}

/// The system call a task sleeps in and its first argument, from
/// /proc/PID/task/TID/syscall; None while it runs (or is gone).
fn sleeping_in(pid: i32, tid: i32) -> Option<(i64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    let mut fields = text.split_whitespace();
    let nr = fields.next()?.parse::<i64>().ok()?;
    let arg0 = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    Some((nr, arg0))
}

fn fd_target(pid: i32, fd: u64) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// Is some task of `root`'s tree blocked reading `root`'s input? `root`'s
/// fd 0 names the input (a pipe); a task's read counts when it reads that
/// pipe through its own fd 0 (a launcher's `$(...)` helper reading another
/// pipe, or a `read < file`, does not).
pub fn reading_input(root: i32) -> bool {
    let input = fd_target(root, 0);
    let reads = [libc::SYS_read, libc::SYS_readv, libc::SYS_pread64, libc::SYS_preadv];
    tree(root).into_iter().any(|(pid, tid)| match sleeping_in(pid, tid) {
        Some((nr, fd)) if reads.contains(&nr) => {
            fd == 0 && (input.is_none() || pid == root || fd_target(pid, 0) == input)
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn eventually(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The barrier sees a read of the input by a child the program waits
    /// for (a launcher that does not exec), not only by the program itself.
    #[test]
    fn a_child_reading_the_input_is_seen() {
        let mut child = Command::new("sh")
            .args(["-c", "head -c 1 >/dev/null; echo done"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(eventually(|| reading_input(pid)), "head's read of sh's input");
        child.stdin.take().unwrap().write_all(b"x").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.stdout, b"done\n");
    }

    /// A read of another pipe by a helper (`$(...)`) is not a read of the
    /// input.
    #[test]
    fn a_helper_reading_another_pipe_is_not_the_input() {
        let mut child = Command::new("sh")
            .args(["-c", "x=$(sleep 0.3; echo y | head -c 1 | (sleep 0.3; cat)); echo $x"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            assert!(!reading_input(pid), "a read of a pipe that is not the input");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(child.stdin.take());
        child.wait().unwrap();
    }

    /// A read of the input on a thread other than the main one (as the Go
    /// runtime may do) is seen: every thread is looked at. The main thread
    /// of this Python waits in a join (a futex), the other reads fd 0.
    #[test]
    fn a_read_on_another_thread_is_seen() {
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import sys, threading\nt = threading.Thread(target=lambda: sys.stdin.buffer.read(1))\nt.start()\nt.join()",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("python3 (a multi-threaded reader)");
        let pid = child.id() as i32;
        assert!(eventually(|| reading_input(pid)));
        let threads = tree(pid);
        assert!(threads.len() >= 2, "{threads:?}");
        // The main thread gets to its join in its own time (on a busy
        // machine, after the other thread's read).
        assert!(
            eventually(|| sleeping_in(pid, pid).is_some_and(|(nr, _)| nr != libc::SYS_read)),
            "the main thread is not the reader"
        );
        child.stdin.take().unwrap().write_all(b"x").unwrap();
        assert!(child.wait().unwrap().success());
    }
}
