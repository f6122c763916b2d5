//! The benchmark's outputs: a table people can read at a glance, JSON, and
//! an SVG plot of throughput by chunk size per mechanism.

use plotters::prelude::*;
use serde::Serialize;

use super::{Results, Throughput};

/// What the numbers were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_gib: f64,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
            })
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            memory_gib,
        }
    }
}

fn find<'a>(r: &'a Results, mech: &str, chunk: usize) -> Option<&'a Throughput> {
    r.throughput.iter().find(|t| t.mechanism == mech && t.chunk == chunk)
}

pub fn human_size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// The table: per chunk size, every mechanism's GB/s and its ratios.
pub fn table(r: &Results) -> String {
    let m = &r.machine;
    let mut out = format!(
        "machine: {} CPUs ({}), {:.1} GiB, Linux {}; message queue pieces of {}\n\n",
        m.cpus,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        human_size(r.msg_piece)
    );
    let mut chunks: Vec<usize> = r.throughput.iter().map(|t| t.chunk).collect();
    chunks.dedup();
    for chunk in chunks {
        out.push_str(&format!(
            "chunk {:>8}   {:>10}  {:>8}  {:>9}\n",
            human_size(chunk),
            "GB/s",
            "x pipe",
            "% memcpy"
        ));
        let pipe = find(r, "pipe", chunk).map(|t| t.gbps);
        let memcpy = find(r, "memcpy", chunk).map(|t| t.gbps);
        for t in r.throughput.iter().filter(|t| t.chunk == chunk) {
            let xp = pipe.map_or("-".into(), |p| format!("{:.2}", t.gbps / p));
            let pm = memcpy.map_or("-".into(), |c| format!("{:.0}%", 100.0 * t.gbps / c));
            out.push_str(&format!(
                "  {:<18} {:>10.2}  {:>8}  {:>9}\n",
                t.mechanism, t.gbps, xp, pm
            ));
        }
        out.push('\n');
    }
    out.push_str("1-byte round trip\n");
    for l in &r.latency {
        out.push_str(&format!(
            "  {:<18} {:>8.2} us  ({} rounds)\n",
            l.mechanism, l.rtt_us, l.rounds
        ));
    }
    if !r.file_to_file.is_empty() {
        out.push_str(&format!("\nfile to file ({})\n", human_size(r.file_to_file[0].bytes)));
        let pipe = r.file_to_file.iter().find(|f| f.mechanism == "pipe").map(|f| f.gbps);
        for f in &r.file_to_file {
            let xp = pipe.map_or("-".into(), |p| format!("{:.2}", f.gbps / p));
            out.push_str(&format!(
                "  {:<18} {:>8.2} GB/s  {} copies  x pipe {xp}\n",
                f.mechanism, f.gbps, f.copies
            ));
        }
    }
    if let Some(h) = &r.harness {
        out.push_str(&format!(
            "\nharness: {} scenarios; --jobs 1 {:.0} ms, --jobs 2 {:.0} ms (x{:.2}); {} processes spawned bare in {:.0} ms; overhead {:.1} ms per scenario\n",
            h.scenarios, h.jobs1_ms, h.jobs2_ms, h.speedup, h.processes, h.bare_ms, h.overhead_per_scenario_ms
        ));
    }
    if !r.explore.is_empty() {
        out.push_str(&super::explore_speed::table(&r.explore));
    }
    out
}

/// Throughput (GB/s) by chunk size, one line per mechanism, as SVG.
pub fn svg(r: &Results, path: &std::path::Path) -> Result<(), super::BenchError> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = r.throughput.iter().map(|t| t.gbps).fold(0.0f64, f64::max) * 1.1;
    let xs: Vec<f64> = r.throughput.iter().map(|t| (t.chunk as f64).log2()).collect();
    let (x0, x1) = (
        xs.iter().copied().fold(f64::MAX, f64::min) - 0.5,
        xs.iter().copied().fold(0.0, f64::max) + 0.5,
    );
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput between two processes by chunk size", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, 0.0..max.max(0.1))?;
    chart
        .configure_mesh()
        .x_desc("chunk size")
        .y_desc("GB/s")
        .x_label_formatter(&|x| human_size(2f64.powf(*x).round() as usize))
        .draw()?;
    let mut mechs: Vec<&str> = r.throughput.iter().map(|t| t.mechanism.as_str()).collect();
    mechs.sort();
    mechs.dedup();
    for (i, mech) in mechs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = r
            .throughput
            .iter()
            .filter(|t| t.mechanism == *mech)
            .map(|t| ((t.chunk as f64).log2(), t.gbps))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*mech)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(root.present()?)
}
