//! A scenario's log as a picture: an SVG sequence diagram with one lane per
//! process (and the harness, and files) and one for the kernel's segment
//! table as reads found it, an event a row in time order, the step and the
//! time beside it. A call that failed is orange, a death by a signal (or a
//! timeout, a start that failed) red, and the verdict's message closes it.
//! Drawn from the same rows as the text timeline ([`Log::rows`]), so the two
//! never disagree. Self-contained (no script, no external font or style),
//! so a browser, an image viewer or a CI artifact page shows it as it is.

use std::fmt::Write;

use super::markup as xml;
use crate::events::{Lane, Log, Mark, Row};

/// Most rows drawn; a longer log ends with a row saying how many were left out.
pub const MOST_ROWS: usize = 2000;
/// Most characters of one line of text in a box (longer lines end in "…").
const MOST_CHARS: usize = 72;

const FONT_PX: f64 = 12.0;
/// Width of one character of the monospace font, in pixels (a bound:
/// common monospace fonts are 0.6 em wide).
const CHAR_PX: f64 = 7.3;
const LINE_PX: f64 = 16.0;
const GUTTER_PX: f64 = 110.0;
const PAD_PX: f64 = 6.0;
const HEADER_PX: f64 = 70.0;

/// What the diagram is of: the header's lines and the closing message.
pub struct Caption<'a> {
    pub title: &'a str,
    /// The verdict (PASS, FAIL, ...).
    pub status: &'a str,
    /// The verdict's message (the failure, with the order that shows it).
    pub message: &'a str,
}

/// Where the lanes are: their names, widths and left edges.
struct Layout {
    lanes: Vec<String>,
    widths: Vec<f64>,
    /// Left edge of each lane; one more: the right edge of the last.
    x: Vec<f64>,
}

impl Layout {
    /// Each lane as wide as its widest (cut) line.
    fn of(rows: &[Row]) -> Layout {
        let lanes = lanes(rows);
        let widths: Vec<f64> = lanes
            .iter()
            .map(|lane| {
                let widest = rows
                    .iter()
                    .filter(|r| lane_of(r) == lane.as_str())
                    .flat_map(|r| r.lines.iter().map(|l| cut(l).chars().count()))
                    .chain([lane.chars().count(), 12])
                    .max()
                    .unwrap_or(12);
                widest as f64 * CHAR_PX + 2.0 * PAD_PX + 10.0
            })
            .collect();
        let mut x = vec![GUTTER_PX];
        for w in &widths {
            x.push(x.last().copied().unwrap_or(GUTTER_PX) + w);
        }
        Layout { lanes, widths, x }
    }

    fn width(&self) -> f64 {
        self.x.last().copied().unwrap_or(GUTTER_PX) + 10.0
    }
}

/// The SVG document of `log`.
pub fn svg(log: &Log, caption: &Caption) -> String {
    let mut rows = log.rows();
    let left_out = rows.len().saturating_sub(MOST_ROWS);
    rows.truncate(MOST_ROWS);
    let layout = Layout::of(&rows);
    let width = layout.width();
    let message = wrap(caption.message, ((width - 20.0) / CHAR_PX).max(40.0) as usize);

    let mut body = String::new();
    let mut y = HEADER_PX + 10.0;
    for row in &rows {
        y = draw_row(&mut body, &layout, row, y);
    }
    if left_out > 0 {
        let _ = writeln!(
            body,
            "<text x=\"8\" y=\"{}\" class=\"t\">… {left_out} more events (the record's JSON has them all)</text>",
            y + LINE_PX
        );
        y += LINE_PX + 4.0;
    }
    let message_top = y + 12.0;
    let height = message_top + message.len() as f64 * LINE_PX + 14.0;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\">"
    );
    let _ = writeln!(
        out,
        "<style>text{{font:{FONT_PX}px ui-monospace,'DejaVu Sans Mono',monospace;fill:#1f2328;white-space:pre}}\
         .t{{fill:#57606a}}.h{{font-weight:bold;font-size:14px}}.bad{{fill:#cf222e}}</style>"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
    let _ = writeln!(
        out,
        "<text x=\"8\" y=\"20\" class=\"h\">{} — {}</text>",
        xml(caption.status),
        xml(&cut_to(caption.title, 160))
    );
    for (i, lane) in layout.lanes.iter().enumerate() {
        let mid = layout.x[i] + layout.widths[i] / 2.0;
        let _ = writeln!(
            out,
            "<line x1=\"{mid}\" y1=\"{}\" x2=\"{mid}\" y2=\"{y}\" stroke=\"#d0d7de\" stroke-dasharray=\"4 4\"/>\
             <text x=\"{mid}\" y=\"{}\" text-anchor=\"middle\" class=\"h\">{}</text>",
            HEADER_PX - 12.0,
            HEADER_PX - 18.0,
            xml(lane)
        );
    }
    out.push_str(&body);
    for (i, line) in message.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"8\" y=\"{}\" class=\"{}\">{}</text>",
            message_top + (i as f64 + 1.0) * LINE_PX,
            if caption.status == "PASS" { "t" } else { "bad" },
            xml(line)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One row at `y`: its time and step in the gutter, its box in its lane.
/// Returns where the next row starts.
fn draw_row(body: &mut String, layout: &Layout, row: &Row, y: f64) -> f64 {
    let lane = layout.lanes.iter().position(|l| l == lane_of(row)).unwrap_or(0);
    let lines: Vec<String> = row.lines.iter().map(|l| cut(l)).collect();
    let h = lines.len().max(1) as f64 * LINE_PX + PAD_PX;
    let (fill, stroke) = match (row.mark, row.lane) {
        (Mark::Wrong, _) => ("#ffcecb", "#cf222e"),
        (Mark::CallFailed, _) => ("#ffdfb6", "#bc4c00"),
        (Mark::Plain, Lane::Kernel) => ("#ddf4ff", "#54aeff"),
        (Mark::Plain, Lane::Actor) => ("#f6f8fa", "#8c959f"),
    };
    let step = row.step.map_or("-".to_string(), |s| format!("#{s}"));
    let _ = write!(
        body,
        "<text x=\"8\" y=\"{ty}\" class=\"t\">{ms:.1} ms</text><text x=\"{sx}\" y=\"{ty}\" class=\"t\">{step}</text>\
         <rect x=\"{rx}\" y=\"{y}\" width=\"{rw}\" height=\"{h}\" rx=\"4\" fill=\"{fill}\" stroke=\"{stroke}\"/>",
        ty = y + LINE_PX - 3.0,
        ms = row.t_us as f64 / 1000.0,
        sx = GUTTER_PX - 30.0,
        rx = layout.x[lane] + 5.0,
        rw = layout.widths[lane] - 10.0,
    );
    for (i, line) in lines.iter().enumerate() {
        let _ = write!(
            body,
            "<text x=\"{tx}\" y=\"{ty}\">{}</text>",
            xml(line),
            tx = layout.x[lane] + 5.0 + PAD_PX,
            ty = y + (i as f64 + 1.0) * LINE_PX - 3.0,
        );
    }
    body.push('\n');
    y + h + 4.0
}

/// The lane a row is drawn in: the kernel's, or its actor's.
fn lane_of(row: &Row) -> &str {
    match row.lane {
        Lane::Kernel => "kernel",
        Lane::Actor => &row.who,
    }
}

/// Lanes in the order actors first act, the kernel's last.
fn lanes(rows: &[Row]) -> Vec<String> {
    let mut lanes: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.lane == Lane::Actor) {
        if !lanes.contains(&r.who) {
            lanes.push(r.who.clone());
        }
    }
    if rows.iter().any(|r| r.lane == Lane::Kernel) {
        lanes.push("kernel".into());
    }
    lanes
}

