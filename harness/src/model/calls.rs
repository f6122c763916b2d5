//! The segment table as the SysV semantics say it must be after each
//! traced system call (system-call exploration).
//!
//! Where `Model` predicts whole programs from the contract, this follows the
//! calls an unmodified program actually made, with the results the kernel
//! gave them, and says what the table must then hold (Linux, ipc/shm.c): a
//! shmget that returned an id it had not seen created that segment (key,
//! size, permission bits, no attachment), and only if IPC_CREAT was asked
//! and no live segment had the key; a shmat that returned an address
//! attached once more; a shmdt of that address detached; an IPC_RMID
//! destroyed an unattached segment at once, else marked it (SHM_DEST, key
//! reset to IPC_PRIVATE) for destruction at its last detach; a process's
//! end detached all it still had; a call that failed changed nothing; and
//! nothing else (reads of stdin, writes of stdout) changes the table at all.
//!
//! It judges the kernel, not the program: on Linux it always agrees, unless
//! the program changed the table through a call that is not traced (munmap
//! of an attachment, say). A disagreement names the call after which it
//! showed and how the table differs; the model then takes the kernel's
//! table, so one difference is reported once.

use std::collections::BTreeMap;

use crate::events::SegRow;
use crate::events::TracedCall;

/// A call's result that SysV semantics rule out, whatever the kernel's
/// table: the model's finding, said as what the call returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuledOut {
    #[error("shmget returned id {id}, a segment already removed with IPC_RMID")]
    RemovedIdReturned { id: i32 },
    #[error("shmget({:#x}) returned id {id}, not the live segment with that key", *.key as u32)]
    OtherIdReturned { key: i32, id: i32 },
    #[error("shmget({:#x}) without IPC_CREAT returned id {id}, a segment the table did not have", *.key as u32)]
    UnknownIdWithoutCreate { key: i32, id: i32 },
    #[error("shmget({:#x}) created id {id} while segment {live} has that key", *.key as u32)]
    SecondSegmentForKey { key: i32, id: i32, live: i32 },
    #[error("shmat({id}) succeeded, but the table has no segment {id}")]
    AttachedMissing { id: i32 },
    #[error("shmdt({addr:#x}) succeeded, but {run} attached nothing there")]
    DetachedNothing { addr: u64, run: String },
    #[error("shmctl({id}, IPC_RMID) succeeded, but the table has no segment {id}")]
    RemovedMissing { id: i32 },
    #[error("shmget({:#x}) failed with ENOENT, but segment {live} has that key", *.key as u32)]
    MissingButLive { key: i32, live: i32 },
    #[error("shmget({:#x}, IPC_EXCL) failed with EEXIST, but no live segment has that key", *.key as u32)]
    ExistsButNone { key: i32 },
}

/// SHM_DEST as the mode column shows it.
const SHM_DEST: u32 = 0o1000;

/// One segment, as far as the semantics decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    key: i32,
    size: u64,
    /// The permission bits (the low nine); None after an IPC_SET, whose
    /// new bits come from a buffer that is not traced.
    perms: Option<u32>,
    nattch: u64,
    dest: bool,
}

impl Row {
    fn from_kernel(r: &SegRow) -> Row {
        Row {
            key: r.raw_key,
            size: r.size,
            perms: Some(r.raw_mode & 0o777),
            nattch: r.nattch,
            dest: r.raw_mode & SHM_DEST != 0,
        }
    }

    fn describe(&self, id: i32) -> String {
        format!(
            "id {id} key {:#010x} size {} perms {} nattch {}{}",
            self.key as u32,
            self.size,
            self.perms.map_or("unknown".to_string(), |p| format!("{p:03o}")),
            self.nattch,
            if self.dest { " dest" } else { "" }
        )
    }
}

/// The modelled table and who has what attached where.
#[derive(Debug, Clone, Default)]
pub struct CallModel {
    rows: BTreeMap<i32, Row>,
    /// Per run: (address, segment id) of each attachment it made.
    attached: BTreeMap<String, Vec<(u64, i32)>>,
}

