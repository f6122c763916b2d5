//! `--record DIR`: each result's log and verdict as JSON, and the diagram
//! (SVG) of each failure and of every result of a replayed order.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{diagram, record_name, ReportError, Reporter, Run};
use crate::events::Log;
use crate::outcome::{ScenarioResult, Status};

/// `--record DIR`; `replay`: the run replays one order (`--order`), so
/// every result gets its diagram, not only failures.
pub struct Record {
    pub dir: PathBuf,
    pub replay: bool,
}

impl Reporter for Record {
    fn run_finished(&self, run: &Run<'_>) -> Result<(), ReportError> {
        record(&self.dir, run.implementation, run.results, self.replay).map_err(|source| ReportError::File {
            flag: "--record",
            path: self.dir.clone(),
            source,
        })
    }
}

/// One result's file in the record.
#[derive(Serialize)]
struct Recorded<'a> {
    scenario: &'a str,
    status: Status,
    message: &'a str,
    problems: &'a [String],
    log: Option<&'a Log>,
}

/// Does `--record` draw this result's diagram? A failure's, and every
/// one of a replayed order (`replay`): what a reader goes to look at.
pub fn has_diagram(r: &ScenarioResult, replay: bool) -> bool {
    r.log.is_some() && (replay || r.status.is_failure())
}

fn record(dir: &Path, implementation: &str, results: &[ScenarioResult], replay: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for r in results {
        if let (true, Some(log)) = (has_diagram(r, replay), &r.log) {
            let title = format!("{} ({implementation})", r.id);
            let caption = diagram::Caption {
                title: &title,
                status: r.status.label(),
                message: &r.message,
            };
            std::fs::write(dir.join(record_name(&r.id, "svg")), diagram::svg(log, &caption))?;
        }
        let recorded = Recorded {
            scenario: &r.id,
            status: r.status,
            message: &r.message,
            problems: &r.problems,
            log: r.log.as_ref(),
        };
        std::fs::write(
            dir.join(record_name(&r.id, "json")),
            serde_json::to_string_pretty(&recorded)?,
        )?;
    }
    Ok(())
}
