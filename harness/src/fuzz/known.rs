//! A fuzz target's known divergences (`shmconf fuzz --known FILE`): the
//! kinds of divergence already found, explained and kept as scenarios, so a
//! bounded run fails only on a kind nobody has seen (as `--expectations`
//! does for the catalogue). A kind is what the fuzzer reports once: the
//! call and what the model and the kernel answered, by kind.
//!
//! ```toml
//! [[divergence]]
//! call = "shmget"
//! model = "EACCES"     # what the model predicted (an answer's kind)
//! kernel = "id"        # what the target answered
//! reason = "gVisor does not check the requested mode against the caller"
//! scenario = "errors/other-uid-eacces"
//!
//! [listing]            # the kernel does not list what SHM_INFO counts
//! reason = "gVisor refuses SHM_STAT"
//! ```

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::model::program::Kind;
use crate::scenario::LoadError;
use crate::sysv_ops::observe::Answer;
use crate::sysv_ops::CALLS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    divergence: Vec<Entry>,
    listing: Option<ListingEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    call: Spanned<String>,
    /// Both answers, or neither with `table = true` (the table after the
    /// call differs) or `missing = true` (the executor stopped early).
    model: Option<Spanned<String>>,
    kernel: Option<Spanned<String>>,
    #[serde(default)]
    table: bool,
    #[serde(default)]
    missing: bool,
    reason: String,
    scenario: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListingEntry {
    reason: String,
}

/// One known kind and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKind {
    pub kind: Kind,
    pub reason: String,
    /// The catalogue scenario that checks it, if any.
    pub scenario: Option<String>,
}

/// What a target is known to do differently from the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub kinds: Vec<KnownKind>,
    /// Why its listing may fall short of its count, if it is known to.
    pub listing: Option<String>,
}

impl Known {
    pub fn load(path: &Path) -> Result<Known, LoadError> {
        let text = crate::scenario::discover::read_bounded(path)?;
        Known::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Known, LoadError> {
        let file: File = crate::scenario::wire::from_toml(path, text)?;
        let at = |offset: usize, message: String| LoadError::at(path, text, offset, message);
        let mut kinds: Vec<KnownKind> = Vec::new();
        for entry in file.divergence {
            let call_at = entry.call.span().start;
            let Some(call) = CALLS.iter().map(|(c, _)| *c).find(|c| *c == entry.call.get_ref()) else {
                let names: Vec<&str> = CALLS.iter().map(|(c, _)| *c).collect();
                return Err(at(
                    call_at,
                    format!(
                        "unknown call {:?}: expected one of {}",
                        entry.call.get_ref(),
                        names.join(", ")
                    ),
                ));
            };
            let answer = |s: &Spanned<String>| {
                Answer::named(s.get_ref()).ok_or_else(|| {
                    at(
                        s.span().start,
                        format!(
                            "unknown answer {:?}: expected an errno name (EACCES) or one of {}",
                            s.get_ref(),
                            Answer::NAMED
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })
            };
            let kind =
                match (&entry.model, &entry.kernel, entry.table, entry.missing) {
                    (Some(model), Some(kernel), false, false) => Kind::Result {
                        call,
                        expected: answer(model)?,
                        observed: answer(kernel)?,
                    },
                    (None, None, true, false) => Kind::Table { call },
                    (None, None, false, true) => Kind::Missing,
                    _ => return Err(at(
                        call_at,
                        "a divergence is `model` and `kernel` (both answers), or `table = true`, or `missing = true`"
                            .into(),
                    )),
                };
            if kinds.iter().any(|k| k.kind == kind) {
                return Err(at(call_at, "this kind is listed twice".into()));
            }
            kinds.push(KnownKind {
                kind,
                reason: entry.reason,
                scenario: entry.scenario,
            });
        }
        Ok(Known {
            kinds,
            listing: file.listing.map(|l| l.reason),
        })
    }

    /// Nothing is known (no file given): the report marks nothing.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.listing.is_none()
    }

    /// Why `kind` is known, if it is.
    pub fn of(&self, kind: Kind) -> Option<&KnownKind> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn kinds_read_as_the_fuzzer_names_them() {
        let known = Known::parse(
            Path::new("k.toml"),
            "[[divergence]]\ncall = \"shmget\"\nmodel = \"EACCES\"\nkernel = \"id\"\nreason = \"r\"\nscenario = \"errors/x\"\n\
             [[divergence]]\ncall = \"IPC_RMID\"\ntable = true\nreason = \"t\"\n\
             [[divergence]]\ncall = \"shmat\"\nmodel = \"attached\"\nkernel = \"EACCES\"\nreason = \"c\"\n\
             [listing]\nreason = \"l\"\n",
        )
        .unwrap();
        assert_eq!(known.kinds.len(), 3);
        let eacces = Kind::Result {
            call: "shmget",
            expected: Answer::Errno(libc::EACCES),
            observed: Answer::Id,
        };
        assert_eq!(known.of(eacces).map(|k| k.reason.as_str()), Some("r"));
        assert_eq!(known.of(eacces).and_then(|k| k.scenario.as_deref()), Some("errors/x"));
        assert!(known.of(Kind::Table { call: "IPC_RMID" }).is_some());
        assert!(known
            .of(Kind::Result {
                call: "shmat",
                expected: Answer::Attached,
                observed: Answer::Errno(libc::EACCES),
            })
            .is_some());
        // The same answers for another call are another kind.
        assert!(known
            .of(Kind::Result {
                call: "shmat",
                expected: Answer::Errno(libc::EACCES),
                observed: Answer::Id,
            })
            .is_none());
        assert_eq!(known.listing.as_deref(), Some("l"));
    }

    #[rstest]
    #[case::unknown_call(
        "[[divergence]]\ncall = \"shmgot\"\nmodel = \"EACCES\"\nkernel = \"id\"\nreason = \"r\"\n",
        2,
        8,
        "unknown call \"shmgot\""
    )]
    #[case::unknown_answer(
        "[[divergence]]\ncall = \"shmget\"\nmodel = \"EACCESS\"\nkernel = \"id\"\nreason = \"r\"\n",
        3,
        9,
        "unknown answer \"EACCESS\""
    )]
    #[case::one_answer(
        "[[divergence]]\ncall = \"shmget\"\nmodel = \"EACCES\"\nreason = \"r\"\n",
        2,
        8,
        "both answers"
    )]
    #[case::no_reason(
        "[[divergence]]\ncall = \"shmget\"\nmodel = \"EACCES\"\nkernel = \"id\"\n",
        1,
        1,
        "missing field `reason`"
    )]
    #[case::unknown_field(
        "[[divergence]]\ncall = \"shmget\"\ntable = true\nreason = \"r\"\nwhy = 1\n",
        5,
        1,
        "unknown field `why`"
    )]
    #[case::twice("[[divergence]]\ncall = \"shmget\"\ntable = true\nreason = \"r\"\n[[divergence]]\ncall = \"shmget\"\ntable = true\nreason = \"s\"\n", 6, 8, "listed twice")]
    fn a_wrong_file_says_where(#[case] text: &str, #[case] line: usize, #[case] column: usize, #[case] says: &str) {
        let e = Known::parse(Path::new("k.toml"), text).unwrap_err();
        assert_eq!((e.line, e.column), (line, column), "{e}");
        assert!(e.to_string().starts_with("k.toml:") && e.message.contains(says), "{e}");
    }
}
