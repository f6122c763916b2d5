//! shmconf's scenario runner.
//!
//! Data flows one way: scenario file ([`scenario`]) → execution that records
//! an event log ([`exec`], [`procs`], [`events`]) → verdicts from the log
//! alone ([`check`]) → reports ([`report`]). [`runner`] ties them together;
//! [`impls`] says how an implementation's roles are started; [`probe`] is the
//! raw-syscall role.

pub mod bench;
pub mod check;
pub mod docker;
pub mod events;
pub mod exec;
pub mod explore;
pub mod impls;
pub mod model;
pub mod probe;
pub mod procs;
pub mod report;
pub mod runner;
pub mod scenario;
