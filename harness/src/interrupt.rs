//! Whether the run was interrupted (SIGINT, SIGTERM, SIGHUP), and by what:
//! run-wide state that everything from scenario discovery to the engine
//! consults, so it sits below all of them. The signal handling that sets it
//! (and kills the live process groups) is `engine::procs::interrupt_all`.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::Signal;

/// The signal that stopped the run, or 0.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// Record the first signal that interrupts the run (later ones change
/// nothing).
pub fn mark(signal: i32) {
    let _ = INTERRUPTED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) != 0
}

/// The signal that interrupted the run, if any.
pub fn interrupting_signal() -> Option<Signal> {
    Signal::try_from(INTERRUPTED.load(Ordering::SeqCst)).ok()
}

/// The run was interrupted, as an error: by what signal, where one is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted(pub Option<Signal>);

impl Interrupted {
    /// What the run is interrupted by as of now.
    pub fn now() -> Interrupted {
        Interrupted(interrupting_signal())
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(s) => write!(f, "interrupted by {}", s.as_str()),
            None => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for Interrupted {}

/// What a run was interrupted by, for messages.
pub fn interruption() -> String {
    Interrupted::now().to_string()
}
