//! shmconf's core: safe System V shared memory ([`sysv`]), the kernel's
//! segment table ([`segtable`]), private IPC namespaces ([`ipcns`]) and what
//! the seed-compatible `shm-writer` / `shm-reader` share ([`cli`]) and those
//! programs themselves ([`programs`]).

pub mod cli;
pub mod ipcns;
pub mod programs;
pub mod segtable;
pub mod sysv;

pub use segtable::SegTable;
pub use sysv::{Attachment, Create, Key, ReadOnly, ReadWrite, Segment, SegmentStat};
