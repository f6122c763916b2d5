//! The scenario catalogue this binary carries (`scenarios/**/*.toml` as it
//! was built), so `shmconf run` works outside the repository: when no
//! `./scenarios` folder is there and `$SHMCONF_SCENARIOS` is not set, the
//! catalogue is written once into the run's dir (`<run dir>/scenarios`) and
//! used from there like any folder. It goes with the run's dir.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));

/// Why the catalogue could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// There is no run's dir to write it into.
    #[error(transparent)]
    RunDir(#[from] crate::rundir::RunDirError),
    #[error("cannot write the built-in scenario catalogue into {}: {source}", .dir.display())]
    Write {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where this process wrote the catalogue (once, when first asked).
static UNPACKED: OnceLock<Result<PathBuf, CatalogueError>> = OnceLock::new();

/// The catalogue written out for this process: its folder, or why it could not be.
pub fn unpacked() -> Result<&'static Path, &'static CatalogueError> {
    UNPACKED
        .get_or_init(|| {
            let run = crate::rundir::current()?;
            let dir = run.path().join("scenarios");
            match unpack_into(&dir) {
                Ok(()) => Ok(dir),
                Err(source) => Err(CatalogueError::Write { dir, source }),
            }
        })
        .as_deref()
}

/// Is this file one of the unpacked catalogue's (gone with the run, so a
/// command for later names its id instead)?
pub fn is_unpacked(file: &Path) -> bool {
    matches!(UNPACKED.get(), Some(Ok(dir)) if file.starts_with(dir))
}

fn unpack_into(dir: &Path) -> std::io::Result<()> {
    let mut folders = std::fs::DirBuilder::new();
    folders.recursive(true).mode(0o755);
    for (rel, text) in CATALOGUE {
        let file = dir.join(rel);
        if let Some(parent) = file.parent() {
            folders.create(parent)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&file)?
            .write_all(text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The carried catalogue is the folder's: the same files, the same text.
    #[test]
    fn the_carried_catalogue_is_the_scenarios_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let on_disk = crate::scenario::discover(std::slice::from_ref(&root)).unwrap();
        assert_eq!(CATALOGUE.len(), on_disk.len(), "one entry per scenario file");
        for (rel, text) in CATALOGUE {
            assert_eq!(std::fs::read_to_string(root.join(rel)).unwrap(), *text, "{rel}");
        }
        let dir = tempfile::tempdir().unwrap();
        unpack_into(&dir.path().join("scenarios")).unwrap();
        let unpacked = crate::scenario::discover(&[dir.path().join("scenarios")]).unwrap();
        let ids = |v: &[crate::scenario::discover::ScenarioFile]| v.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&unpacked), ids(&on_disk), "the same ids once written out");
    }
}
