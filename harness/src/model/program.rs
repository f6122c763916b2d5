//! A program of SysV operations (`crate::sysv_ops`) held against a
//! reference model that predicts every answer and the table after each
//! ([`predict`]): the judge of `shmconf fuzz` and of a scenario's
//! `program` step. The first disagreement is a [`Divergence`]; a report the
//! executor printed is read by [`read_report`] and judged in words by
//! [`judge_report`].

pub mod predict;

use std::collections::BTreeMap;

use crate::sysv_ops::observe::{Answer, Hello, Listing, Observation, OpResult, SegState};
use crate::sysv_ops::{Op, Program};
use predict::{Model, Predicted};

/// How an operation's answer and the model's differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disagreement {
    /// The result differs.
    Result { expected: Expected, observed: OpResult },
    /// The table after the operation differs.
    Table {
        expected: Vec<(i32, SegState)>,
        observed: Vec<(i32, SegState)>,
    },
    /// The executor reported fewer operations than the program has.
    Missing,
}

/// The first operation of a program whose answer the model did not predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// 0-based.
    pub index: usize,
    pub op: Op,
    pub disagreement: Disagreement,
}

/// What the model predicted, with the kernel's ids bound so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A new segment's id (no live segment's).
    NewId,
    /// The id the kernel gave this segment earlier.
    Id(i32),
    /// The id of a segment whose id the kernel never gave (model's number).
    Unbound(usize),
    Exactly(OpResult),
}

impl Expected {
    fn of(p: &Predicted, bound: &BTreeMap<usize, i32>) -> Expected {
        match p {
            Predicted::NewId { .. } => Expected::NewId,
            Predicted::SameId { seg } => bound.get(seg).map_or(Expected::Unbound(*seg), |id| Expected::Id(*id)),
            Predicted::Exactly(o) => Expected::Exactly(o.clone()),
        }
    }

    /// Its kind, as an answer's.
    pub fn answer(&self) -> Answer {
        match self {
            Expected::NewId | Expected::Id(_) | Expected::Unbound(_) => Answer::Id,
            Expected::Exactly(o) => o.answer(),
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::NewId => write!(f, "a new segment's id"),
            Expected::Id(id) => write!(f, "id {id}"),
            Expected::Unbound(seg) => write!(f, "the id of segment #{seg}"),
            Expected::Exactly(o) => write!(f, "{o}"),
        }
    }
}

/// A kind of divergence: the call, and what the model and the kernel
/// answered (by kind) or that the table or the report differs. Shrinking
/// keeps it; the fuzzer reports one program per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Result {
        call: &'static str,
        expected: Answer,
        observed: Answer,
    },
    Table {
        call: &'static str,
    },
    Missing,
}

impl Divergence {
    /// Its kind: what must stay the same while a program is shrunk, and
    /// what tells one divergence from another (EEXIST answered EINVAL is
    /// not EACCES answered with an id, though both are shmget's).
    pub fn kind(&self) -> Kind {
        match &self.disagreement {
            Disagreement::Result { expected, observed } => Kind::Result {
                call: self.op.call(),
                expected: expected.answer(),
                observed: observed.answer(),
            },
            Disagreement::Table { .. } => Kind::Table { call: self.op.call() },
            Disagreement::Missing => Kind::Missing,
        }
    }
}

