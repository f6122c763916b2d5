//! How fast order exploration is, at process and at system-call
//! granularity, measured side by side in one run: each exploration scenario
//! of a folder run by the built binary (`run --format json`), with one job
//! and with two, its orders counted from its verdict; and, beside each
//! row, its floor: the same orders run bare ([`super::explore_floor`] at
//! process level; [`super::syscall_floor`] at system-call level, the
//! choices of each order the explorer executed played again by the same
//! tracer). Floor and shmconf alternate, three passes each, and the
//! medians are compared, so a machine that slows down during the bench
//! slows both.

use super::BenchError;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

/// Passes of each measurement (alternated floor and shmconf); medians reported.
pub const PASSES: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct ExploreSpeed {
    pub scenario: String,
    /// "process" or "syscall".
    pub granularity: String,
    pub jobs: usize,
    pub orders: u64,
    /// The scenario's own duration, as its result reports it (median).
    pub ms: f64,
    pub orders_per_s: f64,
    /// The whole `shmconf run` command, start to exit (median): what the
    /// floor is held against.
    pub wall_ms: f64,
    /// The same orders run bare (median), where there is a floor.
    pub floor_ms: Option<f64>,
    /// Orders the floor ran: the explorer's own plan, so equal to `orders`
    /// for an exploration that ran them all.
    pub floor_orders: Option<usize>,
    /// floor_ms / wall_ms: 1.0 is a harness that costs nothing.
    pub floor_ratio: Option<f64>,
    /// Why there is no floor for this row.
    pub no_floor: Option<String>,
    pub status: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
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

/// One `shmconf run` of a scenario: (orders, scenario ms, wall ms, status).
fn timed_shmconf(
    exe: &Path,
    scenario: &Path,
    id: &str,
    implementation: &str,
    jobs: usize,
) -> Result<(u64, f64, f64, String), BenchError> {
    let t0 = Instant::now();
    let run = Command::new(exe)
        .arg("run")
        .arg(scenario)
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
        .map_err(|source| BenchError::Start {
            program: exe.to_path_buf(),
            source,
        })?;
    let wall = t0.elapsed().as_secs_f64() * 1000.0;
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).map_err(|source| BenchError::Report {
        what: format!("{id}: report"),
        source,
    })?;
    let r = &v["results"][0];
    let message = r["message"].as_str().unwrap_or("");
    Ok((
        orders_in(message).unwrap_or(0),
        r["duration_ms"].as_f64().unwrap_or(0.0),
        wall,
        r["status"].as_str().unwrap_or("").to_string(),
    ))
}

pub fn measure(
    exe: &Path,
    scenarios: &Path,
    implementation: &str,
    schedules_of: super::ScheduleSource,
) -> Result<Vec<ExploreSpeed>, BenchError> {
    let files = crate::scenario::discover(&[scenarios.to_path_buf()]).map_err(BenchError::Scenarios)?;
    let (imp, _) = crate::impls::Implementation::builtin(implementation)?;
    let mut out = Vec::new();
    for sf in files {
        let crate::scenario::Body::Explore(ex) = &sf.scenario.body else {
            continue;
        };
        let granularity = match ex.granularity {
            crate::scenario::Granularity::Process => "process",
            crate::scenario::Granularity::Syscall => "syscall",
        };
        // The system-call floor plays the orders the explorer executes:
        // found by exploring once, untimed.
        let schedules = match ex.granularity {
            crate::scenario::Granularity::Syscall => Some(schedules_of(&sf, ex)),
            crate::scenario::Granularity::Process => None,
        };
        for jobs in [1usize, 2] {
            let (mut scenario_ms, mut walls, mut floors) = (Vec::new(), Vec::new(), Vec::new());
            let (mut orders, mut status, mut no_floor, mut floor_orders) = (0, String::new(), None, None);
            for _ in 0..PASSES {
                if no_floor.is_none() {
                    let floor = match &schedules {
                        None => super::explore_floor::run(&sf, &imp, jobs, crate::engine::DEFAULT_MAX_ORDERS)
                            .map_err(|e| e.to_string()),
                        Some(Ok(s)) => super::syscall_floor::run(&sf, ex, &imp, s).map_err(|e| e.to_string()),
                        Some(Err(why)) => Err(why.clone()),
                    };
                    match floor {
                        Ok(f) => {
                            floors.push(f.ms);
                            floor_orders = Some(f.orders);
                        }
                        Err(why) => no_floor = Some(why),
                    }
                }
                let (o, ms, wall, st) = timed_shmconf(exe, &sf.path, &sf.id, implementation, jobs)?;
                (orders, status) = (o, st);
                scenario_ms.push(ms);
                walls.push(wall);
            }
            let (ms, wall_ms) = (median(scenario_ms), median(walls));
            let floor_ms = (no_floor.is_none() && !floors.is_empty()).then(|| median(floors));
            out.push(ExploreSpeed {
                scenario: sf.id.clone(),
                granularity: granularity.into(),
                jobs,
                orders,
                ms,
                orders_per_s: if ms > 0.0 { orders as f64 * 1000.0 / ms } else { 0.0 },
                wall_ms,
                floor_ms,
                floor_orders: floor_ms.and(floor_orders),
                floor_ratio: floor_ms.filter(|_| wall_ms > 0.0).map(|f| f / wall_ms),
                no_floor,
                status,
            });
        }
    }
    Ok(out)
}

/// The table `bench` prints, with the totals per granularity and job count.
pub fn table(rows: &[ExploreSpeed]) -> String {
    let mut out = format!(
        "\nexploration speed (each scenario with --jobs 1, then 2; medians of {PASSES} passes, alternated with \
         its floor: the same orders run bare; ratio = floor / shmconf's whole run)\n"
    );
    for r in rows {
        let floor = match (r.floor_ms, r.floor_ratio) {
            (Some(f), Some(ratio)) => format!("floor {f:>7.0} ms  ratio {ratio:.2}"),
            _ => "floor       -".to_string(),
        };
        out.push_str(&format!(
            "  {:<40} {:<8} jobs {} {:>6} orders {:>8.0} ms {:>7.0} orders/s  run {:>7.0} ms  {floor}  {}\n",
            r.scenario, r.granularity, r.jobs, r.orders, r.ms, r.orders_per_s, r.wall_ms, r.status
        ));
    }
    for granularity in ["process", "syscall"] {
        for jobs in [1usize, 2] {
            let mine = || {
                rows.iter()
                    .filter(move |r| r.granularity == granularity && r.jobs == jobs)
            };
            let (orders, ms) = mine().fold((0u64, 0f64), |(o, m), r| (o + r.orders, m + r.ms));
            if orders == 0 {
                continue;
            }
            out.push_str(&format!(
                "  all {granularity:<8} jobs {jobs}: {orders} orders in {ms:.0} ms = {:.0} orders/s",
                orders as f64 * 1000.0 / ms
            ));
            let floored: Vec<&ExploreSpeed> = mine().filter(|r| r.floor_ms.is_some()).collect();
            if !floored.is_empty() {
                let floor: f64 = floored.iter().filter_map(|r| r.floor_ms).sum();
                let wall: f64 = floored.iter().map(|r| r.wall_ms).sum();
                out.push_str(&format!(
                    "; floor {floor:.0} ms of shmconf's {wall:.0} ms = ratio {:.2}",
                    floor / wall
                ));
            }
            out.push('\n');
        }
    }
    let mut reasons: Vec<&str> = rows.iter().filter_map(|r| r.no_floor.as_deref()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    for reason in reasons {
        out.push_str(&format!("  no floor: {reason}\n"));
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
