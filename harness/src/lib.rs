//! shmconf's scenario runner.
//!
//! Data flows one way (see `docs/architecture.md`): scenario file
//! ([`scenario`]: wire types → typed scenario, checked once) → [`plan`]
//! (run or skip, typed reason) → [`engine`] (one step interpreter over a
//! [`engine::backend`] and an [`engine::oracle`], recording [`events`]) →
//! [`check`] (verdicts from the log alone; [`explore`] judges orders against
//! the [`model`]) → [`outcome`] (expectations) → [`report`]. [`compose`]
//! builds the [`runner::Runner`] that ties them, for the CLI and the tests.

pub mod bench;
pub mod check;
pub mod compose;
pub mod diagram;
pub mod engine;
pub mod events;
pub mod explore;
pub mod impls;
pub mod matrix;
pub mod model;
pub mod outcome;
pub mod plan;
pub mod probe;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod units;
