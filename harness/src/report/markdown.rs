//! The Markdown summary (`--summary FILE`, e.g. `$GITHUB_STEP_SUMMARY`).

use std::path::PathBuf;

use super::{markdown_cell, ReportError, Reporter, Run, Summary};
use crate::outcome::{ScenarioResult, Status};

/// `--summary FILE`: appended, as a CI step summary collects several runs.
pub struct MarkdownSummary {
    pub path: PathBuf,
}

impl Reporter for MarkdownSummary {
    fn run_finished(&self, run: &Run<'_>) -> Result<(), ReportError> {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(markdown(run.implementation, run.results).as_bytes()))
            .map_err(|source| ReportError::File {
                flag: "--summary",
                path: self.path.clone(),
                source,
            })
    }
}

/// A Markdown summary for a CI page (`$GITHUB_STEP_SUMMARY`): the counts as
/// a table, then every scenario that did not pass with its message.
pub fn markdown(implementation: &str, results: &[ScenarioResult]) -> String {
    let s = Summary::of(results);
    let mut out = format!("## shmconf: {}\n\n", markdown_cell(implementation, false));
    out.push_str("| total | pass | fail | broken | timeout | xpass | xfail | skip | interrupted |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    out.push_str(&format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        s.total, s.pass, s.fail, s.broken, s.timeout, s.xpass, s.xfail, s.skip, s.interrupted
    ));
    let notable: Vec<&ScenarioResult> = results.iter().filter(|r| r.status != Status::Pass).collect();
    if !notable.is_empty() {
        out.push_str("\n| scenario | status | message |\n| --- | --- | --- |\n");
        for r in notable {
            let mut msg = markdown_cell(&r.message, false);
            if msg.len() > 300 {
                let cut = (0..=300).rev().find(|&i| msg.is_char_boundary(i)).unwrap_or(0);
                msg.truncate(cut);
                msg.push_str("...");
            }
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                markdown_cell(&r.id, true),
                r.status.label(),
                msg
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::test_result as result;

    #[test]
    fn markdown_cells_keep_the_table_whole() {
        assert_eq!(markdown_cell("a|b", false), "a\\|b");
        assert_eq!(markdown_cell("x`y|z", true), "``x`y\\|z``");
        assert_eq!(markdown_cell("`", true), "`` ` ``");
        let md = markdown("n|a\nme", &[result("p|q", Status::Fail, "m|n\n| x |")]);
        for line in md.lines().filter(|l| l.starts_with('|')) {
            let bars = line.len() - line.replace('|', "").len() - line.matches("\\|").count();
            assert!(bars == 4 || bars == 10, "{line:?} in\n{md}");
        }
        assert!(md.starts_with("## shmconf: n\\|a\\nme\n"), "{md}");
    }
}