fn table_text(rows: &[(i32, SegState)]) -> String {
    if rows.is_empty() {
        return "empty".into();
    }
    rows.iter()
        .map(|(id, s)| format!("id {id}: {s}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "operation {} ({}): ", self.index + 1, self.op)?;
        match &self.disagreement {
            Disagreement::Result { expected, observed } => {
                write!(f, "the model says {expected}, the kernel answered {observed}")
            }
            Disagreement::Table { expected, observed } => write!(
                f,
                "the table after it should be [{}], the kernel's is [{}]",
                table_text(expected),
                table_text(observed)
            ),
            Disagreement::Missing => write!(f, "the executor reported nothing for it"),
        }
    }
}

/// How many segments the model holds alive after operation `index` (what
/// SHM_INFO's count and the listing should both show).
pub fn live_after(program: &Program, hello: Hello, index: usize) -> usize {
    let mut model = Model::new(hello);
    for op in program.ops.iter().take(index + 1) {
        model.apply(op);
    }
    model.table().len()
}

/// A listing shortfall held against the model's `live` segments: which of
/// the kernel's count and its listing is wrong (or both).
pub fn listing_against_model(listing: &Listing, live: usize) -> String {
    let counted = usize::try_from(listing.counted).ok();
    let count = match counted {
        Some(c) if c == live => "SHM_INFO's count is right".to_string(),
        Some(c) if c > live => format!("SHM_INFO counts {} more", c - live),
        Some(c) => format!("SHM_INFO counts {} fewer", live - c),
        None => format!("SHM_INFO's count is negative ({})", listing.counted),
    };
    let list = match listing.listed {
        l if l == live => "the listing is right".to_string(),
        l if l < live => format!("the listing shows {} fewer", live - l),
        l => format!("the listing shows {} more", l - live),
    };
    format!(
        "{live} segment{} alive by the model: {count}, {list}",
        if live == 1 { " is" } else { "s are" }
    )
}

/// Hold each observation against the model; the first disagreement.
pub fn judge(program: &Program, hello: Hello, observed: &[Observation]) -> Result<usize, Divergence> {
    let mut model = Model::new(hello);
    // The model's segment numbers and the kernel's ids, bound as they appear.
    let mut bound: BTreeMap<usize, i32> = BTreeMap::new();
    for (index, op) in program.ops.iter().enumerate() {
        let diverged = |disagreement| Divergence {
            index,
            op: *op,
            disagreement,
        };
        let Some(obs) = observed.get(index) else {
            return Err(diverged(Disagreement::Missing));
        };
        let predicted = model.apply(op);
        let agrees = match (&predicted, &obs.outcome) {
            (Predicted::NewId { seg }, OpResult::Id { id }) => {
                // A new segment's id is no live segment's id.
                let taken = bound.iter().any(|(s, b)| b == id && model.alive(*s) && s != seg);
                if !taken {
                    bound.insert(*seg, *id);
                }
                !taken
            }
            (Predicted::SameId { seg }, OpResult::Id { id }) => bound.get(seg) == Some(id),
            (Predicted::Exactly(expected), got) => expected == got,
            _ => false,
        };
        if !agrees {
            return Err(diverged(Disagreement::Result {
                expected: Expected::of(&predicted, &bound),
                observed: obs.outcome.clone(),
            }));
        }
        let expected: Vec<(i32, SegState)> = {
            let mut rows: Vec<(i32, SegState)> = model
                .table()
                .into_iter()
                .map(|(s, state)| (bound.get(&s).copied().unwrap_or(i32::MIN), state))
                .collect();
            rows.sort_by_key(|(id, _)| *id);
            rows
        };
        let mut got = obs.table.clone();
        got.sort_by_key(|(id, _)| *id);
        if expected != got {
            return Err(diverged(Disagreement::Table {
                expected,
                observed: got,
            }));
        }
    }
    Ok(program.ops.len())
}

/// A line of the executor's report that is not what it should be.
#[derive(Debug)]
pub struct Garbled {
    /// Its first 200 characters.
    pub line: String,
    pub error: serde_json::Error,
}

/// The executor's report: its first line, then one observation per
/// operation it performed (`None`: it said nothing at all).
pub fn read_report(stdout: &[u8]) -> Result<Option<(Hello, Vec<Observation>)>, Garbled> {
    let text = String::from_utf8_lossy(stdout);
    let mut lines = text.lines();
    let garbled = |line: &str, error| Garbled {
        line: line.chars().take(200).collect(),
        error,
    };
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    let hello: Hello = serde_json::from_str(first).map_err(|e| garbled(first, e))?;
    let observed = lines
        .map(|line| serde_json::from_str(line).map_err(|e| garbled(line, e)))
        .collect::<Result<Vec<Observation>, Garbled>>()?;
    Ok(Some((hello, observed)))
}

/// A `program` step's judgement of what the executor printed: each
/// problem, in words (none: every answer and table agrees with the model
/// and the kernel listed what it counted).
pub fn judge_report(program: &Program, stdout: &[u8]) -> Vec<String> {
    let (hello, observed) = match read_report(stdout) {
        Ok(Some(report)) => report,
        Ok(None) => return vec!["the executor reported nothing (not even who it runs as)".into()],
        Err(Garbled { line, error }) => {
            return vec![format!(
                "the executor's report has a line that is not an observation: {line:?}: {error}"
            )]
        }
    };
    let mut problems = Vec::new();
    if let Err(d) = judge(program, hello, &observed) {
        problems.push(d.to_string());
    }
    if let Some((index, listing)) = observed.iter().enumerate().find_map(|(i, o)| o.listing.map(|l| (i, l))) {
        problems.push(format!(
            "after operation {} ({}) the kernel does not list what it counts: {listing}; {}",
            index + 1,
            program.ops.get(index).map_or_else(String::new, ToString::to_string),
            listing_against_model(&listing, live_after(program, hello, index))
        ));
    }
    problems
}
