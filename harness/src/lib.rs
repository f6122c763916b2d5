//! shmconf's scenario runner.
//!
//! Data flows one way (see `docs/architecture.md`): scenario file
//! ([`scenario`]: wire types → typed scenario, checked once) → [`plan`]
//! (run or skip, typed reason) → [`engine`] (one step interpreter over a
//! [`engine::backend`] and an [`engine::oracle`], recording [`events`]) →
//! [`check`] (verdicts from the log alone; [`explore`] judges orders against
//! the [`model`]) → [`outcome`] (expectations) → [`report`]. [`compose`]
//! builds the [`runner::Runner`] that ties them, for the CLI and the tests.
//!
//! Modules depend one way too: each uses only modules of lower layers
//! (`tests/architecture.rs` declares the layers and enforces them), with
//! the shared vocabulary ([`events`], [`units`]) and run infrastructure
//! ([`interrupt`], [`parallel`], [`rundir`]) at the bottom.

#![deny(clippy::too_many_lines)] // the threshold (100) is in clippy.toml: a long function is split, not allowed

pub mod bench;
pub mod check;
pub mod compose;
pub mod engine;
pub mod events;
pub mod explore;
pub mod fuzz;
pub mod impls;
pub mod interrupt;
pub mod matrix;
pub mod model;
pub mod outcome;
pub mod parallel;
pub mod plan;
pub mod probe;
pub mod report;
pub mod rundir;
pub mod runner;
pub mod scenario;
pub mod sysv_ops;
pub mod units;
