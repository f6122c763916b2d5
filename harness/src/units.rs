//! Values people type on the command line: durations (`5s`, `250ms`, `2m`;
//! a bare number is milliseconds, as the flags took before).

use std::time::Duration;

/// A duration between 1 ms and `most`: humantime's forms (`5s`, `1m 30s`,
/// `250ms`) or a bare number of milliseconds; anything else, or out of
/// range, is an error that says the bounds.
pub fn parse_limit(text: &str, most: Duration) -> Result<Duration, String> {
    let t = text.trim();
    let value = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{text:?} is too large"))?
    } else {
        humantime::parse_duration(t).map_err(|e| {
            format!("{text:?} is not a duration (e.g. 5s, 250ms, 2m; a bare number is milliseconds): {e}")
        })?
    };
    if value < Duration::from_millis(1) || value > most {
        return Err(format!(
            "{text:?} is out of range: between 1ms and {}",
            humantime::format_duration(most)
        ));
    }
    Ok(value)
}

/// The most a step may be given: ten minutes.
pub const MOST_STEP_LIMIT: Duration = Duration::from_secs(600);
/// The most a scenario or an exploration may be given: one hour.
pub const MOST_SCENARIO_LIMIT: Duration = Duration::from_secs(3600);

/// `--step-timeout`.
pub fn step_limit(text: &str) -> Result<Duration, String> {
    parse_limit(text, MOST_STEP_LIMIT)
}

/// `--scenario-timeout`, `--exploration-timeout`.
pub fn scenario_limit(text: &str) -> Result<Duration, String> {
    parse_limit(text, MOST_SCENARIO_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("5000", 5000)]
    #[case("5s", 5000)]
    #[case("250ms", 250)]
    #[case("2m", 120_000)]
    #[case("1m 30s", 90_000)]
    #[case(" 1 ", 1)]
    #[case("10min", 600_000)]
    fn durations_in_the_forms_people_type(#[case] text: &str, #[case] ms: u64) {
        assert_eq!(step_limit(text), Ok(Duration::from_millis(ms)));
    }

    #[rstest]
    #[case("0", "out of range")]
    #[case("0s", "out of range")]
    #[case("11m", "out of range: between 1ms and 10m")]
    #[case("5 apples", "not a duration")]
    #[case("", "not a duration")]
    #[case("-5", "not a duration")]
    #[case("99999999999999999999999", "too large")]
    fn other_text_is_an_error_that_says_why(#[case] text: &str, #[case] why: &str) {
        let e = step_limit(text).unwrap_err();
        assert!(e.contains(why), "{text:?}: {e}");
    }
}
