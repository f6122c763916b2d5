//! What an event of a system-call exploration touched: the dependency that
//! partial-order reduction reads (two events commute unless they touch one
//! thing and at least one of them changes it, or both take from one run's
//! input). The log writes each as a short label (`r:table`, `w:7`,
//! `stdin:w`).

use std::fmt;

use serde::{Serialize, Serializer};

/// One thing an event read or changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// It read the segment table (a lookup, an attach, a stat).
    ReadTable,
    /// It changed the segment table (a creation, an attach count, a removal).
    WriteTable,
    /// It took from this run's input: two takes do not commute.
    Stdin(String),
    /// It ran while this segment was attached, so it may have read it.
    ReadSegment(i32),
    /// The segment's content changed during it.
    WriteSegment(i32),
}

impl Access {
    /// Whether an event that did `self` and one that did `other` may give
    /// another outcome in the other order.
    pub fn conflicts_with(&self, other: &Access) -> bool {
        use Access::*;
        match (self, other) {
            (ReadTable, WriteTable) | (WriteTable, ReadTable | WriteTable) => true,
            (Stdin(a), Stdin(b)) => a == b,
            (ReadSegment(a), WriteSegment(b)) | (WriteSegment(a), ReadSegment(b) | WriteSegment(b)) => a == b,
            _ => false,
        }
    }
}

/// Do two events conflict (may not commute), by what each touched?
pub fn conflict(a: &[Access], b: &[Access]) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.conflicts_with(y)))
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::ReadTable => f.write_str("r:table"),
            Access::WriteTable => f.write_str("w:table"),
            Access::Stdin(run) => write!(f, "stdin:{run}"),
            Access::ReadSegment(id) => write!(f, "r:{id}"),
            Access::WriteSegment(id) => write!(f, "w:{id}"),
        }
    }
}

impl Serialize for Access {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::conflict;
    use super::Access::{self, *};

    /// Reads of one thing commute; a change conflicts with any read or
    /// change of the same thing, never of another; takes from one input
    /// conflict, from two inputs not. Symmetric, as a dependency must be.
    #[rstest::rstest]
    #[case(ReadTable, ReadTable, false)]
    #[case(ReadTable, WriteTable, true)]
    #[case(WriteTable, WriteTable, true)]
    #[case(ReadSegment(3), ReadSegment(3), false)]
    #[case(ReadSegment(3), WriteSegment(3), true)]
    #[case(WriteSegment(3), WriteSegment(3), true)]
    #[case(WriteSegment(3), WriteSegment(4), false)]
    #[case(ReadSegment(3), WriteSegment(4), false)]
    #[case(WriteTable, WriteSegment(3), false)]
    #[case(Stdin("w".into()), Stdin("w".into()), true)]
    #[case(Stdin("w".into()), Stdin("v".into()), false)]
    #[case(Stdin("w".into()), WriteTable, false)]
    fn dependency_is_a_write_against_the_same_thing(#[case] a: Access, #[case] b: Access, #[case] expected: bool) {
        assert_eq!(a.conflicts_with(&b), expected, "{a} against {b}");
        assert_eq!(b.conflicts_with(&a), expected, "{b} against {a}");
        assert_eq!(
            conflict(&[ReadTable, a.clone()], std::slice::from_ref(&b)),
            expected || b == WriteTable
        );
    }

    #[test]
    fn the_log_keeps_its_labels() {
        let labels: Vec<String> = [
            ReadTable,
            WriteTable,
            Stdin("w".into()),
            ReadSegment(7),
            WriteSegment(7),
        ]
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
        assert_eq!(
            labels,
            ["\"r:table\"", "\"w:table\"", "\"stdin:w\"", "\"r:7\"", "\"w:7\""]
        );
    }
}
