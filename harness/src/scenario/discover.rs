//! Finding scenario files: paths, directories and globs into loaded
//! scenarios with stable ids, and selection by tag and pattern.

use std::path::{Path, PathBuf};

use super::{LoadError, Scenario};

/// A loaded scenario and its id (path under the scenarios root, without `.toml`).
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub id: String,
    pub path: PathBuf,
    pub scenario: Scenario,
}

/// Expand paths (files, directories, globs) into scenario files, sorted by id.
/// Every file that fails to load is reported, not just the first.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<ScenarioFile>, Vec<LoadError>> {
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new(); // (root, file)
    let mut errors = Vec::new();
    for p in paths {
        let text = p.to_string_lossy();
        let expanded: Vec<PathBuf> = if text.contains(['*', '?', '[']) {
            glob::glob(&text)
                .map(|g| g.filter_map(Result::ok).collect())
                .unwrap_or_default()
        } else {
            vec![p.clone()]
        };
        if expanded.is_empty() || !expanded[0].exists() {
            errors.push(LoadError {
                file: p.clone(),
                line: 0,
                column: 0,
                message: "no such file or directory".into(),
            });
            continue;
        }
        for e in expanded {
            if e.is_dir() {
                // Ids stay relative to the `scenarios` folder when given a theme folder.
                let root = e
                    .ancestors()
                    .find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
                    .map_or_else(|| e.clone(), Path::to_path_buf);
                collect_dir(&root, &e, &mut files);
            } else {
                files.push((root_of(&e), e));
            }
        }
    }
    let mut out = Vec::new();
    for (root, file) in files {
        match Scenario::load(&file) {
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
    if !errors.is_empty() {
        return Err(errors);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

fn collect_dir(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_dir(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "toml") && p.file_name().is_some_and(|n| n != "expectations.toml")
        {
            out.push((root.to_path_buf(), p));
        }
    }
}

/// For a single file: ids are relative to the nearest `scenarios` folder above it.
fn root_of(file: &Path) -> PathBuf {
    file.ancestors()
        .skip(1)
        .find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| file.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// Keep scenarios with any of `tags` (all when empty) and none matching `skip`.
pub fn select(all: Vec<ScenarioFile>, tags: &[String], skip: &[String]) -> Vec<ScenarioFile> {
    all.into_iter()
        .filter(|s| tags.is_empty() || s.scenario.tags.iter().any(|t| tags.contains(t)))
        .filter(|s| !skip.iter().any(|pat| matches_pattern(pat, &s.id)))
        .collect()
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
}
