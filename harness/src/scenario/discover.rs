//! Finding scenario files: paths, directories and globs into loaded
//! scenarios with stable ids, and selection by tag and pattern.
//!
//! Whatever the folder holds, discovery ends and stays bounded: inside a
//! given folder, links to folders are not followed and a folder is entered
//! once (two symbolic-link loops once grew a run to 4.6 GB); a link to a
//! file is read as the file; a `*.toml` that is not a regular file (a FIFO,
//! a link to /dev/zero) is an error naming it, a file is read up to
//! [`MAX_SCENARIO_FILE_BYTES`] only, and a termination signal stops the walk.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{LoadError, Scenario};

/// The largest scenario file read (its stdin alone may hold 16 MiB, written
/// out as text).
pub const MAX_SCENARIO_FILE_BYTES: u64 = 64 << 20;
/// The most entries a discovery looks at (files and folders, all paths together).
pub const MAX_ENTRIES: usize = 100_000;
/// The deepest folder nesting followed below a given folder.
pub const MAX_DEPTH: usize = 64;

/// A loaded scenario and its id (path under the scenarios root, without `.toml`).
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub id: String,
    pub path: PathBuf,
    pub scenario: Scenario,
}

fn error(file: &Path, message: impl Into<String>) -> LoadError {
    LoadError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        message: message.into(),
    }
}

/// A walk's state: what it has seen, so it ends whatever the links.
struct Walk {
    /// Folders entered, by (device, inode): a loop of links is entered once.
    entered: HashSet<(u64, u64)>,
    entries: usize,
    files: Vec<(PathBuf, PathBuf)>, // (root, file)
    errors: Vec<LoadError>,
}

impl Walk {
    /// Count one entry; false once the walk must stop (too many, or a signal).
    fn step(&mut self, at: &Path) -> bool {
        self.entries += 1;
        if self.entries == MAX_ENTRIES + 1 {
            self.errors.push(error(
                at,
                format!("more than {MAX_ENTRIES} files and folders under the given paths; give a narrower path"),
            ));
        }
        self.entries <= MAX_ENTRIES && !crate::interrupt::interrupted()
    }

    fn dir(&mut self, root: &Path, dir: &Path, depth: usize) {
        let Ok(md) = std::fs::metadata(dir) else { return };
        if !self.entered.insert((md.dev(), md.ino())) {
            // Already walked: a link back to an ancestor (a loop) or a second way in.
            return;
        }
        if depth > MAX_DEPTH {
            self.errors
                .push(error(dir, format!("folders nested deeper than {MAX_DEPTH} levels")));
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(error(dir, format!("cannot read the folder: {e}")));
                return;
            }
        };
        let mut paths = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            if !self.step(dir) {
                return;
            }
            paths.push(entry.path());
        }
        paths.sort();
        for p in paths {
            if crate::interrupt::interrupted() {
                return;
            }
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                // A real folder; a link to one is not followed (as `find`
                // does not): links are how a folder loops into itself.
                self.dir(root, &p, depth + 1);
            } else if md.is_symlink() && p.is_dir() {
                continue;
            } else if p.extension().is_some_and(|e| e == "toml")
                && p.file_name().is_some_and(|n| n != "expectations.toml")
            {
                self.files.push((root.to_path_buf(), p));
            }
        }
    }
}

impl Walk {
    /// The paths a glob pattern matches, found by this walk (bounded, links
    /// to folders not followed, stopped by a signal), not by the glob
    /// crate's own, which follows links into loops and cannot be stopped.
    fn matches(&mut self, pattern: &str) -> Vec<PathBuf> {
        let Ok(compiled) = glob::Pattern::new(pattern) else {
            return Vec::new();
        };
        // The literal folder the pattern starts from.
        let mut base = PathBuf::new();
        for part in Path::new(pattern).components() {
            if part.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
                break;
            }
            base.push(part);
        }
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        let mut found = Vec::new();
        let mut pending = vec![(base.clone(), 0usize)];
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        while let Some((dir, depth)) = pending.pop() {
            let listed = if dir.as_os_str().is_empty() {
                std::fs::read_dir(".")
            } else {
                std::fs::read_dir(&dir)
            };
            let Ok(entries) = listed else { continue };
            if depth > MAX_DEPTH
                || std::fs::metadata(if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    &dir
                })
                .is_ok_and(|m| !seen.insert((m.dev(), m.ino())))
            {
                continue;
            }
            for entry in entries.filter_map(Result::ok) {
                if !self.step(&base) {
                    return found;
                }
                let path = dir.join(entry.file_name());
                let kind = entry.file_type().ok();
                let link_to_folder = kind.is_some_and(|t| t.is_symlink()) && path.is_dir();
                if compiled.matches_path_with(&path, options) && !link_to_folder {
                    found.push(path.clone());
                }
                if kind.is_some_and(|t| t.is_dir()) {
                    pending.push((path, depth + 1));
                }
            }
        }
        found.sort();
        found
    }
}

