//! What a scheduler lets happen next in a system-call exploration, as orders,
//! sleep sets and the log name it.

use serde::{Serialize, Serializer};

/// What the scheduler lets happen next.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Choice {
    /// The run executes the call it is stopped at and goes on to its next.
    Step(String),
    /// The run's next piece of input is written to its stdin.
    Feed(String),
}

impl Choice {
    /// `w` for a step, `w<` for a piece of input (as replay orders say).
    pub fn label(&self) -> String {
        match self {
            Choice::Step(run) => run.clone(),
            Choice::Feed(run) => format!("{run}<"),
        }
    }

    pub fn parse(label: &str) -> Choice {
        match label.strip_suffix('<') {
            Some(run) => Choice::Feed(run.to_string()),
            None => Choice::Step(label.to_string()),
        }
    }

    /// The run it moves on.
    pub fn run(&self) -> &str {
        match self {
            Choice::Step(run) | Choice::Feed(run) => run,
        }
    }

    /// The sequence of events this belongs to: the run, or its input (the
    /// two are told apart exactly as their labels are).
    pub fn owner(&self) -> String {
        self.label()
    }
}

/// The log writes a choice as its label, as `--order` takes it.
impl Serialize for Choice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}
