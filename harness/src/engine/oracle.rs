//! The kernel's view of the segments, behind one seam: the step interpreter
//! and the exploration both ask an [`Oracle`], never `/proc` directly.
//!
//! * [`Procfs`] reads `/proc/sysvipc/shm`.
//! * [`Syscalls`] needs no procfs: `shmctl(SHM_INFO)` and
//!   `shmctl(index, SHM_STAT_ANY)` enumerate the namespace's segments (as
//!   `ipcs` does), and where a kernel refuses enumeration (gVisor answers
//!   SHM_STAT with EINVAL), the keys and ids the scenario named are looked up
//!   with `shmget(key, 0, 0)` + `IPC_STAT`, and ids are tried upward from 0
//!   until SHM_INFO's count of segments is found.
//! * [`CrossCheck`] reads both and compares them on every read; a disagreement is an
//!   error naming the fields, which makes the oracle a conformance check of
//!   procfs against shmctl.

use std::collections::BTreeSet;

use shmconf::sysv::{self, Create, Key};
use shmconf::{SegTable, Segment};

use crate::events::SegRow;

/// What the scenario has named so far: keys it resolved, ids it saved. An
/// oracle that cannot enumerate the table still finds these.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub keys: BTreeSet<i32>,
    pub ids: BTreeSet<i32>,
}

pub trait Oracle: Send + Sync {
    fn name(&self) -> &'static str;

    /// Every segment of the calling thread's IPC namespace (or, where the
    /// kernel refuses enumeration, every one of those `known` names).
    fn table(&self, known: &Known) -> Result<Vec<SegRow>, String>;

    /// Up to `max` bytes of a segment, read through an attachment that
    /// nothing else can see (not inherited by a concurrent fork, so it never
    /// shows in another process's view of nattch).
    fn content(&self, shmid: i32, max: usize) -> Result<Vec<u8>, String> {
        Segment::from_id(shmid)
            .attach_unseen()
            .map(|a| a.to_vec_capped(max))
            .map_err(|e| e.to_string())
    }
}

/// `/proc/sysvipc/shm`.
pub struct Procfs;

impl Oracle for Procfs {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn table(&self, _known: &Known) -> Result<Vec<SegRow>, String> {
        SegTable::read()
            .map(|t| t.rows.iter().map(SegRow::from_row).collect())
            .map_err(|e| format!("cannot read the segment table: {e}"))
    }
}

/// shmctl only: SHM_INFO + SHM_STAT_ANY, or lookups of what is known.
pub struct Syscalls;

fn row(id: i32, st: &sysv::SegmentStat) -> SegRow {
    SegRow {
        key: st.key.to_string(),
        shmid: id,
        mode: format!("{:04o}", st.mode & 0o7777),
        size: st.size as u64,
        nattch: st.nattch,
        cpid: Some(st.cpid),
        lpid: Some(st.lpid),
        uid: Some(st.uid),
        raw_key: st.key.raw(),
        raw_mode: st.mode & 0o7777,
    }
}

