//! What can stop a benchmark: each variant names what failed; the causes
//! (an I/O error, a System V call's errno) are kept as sources.

use std::process::ExitStatus;

use super::MECHANISMS;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A chunk's bytes are not the ones sent: the measurement is void.
    #[error("chunk {seq} arrived corrupted (first bad byte near offset {at})")]
    Corrupted { seq: u64, at: usize },
    #[error("{0} panicked")]
    Panicked(&'static str),
    #[error("unknown mechanism {name:?}; known: {known}", name = .0, known = MECHANISMS.join(", "))]
    UnknownMechanism(String),
    /// What failed while measuring one mechanism.
    #[error("{mechanism}: {source}")]
    InMechanism {
        mechanism: String,
        #[source]
        source: Box<BenchError>,
    },
    #[error("peer exited with {0}")]
    PeerFailed(ExitStatus),
    #[error("the output file differs from the input")]
    OutputDiffers,
    /// `shmconf bench-peer` was started without an id its mechanism needs.
    #[error("bench-peer: {0} is missing")]
    MissingArgument(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sysv(#[from] shmconf::sysv::Error),
    #[error(transparent)]
    Errno(#[from] nix::errno::Errno),
    /// A `shmconf run` the benchmark started did not report as it should.
    #[error("{what}: {source}")]
    Report {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{program}: {source}")]
    Start {
        program: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("drawing the chart: {0}")]
    Chart(#[from] plotters::drawing::DrawingAreaErrorKind<std::io::Error>),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Scenarios(Vec<crate::scenario::LoadError>),
    #[error(transparent)]
    Implementation(#[from] crate::impls::ImplError),
}

impl BenchError {
    /// This error, said as one mechanism's (an unknown mechanism names itself).
    pub fn in_mechanism(self, mechanism: &str) -> BenchError {
        match self {
            e @ BenchError::UnknownMechanism(_) => e,
            source => BenchError::InMechanism {
                mechanism: mechanism.into(),
                source: Box::new(source),
            },
        }
    }
}
