//! The harness's top-level modules depend on each other one way only: each
//! sits in a layer, and may use only modules of layers below its own (never
//! one beside it), so there is no import cycle and the shared vocabulary
//! stays at the bottom. The layers are declared here and in
//! docs/architecture.md; a new module must be placed in one.
//!
//! Dependencies are read from the source text (every `crate::MODULE`, in
//! code and in macro arguments alike), with comments, string and character
//! literals and `#[cfg(test)]` modules left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom first. A module may use modules of lower layers only.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary and run infrastructure",
        &["units", "events", "interrupt", "parallel", "rundir"],
    ),
    ("programs of SysV operations", &["sysv_ops"]),
    ("the scenario model", &["scenario"]),
    ("verdicts and the reference model", &["outcome", "model"]),
    ("judge and implementations", &["check", "impls"]),
    ("execution", &["engine"]),
    ("planning, exploration and generation", &["plan", "explore", "fuzz"]),
    ("running and reporting", &["runner", "report", "probe", "bench"]),
    ("composition", &["compose", "matrix"]),
];

/// The source with comments, string and character literals blanked out
/// (newlines kept, so line numbers stay true).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            // Nested block comments, as Rust has them.
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if let Some(hashes) = raw_string_start(rest) {
            let open = rest.iter().position(|&c| c == b'"').unwrap() + 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat(b'#').take(hashes))
                .collect();
            open + find(&rest[open..], &close).map_or(rest.len() - open, |k| k + close.len())
        } else if rest[0] == b'"' || (rest.starts_with(b"b\"") && !ident_before(b, i)) {
            let mut j = if rest[0] == b'"' { 1 } else { 2 };
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == b'\'' {
            // A character literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            if rest.len() > 2 && rest[1] == b'\\' {
                rest[2..].iter().position(|&c| c == b'\'').map_or(1, |k| k + 3)
            } else if rest.len() > 2 && rest[2] == b'\'' {
                3
            } else {
                let ch = src[i + 1..].chars().next().map_or(0, char::len_utf8);
                if rest.get(1 + ch) == Some(&b'\'') && ch > 1 {
                    ch + 2
                } else {
                    0
                }
            }
        } else {
            0
        };
        if end == 0 {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        } else {
            let end = end.min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        }
    }
    out
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// `r"`, `r#"`, `br##"`...: how many hashes, if a raw string starts here.
fn raw_string_start(rest: &[u8]) -> Option<usize> {
    let r = rest.strip_prefix(b"br").or_else(|| rest.strip_prefix(b"r"))?;
    let hashes = r.iter().take_while(|&&c| c == b'#').count();
    (r.get(hashes) == Some(&b'"')).then_some(hashes)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The code with every `#[cfg(test)]` item that has a body (`mod tests {
/// .. }`, a test-only fn) blanked, and the names of test-only file modules
/// (`#[cfg(test)] mod tests;`).
fn without_tests(code: &str) -> (String, Vec<String>) {
    let mut out = code.to_string();
    let mut test_files = vec![];
    let mut from = 0;
    while let Some(k) = out[from..].find("#[cfg(test)]") {
        let at = from + k;
        let after = &out[at..];
        let semi = after.find(';').unwrap_or(after.len());
        let brace = after.find('{').unwrap_or(after.len());
        if semi < brace {
            let decl = after[..semi].split_whitespace().collect::<Vec<_>>();
            if let [.., "mod", name] = decl[..] {
                test_files.push(name.to_string());
            }
            from = at + semi;
            continue;
        }
        let (mut depth, mut j) = (0usize, brace);
        for (n, c) in after[brace..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        j = brace + n + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blanked: String = after[..j].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
        out.replace_range(at..at + j, &blanked);
        from = at + j;
    }
    (out, test_files)
}

/// Every `crate::NAME` in the code: (NAME, line).
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let mut found = vec![];
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(k) = rest.find("crate") {
            let before_ok = !ident_before(rest.as_bytes(), k);
            let tail = rest[k + 5..].trim_start();
            rest = &rest[k + 5..];
            if let (true, Some(tail)) = (before_ok, tail.strip_prefix("::")) {
                let tail = tail.trim_start();
                let name: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.push((name, n + 1));
                } else if tail.starts_with('{') {
                    // use crate::{a, b::c}: each first segment.
                    let group = &tail[1..tail.find('}').unwrap_or(tail.len())];
                    for part in group.split(',') {
                        let name: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            found.push((name, n + 1));
                        }
                    }
                }
            }
        }
    }
    found
}

