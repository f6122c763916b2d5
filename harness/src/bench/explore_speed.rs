//! How fast order exploration is, at process and at system-call
//! granularity, measured side by side in one run: each exploration scenario
//! of a folder run by the built binary (`run --format json`), with one job
//! and with two, its orders counted from its verdict.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ExploreSpeed {
    pub scenario: String,
    /// "process" or "syscall".
    pub granularity: String,
    pub jobs: usize,
    pub orders: u64,
    pub ms: f64,
    pub orders_per_s: f64,
    pub status: String,
}

/// Orders a verdict's message says were run: "N orders agree", "explored
/// N of M orders", "N orders explored".
pub fn orders_in(message: &str) -> Option<u64> {
    let words: Vec<&str> = message.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or("");
        let after = words.get(i + 2).copied().unwrap_or("");
        if *w == "explored" {
            if let Ok(n) = next.parse() {
                return Some(n);
            }
        }
        if let Ok(n) = w.parse::<u64>() {
            if next == "orders" && (after == "agree" || after == "explored") {
                return Some(n);
            }
        }
    }
    None
}

pub fn measure(exe: &Path, scenarios: &Path, implementation: &str) -> Result<Vec<ExploreSpeed>, String> {
    let files = crate::scenario::discover(&[scenarios.to_path_buf()])
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?;
    let mut out = Vec::new();
    for sf in files {
        let crate::scenario::Body::Explore(ex) = &sf.scenario.body else {
            continue;
        };
        let granularity = match ex.granularity {
            crate::scenario::Granularity::Process => "process",
            crate::scenario::Granularity::Syscall => "syscall",
        };
        for jobs in [1usize, 2] {
            let run = Command::new(exe)
                .arg("run")
                .arg(&sf.path)
                .args([
                    "--impl",
                    implementation,
                    "--jobs",
                    &jobs.to_string(),
                    "--format",
                    "json",
                ])
                .stderr(Stdio::null())
                .output()
                .map_err(|e| format!("{}: {e}", exe.display()))?;
            let v: serde_json::Value =
                serde_json::from_slice(&run.stdout).map_err(|e| format!("{}: report: {e}", sf.id))?;
            let r = &v["results"][0];
            let message = r["message"].as_str().unwrap_or("");
            let ms = r["duration_ms"].as_f64().unwrap_or(0.0);
            let orders = orders_in(message).unwrap_or(0);
            out.push(ExploreSpeed {
                scenario: sf.id.clone(),
                granularity: granularity.into(),
                jobs,
                orders,
                ms,
                orders_per_s: if ms > 0.0 { orders as f64 * 1000.0 / ms } else { 0.0 },
                status: r["status"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    Ok(out)
}

/// The table `bench` prints, with the totals per granularity and job count.
pub fn table(rows: &[ExploreSpeed]) -> String {
    let mut out = String::from("\nexploration speed (orders per second; each scenario with --jobs 1, then 2)\n");
    for r in rows {
        out.push_str(&format!(
            "  {:<40} {:<8} jobs {} {:>6} orders {:>8.0} ms {:>7.0} orders/s  {}\n",
            r.scenario, r.granularity, r.jobs, r.orders, r.ms, r.orders_per_s, r.status
        ));
    }
    for granularity in ["process", "syscall"] {
        for jobs in [1usize, 2] {
            let (orders, ms) = rows
                .iter()
                .filter(|r| r.granularity == granularity && r.jobs == jobs)
                .fold((0u64, 0f64), |(o, m), r| (o + r.orders, m + r.ms));
            if orders > 0 {
                out.push_str(&format!(
                    "  all {granularity:<8} jobs {jobs}: {orders} orders in {ms:.0} ms = {:.0} orders/s\n",
                    orders as f64 * 1000.0 / ms
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::orders_in;

    #[test]
    fn counts_orders_in_every_kind_of_verdict() {
        assert_eq!(orders_in("120 orders agree with the model (70 orders/s)"), Some(120));
        assert_eq!(
            orders_in("explored 98 of 120 orders within the scenario limit"),
            Some(98)
        );
        assert_eq!(
            orders_in("356 orders explored with partial-order reduction, of at most 24310"),
            Some(356)
        );
        assert_eq!(
            orders_in("4 of 56 orders explored with partial-order reduction, of at most 3432 interleavings break"),
            Some(56)
        );
        assert_eq!(orders_in("no orders"), None);
    }
}