fn cut(line: &str) -> String {
    cut_to(line, MOST_CHARS)
}

fn cut_to(line: &str, most: usize) -> String {
    if line.chars().count() <= most {
        line.to_owned()
    } else {
        let mut s: String = line.chars().take(most - 1).collect();
        s.push('…');
        s
    }
}

/// `text` in lines of at most `width` characters, broken at spaces where it can.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
            while line.chars().count() > width {
                let head: String = line.chars().take(width).collect();
                line = line.chars().skip(width).collect();
                lines.push(head);
            }
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Ending, Event, EventKind, SegRow, Text};

    fn log() -> Log {
        let event = |t_us, step, kind| Event { t_us, step, kind };
        let text = |s: &str| Text {
            bytes: s.as_bytes().to_vec(),
            total: s.len() as u64,
        };
        Log {
            scenario: "orders/x".into(),
            events: vec![
                event(
                    10,
                    Some(1),
                    EventKind::Stdin {
                        proc: "w".into(),
                        data: text("<b>&\u{1}\n"),
                        closed: true,
                    },
                ),
                event(
                    20,
                    Some(1),
                    EventKind::Snapshot {
                        ns: "main".into(),
                        rows: vec![SegRow {
                            key: "0x41000001".into(),
                            shmid: 0,
                            mode: "0666".into(),
                            size: 1024,
                            nattch: 0,
                            cpid: None,
                            lpid: None,
                            uid: Some(0),
                            raw_key: 0x4100_0001,
                            raw_mode: 0o666,
                        }],
                        foreign_ignored: 0,
                        keys: Default::default(),
                        contents: Default::default(),
                    },
                ),
                event(
                    30,
                    Some(2),
                    EventKind::Exit {
                        proc: "w".into(),
                        ending: Ending::Signaled {
                            signal: "SIGSEGV".into(),
                        },
                        stdout: text(""),
                        stderr: text(""),
                        stray_processes: false,
                    },
                ),
            ],
            ..Log::default()
        }
    }

    /// Lanes per actor and the kernel's last; a death by a signal is red;
    /// text is escaped, controls included, so the document is well formed.
    #[test]
    fn lanes_marks_and_escaping() {
        let svg = svg(
            &log(),
            &Caption {
                title: "orders/x <rust>",
                status: "FAIL",
                message: "w was killed by SIGSEGV",
            },
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        let w = svg.find(">w</text>").expect("a lane for w");
        let k = svg.find(">kernel</text>").expect("a lane for the kernel");
        assert!(w < k, "the kernel's lane last");
        assert!(svg.contains("fill=\"#ffcecb\""), "the death is red");
        assert!(
            svg.contains("fill=\"#ddf4ff\""),
            "the table read is the kernel's colour"
        );
        assert!(svg.contains("&lt;b&gt;&amp;"), "{svg}");
        assert!(!svg.contains('\u{1}'));
        assert!(svg.contains("orders/x &lt;rust&gt;"));
        assert!(svg.contains("class=\"bad\">w was killed by SIGSEGV</text>"));
        // Well formed: every element opened is closed.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn long_messages_wrap_and_long_lines_are_cut() {
        let lines = wrap(&"word ".repeat(50), 40);
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        assert_eq!(lines.join(" ").split_whitespace().count(), 50);
        assert_eq!(wrap(&"x".repeat(100), 40).len(), 3);
        assert_eq!(cut(&"y".repeat(200)).chars().count(), MOST_CHARS);
    }
}