impl Syscalls {
    /// Every slot 0..=max_index, and the count SHM_INFO gives; the rows fall
    /// short of the count where the kernel refuses SHM_STAT for used slots.
    fn enumerate() -> Result<(Vec<SegRow>, usize), String> {
        let info = sysv::shm_info().map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for index in 0..=info.max_index {
            match Segment::stat_index(index) {
                Ok((seg, st)) => rows.push(row(seg.id(), &st)),
                Err(e) if matches!(e.errno, sysv::Errno::EINVAL | sysv::Errno::EIDRM) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok((rows, info.used_ids.max(0) as usize))
    }

    /// Without SHM_STAT: the ids and keys the scenario named, then IPC_STAT
    /// of ids upward from 0 until SHM_INFO's count is reached (kernels that
    /// refuse SHM_STAT, such as gVisor, hand out small sequential ids).
    fn lookup(known: &Known, used: usize) -> Vec<SegRow> {
        /// Ids tried at most, whatever SHM_INFO says.
        const SCAN: i32 = 1 << 16;
        let mut ids: BTreeSet<i32> = known.ids.clone();
        for &k in known.keys.iter().filter(|&&k| k != 0) {
            if let Ok(seg) = Segment::get(Key::from_raw(k), 0, Create::No, 0) {
                ids.insert(seg.id());
            }
        }
        let mut rows: Vec<SegRow> = ids
            .iter()
            .filter_map(|&id| Segment::from_id(id).stat().ok().map(|st| row(id, &st)))
            .collect();
        // Upward from 0, until the count is reached, or 1024 ids past the
        // highest id seen (SHM_INFO may count segments IPC_STAT cannot see).
        let mut id = 0;
        let mut last_hit = ids.iter().next_back().copied().unwrap_or(0);
        while rows.len() < used && id < SCAN && id <= last_hit + 1024 {
            if !ids.contains(&id) {
                if let Ok(st) = Segment::from_id(id).stat() {
                    rows.push(row(id, &st));
                    last_hit = last_hit.max(id);
                }
            }
            id += 1;
        }
        rows.sort_by_key(|r| r.shmid);
        rows
    }
}

impl Oracle for Syscalls {
    fn name(&self) -> &'static str {
        "syscalls"
    }

    fn table(&self, known: &Known) -> Result<Vec<SegRow>, String> {
        let (rows, used) = Self::enumerate()?;
        if rows.len() >= used {
            return Ok(rows);
        }
        Ok(Self::lookup(known, used))
    }
}

/// Both oracles, compared on every read.
pub struct CrossCheck;

/// Rows by id, fields as both oracles can say them.
fn differences(procfs: &[SegRow], syscalls: &[SegRow]) -> Vec<String> {
    let by_id = |rows: &[SegRow]| -> std::collections::BTreeMap<i32, SegRow> {
        rows.iter().map(|r| (r.shmid, r.clone())).collect()
    };
    let (p, s) = (by_id(procfs), by_id(syscalls));
    let mut out = Vec::new();
    for (id, a) in &p {
        match s.get(id) {
            None => out.push(format!(
                "id {id} ({}) is in /proc/sysvipc/shm, not found by shmctl",
                a.describe()
            )),
            Some(b) => {
                for (field, x, y) in [
                    ("key", a.key.clone(), b.key.clone()),
                    ("mode", a.mode.clone(), b.mode.clone()),
                    ("size", a.size.to_string(), b.size.to_string()),
                    ("nattch", a.nattch.to_string(), b.nattch.to_string()),
                    ("cpid", format!("{:?}", a.cpid), format!("{:?}", b.cpid)),
                    ("lpid", format!("{:?}", a.lpid), format!("{:?}", b.lpid)),
                    ("uid", format!("{:?}", a.uid), format!("{:?}", b.uid)),
                ] {
                    if x != y {
                        out.push(format!("id {id}: {field} is {x} in /proc/sysvipc/shm, {y} by shmctl"));
                    }
                }
            }
        }
    }
    for (id, b) in &s {
        if !p.contains_key(id) {
            out.push(format!(
                "id {id} ({}) is found by shmctl, not in /proc/sysvipc/shm",
                b.describe()
            ));
        }
    }
    out
}

impl Oracle for CrossCheck {
    fn name(&self) -> &'static str {
        "cross-check"
    }

    fn table(&self, known: &Known) -> Result<Vec<SegRow>, String> {
        // A process of the scenario may change the table between two reads:
        // only a view procfs shows the same before and after counts.
        let mut last = Vec::new();
        for _ in 0..20 {
            let before = Procfs.table(known)?;
            let syscalls = Syscalls.table(known)?;
            let after = Procfs.table(known)?;
            if before != after {
                last = after;
                std::thread::yield_now();
                continue;
            }
            let diff = differences(&before, &syscalls);
            if diff.is_empty() {
                return Ok(before);
            }
            return Err(format!("the kernel's two views disagree: {}", diff.join("; ")));
        }
        // Never still long enough to compare: use procfs, say nothing false.
        Ok(last)
    }
}

/// The oracle for this machine: procfs where it exists, else syscalls, and
/// a note saying so.
pub fn detect() -> (Box<dyn Oracle>, Option<String>) {
    if std::fs::File::open(shmconf::segtable::PROC_PATH).is_ok() {
        (Box::new(Procfs), None)
    } else {
        (
            Box::new(Syscalls),
            Some(format!(
                "{} is missing here; the kernel is read through shmctl (SHM_INFO, SHM_STAT, IPC_STAT)",
                shmconf::segtable::PROC_PATH
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: i32, nattch: u64) -> SegRow {
        SegRow {
            key: "0x00000041".into(),
            shmid: id,
            mode: "0666".into(),
            size: 1024,
            nattch,
            cpid: Some(7),
            lpid: Some(8),
            uid: Some(0),
            raw_key: 0x41,
            raw_mode: 0o666,
        }
    }

    #[test]
    fn differences_name_the_id_and_the_field() {
        assert!(differences(&[r(1, 0)], &[r(1, 0)]).is_empty());
        let d = differences(&[r(1, 0), r(2, 0)], &[r(1, 1), r(3, 0)]);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d[0].contains("id 1: nattch is 0 in /proc/sysvipc/shm, 1 by shmctl"),
            "{d:?}"
        );
        assert!(d[1].contains("id 2") && d[1].contains("not found by shmctl"), "{d:?}");
        assert!(
            d[2].contains("id 3") && d[2].contains("not in /proc/sysvipc/shm"),
            "{d:?}"
        );
    }
}
