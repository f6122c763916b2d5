//! `ipc_set`: shmctl(2) IPC_SET of a saved segment's permission bits, from
//! a process of ours in the step's namespace, judged by IPC_STAT before and
//! after: the new mode, and a change time later than before the call.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::time::{clock_gettime, ClockId};

use schemars::JsonSchema;
use serde::Deserialize;
use shmconf::sysv::Segment;

use super::{answer, refused, usage, KindError, Lowered, StepKind};

/// shmctl(2) IPC_SET of the permission bits of a segment an earlier
/// `segments` step saved with `save_id` (its owner and group kept), from a
/// process of ours in the step's namespace: IPC_STAT after it must show
/// the new mode and a later shm_ctime than before it, or the call must
/// fail with `expect_errno`. Only the owner, the creator or a holder of
/// CAP_SYS_ADMIN may set; others get EPERM (shmctl(2)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpcSet {
    /// The name an earlier `segments` step saved the segment's id as.
    pub id: String,
    /// The new permission bits, octal (e.g. "0640").
    pub mode: String,
    /// Make the call as this uid (and gid, the same).
    pub uid: Option<u32>,
    /// The call must fail with this errno (e.g. "EPERM"); default: it succeeds.
    pub expect_errno: Option<String>,
}

/// What shmctl(2) answers IPC_SET (and the IPC_STAT before it) with, besides success.
const ERRNOS: &[&str] = &["EACCES", "EFAULT", "EIDRM", "EINVAL", "EPERM"];

const EXPECTED: &str = "ID MODE (octal, at most 0777)";

impl StepKind for IpcSet {
    fn lower(&self) -> Result<Lowered, KindError> {
        let mode = crate::scenario::parse_mode(&self.mode)?;
        Ok(Lowered {
            args: vec![format!("{{{}}}", self.id), format!("{mode:o}")],
            uid: self.uid,
            gid: self.uid,
            expect: answer(
                &format!("^ok mode {mode:04o} ctime later\\n$"),
                self.expect_errno.as_deref(),
                ERRNOS,
                "IPC_SET",
            )?,
        })
    }

    fn probe(args: &[String]) -> i32 {
        let [id, mode] = args else {
            return usage("ipc_set", EXPECTED, args);
        };
        let (Ok(id), Ok(mode)) = (id.parse::<i32>(), u32::from_str_radix(mode, 8)) else {
            return usage("ipc_set", EXPECTED, args);
        };
        let segment = Segment::from_id(id);
        let before = match segment.stat() {
            Ok(st) => st,
            Err(e) => return refused(&e),
        };
        wait_past_second(before.ctime);
        match segment.set(before.uid, before.gid, mode).and_then(|()| segment.stat()) {
            Ok(after) => {
                let ctime = if after.ctime > before.ctime {
                    "later"
                } else {
                    "unchanged"
                };
                println!("ok mode {:04o} ctime {ctime}", after.perms());
                0
            }
            Err(e) => refused(&e),
        }
    }
}

/// Sleeps until the kernel's seconds clock is past `second`, so a change
/// time stamped now is later than one stamped in `second`. The kernel stamps
/// shm_ctime with `ktime_get_real_seconds()`, the coarse clock that moves at
/// the timer tick and lags `CLOCK_REALTIME` by up to a tick: sleeping to the
/// fine clock's boundary alone left the stamp in the old second most of the
/// time (5 of 6 runs in a container). So the fine clock says how long to
/// sleep, and CLOCK_REALTIME_COARSE, read as the kernel reads it, says when
/// it is done. Bounded at 2 s: past that the probe reports the stamp as it is.
fn wait_past_second(second: i64) {
    let coarse_second = || clock_gettime(ClockId::CLOCK_REALTIME_COARSE).map_or(i64::MAX, |t| t.tv_sec());
    let give_up = Instant::now() + Duration::from_secs(2);
    while coarse_second() <= second && Instant::now() < give_up {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let boundary = Duration::from_secs(u64::try_from(second).unwrap_or(0) + 1);
        // Past the fine boundary, wait a millisecond at a time for the tick.
        let wait = boundary.saturating_sub(now).max(Duration::from_millis(1));
        std::thread::sleep(wait.min(give_up.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::EndingExpect;

    fn table(mode: &str, expect_errno: Option<&str>) -> IpcSet {
        IpcSet {
            id: "S".into(),
            mode: mode.into(),
            uid: None,
            expect_errno: expect_errno.map(String::from),
        }
    }

    /// The new mode and a later change time pass; the old mode, or a change
    /// time IPC_SET did not move, fail.
    #[rstest::rstest]
    #[case("0640", "ok mode 0640 ctime later\n", true)]
    #[case("640", "ok mode 0640 ctime later\n", true)]
    #[case("0640", "ok mode 0640 ctime unchanged\n", false)]
    #[case("0640", "ok mode 0666 ctime later\n", false)]
    #[case("0o600", "ok mode 0600 ctime later\n", true)]
    fn the_answer_is_the_new_mode_and_a_later_ctime(#[case] mode: &str, #[case] line: &str, #[case] passes: bool) {
        let lowered = table(mode, None).lower().unwrap();
        assert_eq!(lowered.args[0], "{S}");
        assert_eq!(lowered.expect.ending, EndingExpect::Success);
        let regex = lowered.expect.stdout.regex.unwrap();
        assert_eq!(regex.is_match(line.as_bytes()), passes, "{regex} against {line:?}");
    }

    #[rstest::rstest]
    #[case::not_octal(table("0999", None), "not octal permission bits")]
    #[case::status_bits(table("1777", None), "(000..777)")]
    #[case::an_errno_ipc_set_never_gives(table("0640", Some("ENOENT")), "none of what IPC_SET answers")]
    fn a_table_it_cannot_run_is_refused_at_load(#[case] t: IpcSet, #[case] says: &str) {
        let e = t.lower().unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }

    #[test]
    fn a_refusal_is_exit_1_naming_the_errno() {
        let lowered = table("0640", Some("EPERM")).lower().unwrap();
        assert_eq!(lowered.expect.ending, EndingExpect::Code(1));
        let regex = lowered.expect.stdout.regex.unwrap();
        assert!(regex.is_match(b"errno EPERM: shmctl(id 3, IPC_SET) failed\n"));
        assert!(!regex.is_match(b"ok mode 0640 ctime later\n"));
    }

    /// After the wait, the kernel's own seconds clock (what shm_ctime is
    /// stamped with) is past the second, several times in a row.
    #[test]
    fn after_the_wait_the_kernels_seconds_clock_is_past() {
        for _ in 0..3 {
            let second = clock_gettime(ClockId::CLOCK_REALTIME_COARSE).unwrap().tv_sec();
            wait_past_second(second);
            assert!(clock_gettime(ClockId::CLOCK_REALTIME_COARSE).unwrap().tv_sec() > second);
        }
    }
}