/// Expand paths (files, directories, globs) into scenario files, sorted by id.
/// Every file that fails to load is reported, not just the first; two files
/// with one id are an error naming both.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<ScenarioFile>, Vec<LoadError>> {
    let mut walk = Walk {
        entered: HashSet::new(),
        entries: 0,
        files: Vec::new(),
        errors: Vec::new(),
    };
    for p in paths {
        let text = p.to_string_lossy();
        // A path that exists is itself, whatever its characters; else a pattern.
        let pattern = text.contains(['*', '?', '[']) && std::fs::symlink_metadata(p).is_err();
        let expanded: Vec<PathBuf> = if pattern { walk.matches(&text) } else { vec![p.clone()] };
        if expanded.is_empty() || std::fs::symlink_metadata(&expanded[0]).is_err() {
            let why = if pattern {
                "no file or folder matches this pattern"
            } else {
                "no such file or directory"
            };
            walk.errors.push(error(p, why));
            continue;
        }
        for e in expanded {
            if e.is_dir() {
                // Ids stay relative to the `scenarios` folder when given a theme folder.
                let root = e
                    .ancestors()
                    .find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
                    .map_or_else(|| e.clone(), Path::to_path_buf);
                walk.dir(&root, &e, 0);
            } else {
                walk.files.push((root_of(&e), e));
            }
        }
    }
    let Walk { files, mut errors, .. } = walk;
    let mut out: Vec<ScenarioFile> = Vec::new();
    // The same file reached twice (a folder and a file in it) is loaded once.
    let mut loaded: HashSet<(u64, u64)> = HashSet::new();
    for (root, file) in files {
        if crate::interrupt::interrupted() {
            break;
        }
        let identity = std::fs::metadata(&file).map(|m| (m.dev(), m.ino())).ok();
        if identity.is_some_and(|id| !loaded.insert(id)) {
            continue;
        }
        match read_bounded(&file).and_then(|text| Scenario::parse(&file, &text)) {
            Ok(scenario) => {
                let rel = file.strip_prefix(&root).unwrap_or(&file).with_extension("");
                let id = rel.to_string_lossy().trim_start_matches('/').to_string();
                out.push(ScenarioFile {
                    id,
                    path: file,
                    scenario,
                });
            }
            Err(e) => errors.push(e),
        }
    }
    let mut by_id: BTreeMap<&str, &Path> = BTreeMap::new();
    for s in &out {
        if let Some(first) = by_id.insert(&s.id, &s.path) {
            errors.push(error(
                &s.path,
                format!(
                    "scenario id {:?} is also the id of {}: ids (paths under the scenarios folder) must be unique in a run",
                    s.id,
                    first.display()
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// A scenario file's text: a regular file (opened without blocking, so a
/// FIFO is refused rather than waited on), at most
/// [`MAX_SCENARIO_FILE_BYTES`] of it.
pub fn read_bounded(file: &Path) -> Result<String, LoadError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)
        .map_err(|e| LoadError::unreadable(file, e))?;
    let md = f.metadata().map_err(|e| LoadError::unreadable(file, e))?;
    let kind = md.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a folder"
        } else {
            "not a file"
        };
        return Err(error(file, format!("not a regular file ({what}): refused")));
    }
    let mut bytes = Vec::new();
    f.take(MAX_SCENARIO_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LoadError::unreadable(file, e))?;
    if bytes.len() as u64 > MAX_SCENARIO_FILE_BYTES {
        return Err(error(
            file,
            format!("larger than {} MiB: refused", MAX_SCENARIO_FILE_BYTES >> 20),
        ));
    }
    String::from_utf8(bytes).map_err(|e| error(file, format!("not UTF-8 text: {e}")))
}

/// For a single file: ids are relative to the nearest `scenarios` folder above it.
fn root_of(file: &Path) -> PathBuf {
    file.ancestors()
        .skip(1)
        .find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| file.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// Why a selection is empty or names what is not there: exit 2 with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("no scenario files found in {0}")]
    NoFiles(String),
    #[error("--tag {tag:?}: no scenario has this tag (tags here: {known})")]
    UnknownTag { tag: String, known: String },
    #[error("{}: nothing is left to run", describe_skip(.skip, *.before))]
    SkippedAll { skip: Vec<String>, before: usize },
}

fn describe_skip(skip: &[String], before: usize) -> String {
    let pats: Vec<String> = skip.iter().map(|p| format!("--skip {p:?}")).collect();
    let verb = if pats.len() == 1 { "leaves" } else { "leave" };
    format!("{} {verb} out all {before} selected scenario(s)", pats.join(" "))
}

/// Keep scenarios with any of `tags` (all when empty) and none matching
/// `skip`. A tag no scenario has (a typo) and a selection that leaves
/// nothing are errors, not an empty run.
pub fn select(
    all: Vec<ScenarioFile>,
    tags: &[String],
    skip: &[String],
    where_: &str,
) -> Result<Vec<ScenarioFile>, SelectError> {
    if all.is_empty() {
        return Err(SelectError::NoFiles(where_.to_string()));
    }
    let known: std::collections::BTreeSet<&str> = all
        .iter()
        .flat_map(|s| s.scenario.tags.iter().map(String::as_str))
        .collect();
    if let Some(tag) = tags.iter().find(|t| !known.contains(t.as_str())) {
        let mut list: Vec<&str> = known.iter().copied().take(30).collect();
        if known.len() > list.len() {
            list.push("...");
        }
        return Err(SelectError::UnknownTag {
            tag: tag.clone(),
            known: if list.is_empty() {
                "none".into()
            } else {
                list.join(", ")
            },
        });
    }
    let tagged: Vec<ScenarioFile> = all
        .into_iter()
        .filter(|s| tags.is_empty() || s.scenario.tags.iter().any(|t| tags.contains(t)))
        .collect();
    let before = tagged.len();
    let kept: Vec<ScenarioFile> = tagged
        .into_iter()
        .filter(|s| !skip.iter().any(|pat| matches_pattern(pat, &s.id)))
        .collect();
    if kept.is_empty() {
        return Err(SelectError::SkippedAll {
            skip: skip.to_vec(),
            before,
        });
    }
    Ok(kept)
}

fn matches_pattern(pat: &str, id: &str) -> bool {
    match glob::Pattern::new(pat) {
        Ok(p) if pat.contains(['*', '?', '[']) => p.matches(id),
        _ => id.contains(pat),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_patterns() {
        assert!(matches_pattern("keys/*", "keys/missing"));
        assert!(!matches_pattern("keys/*", "orders/keys"));
        assert!(matches_pattern("missing", "keys/missing-file"));
    }

    fn write(dir: &Path, rel: &str, tags: &str) -> PathBuf {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            format!("description = \"d\"\ntags = [{tags}]\n[[step]]\nexec = [\"true\"]\n"),
        )
        .unwrap();
        p
    }

    #[test]
    fn link_loops_are_entered_once_and_the_walk_ends() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a/one.toml", "");
        std::os::unix::fs::symlink("..", dir.path().join("a/up")).unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("a/here")).unwrap();
        std::os::unix::fs::symlink("../a", dir.path().join("a/again")).unwrap();
        let found = discover(&[dir.path().to_path_buf()]).unwrap();
        let ids: Vec<&str> = found.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a/one"]);
    }

    #[test]
    fn globs_match_as_the_shell_does_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t/a.toml", "");
        write(dir.path(), "t/deep/b.toml", "");
        write(dir.path(), "u/c.toml", "");
        std::os::unix::fs::symlink("..", dir.path().join("t/loop")).unwrap();
        let ids = |pattern: &str| -> Vec<String> {
            let found = discover(&[dir.path().join(pattern)]).unwrap();
            found.into_iter().map(|s| s.id).collect()
        };
        assert_eq!(ids("t/*.toml"), ["a"]);
        assert_eq!(ids("*/*.toml"), ["a", "c"]);
        assert_eq!(ids("**/*.toml"), ["a", "b", "c"]);
        // A matched folder is walked (its ids relative to it, as a folder
        // given by name); a matched link to a folder is not.
        assert_eq!(ids("t/*"), ["a", "b"]);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        // Sparse: no disk used, and only the limit plus one byte is read.
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_SCENARIO_FILE_BYTES + 4096)
            .unwrap();
        let e = read_bounded(&big).unwrap_err().to_string();
        assert!(e.ends_with("larger than 64 MiB: refused"), "{e}");
    }

    #[test]
    fn two_files_with_one_id_are_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "x/same.toml", "");
        let b = write(dir.path(), "y/same.toml", "");
        let errors = discover(&[a.clone(), b.clone()]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(
            text.contains(&a.display().to_string()) && text.contains(&b.display().to_string()),
            "{text}"
        );
        // One file given twice is the same scenario, not a duplicate.
        assert_eq!(discover(&[a.clone(), a]).unwrap().len(), 1);
    }

    #[test]
    fn a_fifo_and_a_device_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_bounded(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        let e = read_bounded(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
    }

    #[test]
    fn selection_errors_say_why() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.toml", "\"seed-contract\"");
        write(dir.path(), "b.toml", "\"keys\"");
        let all = || discover(&[dir.path().to_path_buf()]).unwrap();
        let e = select(all(), &["seed-contracts".into()], &[], "x").unwrap_err();
        assert!(
            e.to_string()
                .contains("\"seed-contracts\": no scenario has this tag (tags here: keys, seed-contract)"),
            "{e}"
        );
        let e = select(all(), &[], &["*".into()], "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--skip \"*\" leaves out all 2 selected scenario(s): nothing is left to run"
        );
        assert_eq!(select(all(), &["keys".into()], &[], "x").unwrap().len(), 1);
        assert_eq!(
            select(vec![], &[], &[], "scenarios").unwrap_err(),
            SelectError::NoFiles("scenarios".into())
        );
    }
}