impl CallModel {
    /// Start from what the kernel shows before the first step.
    pub fn new(kernel: &[SegRow]) -> CallModel {
        let mut m = CallModel::default();
        m.adopt(kernel);
        m
    }

    /// Take the kernel's table as it is (after a disagreement, so that one
    /// difference is reported once). Attachments of segments that are gone
    /// are forgotten.
    pub fn adopt(&mut self, kernel: &[SegRow]) {
        self.adopt_after(None, kernel);
    }

    /// As `adopt`, after a step of `run` (the only one that ran): where the
    /// kernel shows fewer attachments than the model, the ones gone were
    /// that run's (detached by a call that is not traced), so they are not
    /// detached a second time at its exit.
    pub fn adopt_after(&mut self, run: Option<&str>, kernel: &[SegRow]) {
        if let Some(list) = run.and_then(|r| self.attached.get_mut(r)) {
            for k in kernel {
                let Some(want) = self.rows.get(&k.shmid) else { continue };
                let mut gone = want.nattch.saturating_sub(k.nattch);
                while gone > 0 {
                    let Some(i) = list.iter().position(|(_, id)| *id == k.shmid) else {
                        break;
                    };
                    list.remove(i);
                    gone -= 1;
                }
            }
        }
        self.rows = kernel.iter().map(|r| (r.shmid, Row::from_kernel(r))).collect();
        for list in self.attached.values_mut() {
            list.retain(|(_, id)| self.rows.contains_key(id));
        }
    }

    fn live_with_key(&self, key: i32) -> Option<i32> {
        self.rows
            .iter()
            .find(|(_, r)| !r.dest && key != libc::IPC_PRIVATE && r.key == key)
            .map(|(id, _)| *id)
    }

    fn detach(&mut self, id: i32) {
        if let Some(r) = self.rows.get_mut(&id) {
            r.nattch = r.nattch.saturating_sub(1);
            if r.dest && r.nattch == 0 {
                self.rows.remove(&id);
            }
        }
    }

