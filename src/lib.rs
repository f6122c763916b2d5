//! shmconf's core: safe System V shared memory ([`sysv`]), the kernel's
//! segment table ([`segtable`]), private IPC namespaces ([`ipcns`]) and what
//! the seed-compatible `shm-writer` / `shm-reader` share ([`cli`]) and those
//! programs themselves ([`programs`]).

#![deny(clippy::too_many_lines)] // the threshold (100) is in clippy.toml: a long function is split, not allowed

pub mod cli;
pub mod ipcns;
pub mod programs;
pub mod segtable;
pub mod sysv;

pub use segtable::SegTable;
pub use sysv::{Attachment, Create, Key, ReadOnly, ReadWrite, Segment, SegmentStat};