/// The Rust files of top-level module `name` that are not test-only.
fn module_files(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = vec![];
    let file = src.join(format!("{name}.rs"));
    let dir = src.join(name);
    if file.exists() {
        files.push(file);
    }
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Edges between top-level modules: from → to → where (file:line).
type Edges = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn edges(src: &Path, modules: &BTreeSet<String>) -> Edges {
    let mut edges = Edges::new();
    for m in modules {
        let files = module_files(src, m);
        let mut test_only = BTreeSet::new();
        let texts: Vec<(PathBuf, String)> = files
            .iter()
            .map(|f| {
                let (code, tests) = without_tests(&code_only(&std::fs::read_to_string(f).unwrap()));
                // `mod tests;` in a/b.rs or a/b/mod.rs is a/b/tests.rs.
                let base = if f.file_name().is_some_and(|n| n == "mod.rs") {
                    f.parent().unwrap().to_path_buf()
                } else {
                    f.with_extension("")
                };
                test_only.extend(tests.iter().map(|t| base.join(format!("{t}.rs"))));
                (f.clone(), code)
            })
            .collect();
        for (f, code) in texts.iter().filter(|(f, _)| !test_only.contains(f)) {
            for (to, line) in crate_paths(code) {
                if modules.contains(&to) && &to != m {
                    let at = format!("{}:{line}", f.strip_prefix(src).unwrap().display());
                    edges.entry(m.clone()).or_default().entry(to).or_default().push(at);
                }
            }
        }
    }
    edges
}

/// The top-level modules lib.rs declares.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let lib = code_only(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    lib.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .map(|l| l.trim_end_matches(';').trim().to_string())
        .collect()
}

/// Every edge that does not point to a lower layer, and every module in no
/// layer: the violations, one line each.
fn violations(modules: &BTreeSet<String>, edges: &Edges) -> Vec<String> {
    let layer_of: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (_, ms))| ms.iter().map(move |m| (*m, i)))
        .collect();
    let mut out = vec![];
    for m in modules {
        if !layer_of.contains_key(m.as_str()) {
            out.push(format!(
                "module `{m}` is in no layer: place it in LAYERS (tests/architecture.rs) and docs/architecture.md"
            ));
        }
    }
    for (from, tos) in edges {
        for (to, at) in tos {
            let (Some(&lf), Some(&lt)) = (layer_of.get(from.as_str()), layer_of.get(to.as_str())) else {
                continue;
            };
            if lt >= lf {
                out.push(format!(
                    "`{from}` ({}) uses `{to}` ({}), not below it, at {}",
                    LAYERS[lf].0,
                    LAYERS[lt].0,
                    at.join(", ")
                ));
            }
        }
    }
    out
}

#[test]
fn every_top_level_module_uses_only_layers_below_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_level_modules(&src);
    assert!(modules.len() >= 15, "lib.rs read wrong: {modules:?}");
    let edges = edges(&src, &modules);
    // Not vacuous: the runner does use the engine, found by this reading.
    assert!(edges["runner"].contains_key("engine"), "{edges:?}");
    let bad = violations(&modules, &edges);
    assert!(
        bad.is_empty(),
        "the harness's modules must depend one way:\n{}",
        bad.join("\n")
    );
    for (_, layer) in LAYERS {
        for m in *layer {
            assert!(
                modules.contains(*m),
                "LAYERS names `{m}`, which lib.rs does not declare"
            );
        }
    }
}

#[test]
fn the_reading_sees_code_and_macros_but_not_comments_strings_or_tests() {
    let src = r##"
use crate::events::{Log};
// crate::engine in a comment
/* crate::runner /* nested */ crate::runner */
let s = "crate::matrix \" crate::matrix";
let r = r#"crate::report "# ;
let c = '"'; let l: &'a str = x; crate::units::parse();
format!("{}", crate::check::thing());
use crate::{scenario, outcome::Status};
#[cfg(test)]
mod tests {
    use crate::compose;
    fn f() { if x { crate::diagram::y() } }
}
#[cfg(test)]
mod fixtures;
fn after() { crate::plan::decide() }
"##;
    let (code, test_files) = without_tests(&code_only(src));
    let names: Vec<String> = crate_paths(&code).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["events", "units", "check", "scenario", "outcome", "plan"]);
    assert_eq!(test_files, ["fixtures"]);
    // Line numbers survive the blanking.
    assert_eq!(crate_paths(&code).last().unwrap().1, 17);
}

#[test]
fn a_cycle_or_an_unplaced_module_is_a_violation() {
    let modules: BTreeSet<String> = ["events", "scenario", "newcomer"].map(String::from).into();
    let mut edges = Edges::new();
    edges
        .entry("events".into())
        .or_default()
        .insert("scenario".into(), vec!["events.rs:8".into()]);
    edges
        .entry("scenario".into())
        .or_default()
        .insert("events".into(), vec!["scenario/mod.rs:30".into()]);
    let bad = violations(&modules, &edges);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("`newcomer` is in no layer"), "{bad:?}");
    assert!(
        bad[1].contains("`events` (vocabulary and run infrastructure) uses `scenario`"),
        "{bad:?}"
    );
    assert!(bad[1].contains("events.rs:8"), "{bad:?}");
}