    /// `run` executed `call`, which returned `result` (-errno on failure).
    /// An error is a result the semantics rule out, whatever the table.
    pub fn apply(&mut self, run: &str, call: &TracedCall, result: Option<i64>) -> Result<(), RuledOut> {
        let Some(result) = result else {
            // Not a table call (or its result is unknown: it died in it).
            return Ok(());
        };
        if result < 0 {
            return self.refused(call, result);
        }
        match call {
            TracedCall::ShmGet { key, size, flags } => {
                let id = result as i32;
                let existing = self.live_with_key(*key);
                if self.rows.contains_key(&id) {
                    if self.rows.get(&id).is_some_and(|r| r.dest) {
                        return Err(RuledOut::RemovedIdReturned { id });
                    }
                    if existing.is_some_and(|e| e != id) || *key == libc::IPC_PRIVATE {
                        return Err(RuledOut::OtherIdReturned { key: *key, id });
                    }
                    return Ok(());
                }
                if flags & libc::IPC_CREAT == 0 && *key != libc::IPC_PRIVATE {
                    return Err(RuledOut::UnknownIdWithoutCreate { key: *key, id });
                }
                if let Some(e) = existing {
                    return Err(RuledOut::SecondSegmentForKey { key: *key, id, live: e });
                }
                self.rows.insert(
                    id,
                    Row {
                        key: *key,
                        size: *size,
                        perms: Some((*flags as u32) & 0o777),
                        nattch: 0,
                        dest: false,
                    },
                );
                Ok(())
            }
            TracedCall::ShmAt { id } => {
                let Some(row) = self.rows.get_mut(id) else {
                    return Err(RuledOut::AttachedMissing { id: *id });
                };
                row.nattch += 1;
                self.attached
                    .entry(run.to_string())
                    .or_default()
                    .push((result as u64, *id));
                Ok(())
            }
            TracedCall::ShmDt { addr } => {
                let list = self.attached.entry(run.to_string()).or_default();
                let Some(i) = list.iter().position(|(a, _)| a == addr) else {
                    return Err(RuledOut::DetachedNothing {
                        addr: *addr,
                        run: run.to_string(),
                    });
                };
                let (_, id) = list.remove(i);
                self.detach(id);
                Ok(())
            }
            TracedCall::ShmCtl { id, cmd } if *cmd == libc::IPC_RMID => {
                let Some(row) = self.rows.get_mut(id) else {
                    return Err(RuledOut::RemovedMissing { id: *id });
                };
                if row.nattch == 0 {
                    self.rows.remove(id);
                } else {
                    row.dest = true;
                    row.key = libc::IPC_PRIVATE;
                }
                Ok(())
            }
            TracedCall::ShmCtl { id, cmd } if *cmd == libc::IPC_SET => {
                // New permission bits (and owner) come from the caller's
                // buffer, which is not traced: take the kernel's.
                if let Some(r) = self.rows.get_mut(id) {
                    r.perms = None;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A failed call changes nothing; some failures the table rules out.
    fn refused(&self, call: &TracedCall, result: i64) -> Result<(), RuledOut> {
        let errno = (-result) as i32;
        match call {
            TracedCall::ShmGet { key, flags, .. }
                if errno == libc::ENOENT && flags & libc::IPC_CREAT == 0 && self.live_with_key(*key).is_some() =>
            {
                Err(RuledOut::MissingButLive {
                    key: *key,
                    live: self.live_with_key(*key).unwrap_or_default(),
                })
            }
            TracedCall::ShmGet { key, flags, .. }
                if errno == libc::EEXIST && self.live_with_key(*key).is_none() && flags & libc::IPC_EXCL != 0 =>
            {
                Err(RuledOut::ExistsButNone { key: *key })
            }
            _ => Ok(()),
        }
    }

    /// `run` ended (its exit, or a signal): every attachment it had is gone.
    pub fn ended(&mut self, run: &str) {
        for (_, id) in self.attached.remove(run).unwrap_or_default() {
            self.detach(id);
        }
    }

    /// How the kernel's table differs from the model's, if it does.
    pub fn differences(&self, kernel: &[SegRow]) -> Vec<String> {
        let seen: BTreeMap<i32, Row> = kernel.iter().map(|r| (r.shmid, Row::from_kernel(r))).collect();
        let mut out = Vec::new();
        for (id, want) in &self.rows {
            match seen.get(id) {
                None => out.push(format!("segment {id} is gone, the model has {}", want.describe(*id))),
                Some(got) => {
                    let mut fields = Vec::new();
                    let mut differ = |name: &str, got: String, want: String| {
                        if got != want {
                            fields.push(format!("{name} {got}, the model says {want}"));
                        }
                    };
                    differ(
                        "key",
                        format!("{:#010x}", got.key as u32),
                        format!("{:#010x}", want.key as u32),
                    );
                    differ("size", got.size.to_string(), want.size.to_string());
                    if let (Some(got), Some(want)) = (got.perms, want.perms) {
                        differ("perms", format!("{got:03o}"), format!("{want:03o}"));
                    }
                    differ("nattch", got.nattch.to_string(), want.nattch.to_string());
                    differ("marked for removal", got.dest.to_string(), want.dest.to_string());
                    if !fields.is_empty() {
                        out.push(format!("segment {id}: {}", fields.join(", ")));
                    }
                }
            }
        }
        for (id, got) in &seen {
            if !self.rows.contains_key(id) {
                out.push(format!("{} is there, the model has no segment {id}", got.describe(*id)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i32, key: i32, nattch: u64, dest: bool) -> SegRow {
        SegRow {
            key: format!("{key}"),
            shmid: id,
            mode: String::new(),
            size: 1024,
            nattch,
            cpid: None,
            lpid: None,
            uid: None,
            raw_key: key,
            raw_mode: 0o666 | if dest { SHM_DEST } else { 0 },
        }
    }

    const KEY: i32 = 0x4100_0001;

    fn get(key: i32, creat: bool) -> TracedCall {
        TracedCall::ShmGet {
            key,
            size: 1024,
            flags: 0o666 | if creat { libc::IPC_CREAT } else { 0 },
        }
    }

    fn rmid(id: i32) -> TracedCall {
        TracedCall::ShmCtl {
            id,
            cmd: libc::IPC_RMID,
        }
    }

    #[test]
    fn the_writer_then_the_reader() {
        let mut m = CallModel::new(&[]);
        m.apply("w", &get(KEY, true), Some(0)).unwrap();
        assert!(m.differences(&[row(0, KEY, 0, false)]).is_empty());
        m.apply("w", &TracedCall::ShmAt { id: 0 }, Some(0x7000)).unwrap();
        assert!(m.differences(&[row(0, KEY, 1, false)]).is_empty());
        m.apply("w", &TracedCall::ShmDt { addr: 0x7000 }, Some(0)).unwrap();
        assert!(m.differences(&[row(0, KEY, 0, false)]).is_empty());
        m.ended("w");
        m.apply("r", &get(KEY, true), Some(0)).unwrap();
        m.apply("r", &TracedCall::ShmAt { id: 0 }, Some(0x9000)).unwrap();
        m.apply("r", &TracedCall::ShmDt { addr: 0x9000 }, Some(0)).unwrap();
        m.apply("r", &rmid(0), Some(0)).unwrap();
        assert!(m.differences(&[]).is_empty());
        // A kernel that kept it is caught, and says which segment.
        let d = m.differences(&[row(0, KEY, 0, false)]);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("the model has no segment 0"), "{d:?}");
    }

    #[test]
    fn rmid_while_attached_marks_and_the_last_detach_or_exit_destroys() {
        let mut m = CallModel::new(&[row(0, KEY, 0, false)]);
        m.apply("w", &TracedCall::ShmAt { id: 0 }, Some(0x7000)).unwrap();
        m.apply("r", &rmid(0), Some(0)).unwrap();
        assert!(m.differences(&[row(0, 0, 1, true)]).is_empty());
        // Destroyed at once would be wrong while attached.
        assert_eq!(m.differences(&[]).len(), 1);
        m.ended("w");
        assert!(m.differences(&[]).is_empty());
    }

    #[test]
    fn failed_calls_change_nothing_and_some_failures_are_ruled_out() {
        let mut m = CallModel::new(&[]);
        m.apply("w", &TracedCall::ShmAt { id: 0 }, Some(-(libc::EINVAL as i64)))
            .unwrap();
        assert!(m.differences(&[]).is_empty());
        m.apply("w", &get(KEY, true), Some(5)).unwrap();
        let err = m
            .apply("r", &get(KEY, false), Some(-(libc::ENOENT as i64)))
            .unwrap_err();
        assert_eq!(err, RuledOut::MissingButLive { key: KEY, live: 5 });
        let err = m.apply("r", &get(KEY, true), Some(6)).unwrap_err();
        assert_eq!(
            err,
            RuledOut::SecondSegmentForKey {
                key: KEY,
                id: 6,
                live: 5
            }
        );
        assert!(
            err.to_string().contains("created id 6 while segment 5 has that key"),
            "{err}"
        );
    }

    #[test]
    fn an_untraced_detach_is_reported_once() {
        let mut m = CallModel::new(&[row(0, KEY, 0, false)]);
        m.apply("w", &TracedCall::ShmAt { id: 0 }, Some(0x7000)).unwrap();
        // w detaches with munmap: the kernel shows nattch 0 after its step.
        assert_eq!(m.differences(&[row(0, KEY, 0, false)]).len(), 1);
        m.adopt_after(Some("w"), &[row(0, KEY, 0, false)]);
        m.apply("r", &TracedCall::ShmAt { id: 0 }, Some(0x9000)).unwrap();
        // w's exit detaches nothing more: r's attachment stays.
        m.ended("w");
        assert!(m.differences(&[row(0, KEY, 1, false)]).is_empty());
    }

    #[test]
    fn a_change_with_no_call_is_a_difference() {
        let m = CallModel::new(&[row(3, KEY, 1, false)]);
        let d = m.differences(&[row(3, KEY, 0, false)]);
        assert_eq!(d.len(), 1);
        assert_eq!(d, vec!["segment 3: nattch 0, the model says 1".to_string()]);
    }
}
