//! The kernel's view of the segments, behind one seam: the step interpreter
//! and the exploration both ask an [`Oracle`], never `/proc` directly, so an
//! oracle that reads the kernel another way (shmctl, for sandboxes without
//! procfs) is one more implementation of the trait.

use shmconf::{SegTable, Segment};

use crate::events::SegRow;

pub trait Oracle: Send + Sync {
    fn name(&self) -> &'static str;

    /// Every segment of the calling thread's IPC namespace.
    fn table(&self) -> Result<Vec<SegRow>, String>;

    /// Up to `max` bytes of a segment, read through an attachment that
    /// nothing else can see (not inherited by a concurrent fork, so it never
    /// shows in another process's view of nattch).
    fn content(&self, shmid: i32, max: usize) -> Result<Vec<u8>, String>;
}

/// `/proc/sysvipc/shm`, and a read-only attachment for contents.
pub struct Procfs;

impl Oracle for Procfs {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn table(&self) -> Result<Vec<SegRow>, String> {
        SegTable::read()
            .map(|t| t.rows.iter().map(SegRow::from_row).collect())
            .map_err(|e| format!("cannot read the segment table: {e}"))
    }

    fn content(&self, shmid: i32, max: usize) -> Result<Vec<u8>, String> {
        Segment::from_id(shmid)
            .attach_unseen()
            .map(|a| a.to_vec_capped(max))
            .map_err(|e| e.to_string())
    }
}
