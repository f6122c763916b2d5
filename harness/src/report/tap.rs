//! TAP version 13 on stdout (`--format tap`).

use super::{for_tap, ReportError, Reporter, Run};
use crate::outcome::{ScenarioResult, Status};

/// `--format tap`.
pub struct Tap;

impl Reporter for Tap {
    fn run_finished(&self, run: &Run<'_>) -> Result<(), ReportError> {
        super::to_stdout(&tap(run.implementation, run.results))
    }
}

/// TAP version 13 (what `prove` and many CI systems read): one test point per
/// scenario; SKIP and INTERRUPTED are `# SKIP`, XFAIL is `# TODO` (a known
/// deviation), failures carry their message as a YAML block.
pub fn tap(implementation: &str, results: &[ScenarioResult]) -> String {
    let mut out = format!("TAP version 13\n1..{}\n", results.len());
    // In the YAML block: a JSON string is a YAML scalar, on one line.
    let yaml = |s: &str| serde_json::to_string(s).unwrap_or_default();
    for (i, r) in results.iter().enumerate() {
        let n = i + 1;
        let id = for_tap(&r.id);
        let line = match r.status {
            Status::Pass => format!("ok {n} - {id}"),
            Status::Skip | Status::Interrupted => {
                format!("ok {n} - {id} # SKIP {}", for_tap(&r.message))
            }
            Status::Xfail => format!("not ok {n} - {id} # TODO {}", for_tap(&r.message)),
            _ => format!("not ok {n} - {id}"),
        };
        out.push_str(&line);
        out.push('\n');
        if r.status.is_failure() {
            out.push_str("  ---\n");
            out.push_str(&format!("  status: {}\n", r.status.label()));
            out.push_str(&format!("  implementation: {}\n", yaml(implementation)));
            out.push_str(&format!("  message: {}\n", yaml(&r.message)));
            out.push_str("  ...\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::test_result as result;

    #[test]
    fn tap_lines_carry_no_directive_or_line_of_a_name() {
        let results = [
            result("fails # TODO later", Status::Fail, "x"),
            result("a\nok 9 - injected", Status::Pass, ""),
        ];
        let tap = tap("impl\nnot ok 7 - fake\n1..9", &results);
        let lines: Vec<&str> = tap.lines().collect();
        assert_eq!(lines.iter().filter(|l| l.starts_with("1..")).count(), 1, "{tap}");
        assert!(lines.contains(&"not ok 1 - fails \\# TODO later"), "{tap}");
        assert!(lines.contains(&"ok 2 - a\\nok 9 - injected"), "{tap}");
        assert!(
            !lines.iter().any(|l| l.starts_with("not ok 7") || l.starts_with("ok 9")),
            "{tap}"
        );
        assert!(
            tap.contains("  implementation: \"impl\\nnot ok 7 - fake\\n1..9\"\n"),
            "{tap}"
        );
    }
}
