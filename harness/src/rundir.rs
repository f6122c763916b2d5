//! One directory per run of the harness, `$TMPDIR/shmconf-runs/<pid>-<n>/`,
//! holding every scenario dir and staged binary of the run, and locked
//! (`flock`) for as long as the run lives. The run removes it at its end; if
//! the run is killed outright (SIGKILL), the lock dies with it and the next
//! run sweeps the dir away, with the containers it had noted there. So temp
//! dirs never accumulate, whatever ended a run.
//!
//! A sweep removes only what a run made: a real dir of this user whose name
//! has the run form (`<pid>-<hex>`, or `shmconf-runs-<pid>-<hex>` beside the
//! folder when the folder is not usable) and whose `lock` file carries
//! [`MARKER`] and is not locked. Anything else there (a user's notes, an
//! earlier run's `--record` output) is left alone.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nix::fcntl::{Flock, FlockArg};

/// The name of the folder (under the temp dir) that holds run dirs.
pub const RUNS: &str = "shmconf-runs";

/// The first line of a run dir's lock file: what makes the dir a run's.
pub const MARKER: &str = "shmconf run dir: removed at the run's end, or swept once its lock is free";

/// How long a half-made run dir (a dot name) may stay before a sweep takes
/// it: its maker died between making it and locking it.
const HALF_MADE_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// The run's dir cannot be made: said once, naming the temp dir, before any scenario.
#[derive(Debug, thiserror::Error)]
#[error("cannot make the run's dir in the temp dir {} (TMPDIR): {source}", .tmp.display())]
pub struct RunDirError {
    pub tmp: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl From<&RunDirError> for std::io::Error {
    fn from(e: &RunDirError) -> std::io::Error {
        std::io::Error::new(e.source.kind(), e.to_string())
    }
}

pub struct RunDir {
    path: PathBuf,
    /// Held (locked) for the run's life; released by the kernel however it ends.
    _lock: Flock<File>,
}

static CURRENT: OnceLock<RunDir> = OnceLock::new();
static NOTES: Mutex<()> = Mutex::new(());

impl RunDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The run's dir, made (and dead runs' dirs swept) on first use.
pub fn current() -> Result<&'static RunDir, RunDirError> {
    if let Some(r) = CURRENT.get() {
        return Ok(r);
    }
    // One maker at a time: scenarios start on several threads at once.
    let _guard = NOTES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = CURRENT.get() {
        return Ok(r);
    }
    let tmp = std::env::temp_dir();
    let made = make(&tmp).map_err(|source| RunDirError { tmp, source })?;
    Ok(CURRENT.get_or_init(|| made))
}

/// Is `name` a run dir's name (`<pid>-<hex>`) after `prefix`?
fn run_name(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let Some((pid, stamp)) = rest.split_once('-') else {
        return false;
    };
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !stamp.is_empty()
        && stamp.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The shared folder of run dirs, if it is a real directory of this user
/// (another user's, or a link in its place, is never used).
fn runs_folder(tmp: &Path) -> Option<PathBuf> {
    let runs = tmp.join(RUNS);
    match std::fs::DirBuilder::new().mode(0o755).create(&runs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let md = std::fs::symlink_metadata(&runs).ok()?;
    (md.is_dir() && md.uid() == nix::unistd::geteuid().as_raw()).then_some(runs)
}

fn make(tmp: &Path) -> std::io::Result<RunDir> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("{}-{nanos:x}", std::process::id());
    // Made under a dot name and renamed once locked, so a concurrent sweep
    // never sees a run dir without its lock held.
    // Dead runs' fallback dirs beside the folder too, whichever this run uses.
    sweep_in(tmp, &format!("{RUNS}-"));
    let (parent, final_name) = match runs_folder(tmp) {
        Some(runs) => {
            sweep(&runs);
            (runs, name)
        }
        // Not usable (e.g. another user's): a dir of our own beside it.
        None => (tmp.to_path_buf(), format!("{RUNS}-{name}")),
    };
    let building = parent.join(format!(".{final_name}"));
    if let Err(e) = std::fs::DirBuilder::new().mode(0o755).create(&building) {
        // Another run's `finish` may just have removed the empty folder.
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e);
        }
        runs_folder(tmp);
        std::fs::DirBuilder::new().mode(0o755).create(&building)?;
    }
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(building.join("lock"))?;
    let mut lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| std::io::Error::from(e))?;
    writeln!(lock, "{MARKER}")?;
    let path = parent.join(final_name);
    std::fs::rename(&building, &path)?;
    Ok(RunDir { path, _lock: lock })
}

/// Remove the dirs of runs that are gone (their lock is free), and the
/// containers they noted: only dirs of the run form with our marker.
pub fn sweep(runs: &Path) -> Vec<PathBuf> {
    sweep_in(runs, "")
}

/// Is this dir a run's (ours, of the run form after `prefix`, marked), and
/// is that run gone? A dot name is a dir still being made: gone only once
/// it is old.
fn dead_run(entry: &std::fs::DirEntry, prefix: &str) -> bool {
    let name = entry.file_name().to_string_lossy().into_owned();
    let (half_made, name) = match name.strip_prefix('.') {
        Some(rest) => (true, rest.to_string()),
        None => (false, name),
    };
    if !run_name(&name, prefix) {
        return false;
    }
    // A real dir of this user (never a link to one, never another user's).
    let Ok(md) = entry.metadata() else { return false };
    if !md.is_dir() || md.uid() != nix::unistd::geteuid().as_raw() {
        return false;
    }
    let dir = entry.path();
    let lock_path = dir.join("lock");
    let lock = std::fs::symlink_metadata(&lock_path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|_| File::open(&lock_path).ok());
    if half_made {
        let old = md
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > HALF_MADE_GRACE);
        return old && lock.map_or(true, |f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
    }
    let Some(mut lock) = lock else { return false };
    let mut head = [0u8; MARKER.len()];
    if std::io::Read::read_exact(&mut lock, &mut head).is_err() || head != MARKER.as_bytes() {
        return false;
    }
    Flock::lock(lock, FlockArg::LockExclusiveNonblock).is_ok()
}

fn sweep_in(folder: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut swept = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return swept;
    };
    for entry in entries.filter_map(Result::ok) {
        if !dead_run(&entry, prefix) {
            continue;
        }
        let dir = entry.path();
        if let Ok(notes) = std::fs::read_to_string(dir.join("containers")) {
            // Newest first: joiners before their donors, members before pods.
            for line in notes.lines().rev() {
                if let Some(args) = removal(line) {
                    let _ = std::process::Command::new(args[0])
                        .args(&args[1..])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            }
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            swept.push(dir);
        }
    }
    swept
}

/// A new scenario dir inside the run's dir (other uids can traverse it).
pub fn scenario_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let run = current().map_err(|e| std::io::Error::from(&e))?;
    dir_in(run, prefix)
}

fn dir_in(run: &RunDir, prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(run.path())?;
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(dir)
}

/// The outermost folder on `path` (itself or an ancestor) that other uids
/// cannot search (no `o+x`), or that cannot be read at all: a program of
/// another uid cannot open anything below it by path.
pub fn blocked_for_others(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .filter(|p| !std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
        .last()
        .map(Path::to_path_buf)
}

/// Temp folders tried, in order, for what other uids must reach when the
/// temp dir is not reachable by them.
pub const REACHABLE_TEMP: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

/// A run dir in the first of [`REACHABLE_TEMP`] that other uids can reach
/// and this user can write, made on first use (locked, marked and swept as
/// the run's own dir is) and removed by [`finish`].
static FOR_OTHER_UIDS: OnceLock<Option<RunDir>> = OnceLock::new();

/// Where a dir for other uids' programs went.
pub enum ReachableDir {
    /// In the run's own dir.
    RunDir(tempfile::TempDir),
    /// The temp dir is not reachable by other uids (`blocked` is the folder
    /// on its path they cannot search): in a run dir of a reachable temp
    /// folder instead, which the user should be told of.
    Elsewhere {
        dir: tempfile::TempDir,
        tmp: PathBuf,
        blocked: PathBuf,
    },
}

/// A new dir of this run that other uids can reach by path (copies of
/// programs they run): the run's own dir when they can reach it.
pub fn dir_for_other_uids(prefix: &str) -> std::io::Result<ReachableDir> {
    let run = current().map_err(|e| std::io::Error::from(&e))?;
    let Some(blocked) = blocked_for_others(run.path()) else {
        return dir_in(run, prefix).map(ReachableDir::RunDir);
    };
    let tmp = std::env::temp_dir();
    let elsewhere = FOR_OTHER_UIDS.get_or_init(|| {
        let _guard = NOTES.lock().unwrap_or_else(|p| p.into_inner());
        REACHABLE_TEMP
            .iter()
            .map(Path::new)
            .filter(|t| blocked_for_others(t).is_none() && *t != tmp.as_path())
            .find_map(|t| make(t).ok().filter(|r| blocked_for_others(r.path()).is_none()))
    });
    match elsewhere {
        Some(run) => Ok(ReachableDir::Elsewhere {
            dir: dir_in(run, prefix)?,
            tmp,
            blocked,
        }),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "other uids cannot reach the temp dir {} (TMPDIR): {} is not searchable by others, \
                 and none of {} is usable",
                tmp.display(),
                blocked.display(),
                REACHABLE_TEMP.join(", ")
            ),
        )),
    }
}

/// What a run can leave in a container engine: a container or a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineObject {
    Container,
    Pod,
}

/// Note a container or pod this run started (`engine` is `docker` or
/// `podman`), so a sweep can remove it if the run is killed before it does.
pub fn note_container(engine: &str, object: EngineObject, name: &str) {
    let Ok(run) = current() else { return };
    let _guard = NOTES.lock().unwrap_or_else(|p| p.into_inner());
    // (current() released NOTES before this lock is taken.)
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.path().join("containers"))
    {
        let kind = match object {
            EngineObject::Container => "container",
            EngineObject::Pod => "pod",
        };
        let _ = writeln!(f, "{engine} {kind} {name}");
    }
}

/// The command that removes what a note line names; only our own names
/// (`shmconf-` prefix) of the two engines we drive, whatever else the file says.
fn removal(line: &str) -> Option<Vec<&str>> {
    let mut words = line.split(' ');
    let (engine, kind, name) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() || !name.starts_with("shmconf-") {
        return None;
    }
    match (engine, kind) {
        ("docker", "container") => Some(vec!["docker", "rm", "-f", name]),
        ("podman", "container") => Some(vec!["podman", "rm", "-f", "-t", "0", name]),
        ("podman", "pod") => Some(vec!["podman", "pod", "rm", "-f", "-t", "0", name]),
        _ => None,
    }
}

/// Labels that tie an engine object to this run, so a later run finds it
/// whatever its TMPDIR: the run dir, the boot and the mount namespace the
/// path means something in.
pub const LABEL_RUNDIR: &str = "io.shmconf.rundir";
pub const LABEL_BOOT: &str = "io.shmconf.boot";
pub const LABEL_MNTNS: &str = "io.shmconf.mntns";

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn mount_namespace() -> String {
    std::fs::read_link("/proc/self/ns/mnt")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// `--label K=V` arguments for a container or pod this run creates.
pub fn owner_labels() -> Vec<String> {
    let dir = current().map(|r| r.path().display().to_string()).unwrap_or_default();
    [
        (LABEL_RUNDIR, dir),
        (LABEL_BOOT, boot_id()),
        (LABEL_MNTNS, mount_namespace()),
    ]
    .into_iter()
    .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
    .collect()
}

/// Is the run that labelled an engine object so gone? Only what can be
/// known: an object of an earlier boot is; one of this boot and mount
/// namespace is when its run dir is gone or unlocked; anything else (another
/// mount namespace's run, an object without our labels) is not ours to judge.
pub fn labelled_run_is_gone(rundir: &str, boot: &str, mntns: &str) -> bool {
    if rundir.is_empty() || boot.is_empty() || mntns.is_empty() {
        return false;
    }
    if boot != boot_id() {
        return true;
    }
    if mntns != mount_namespace() {
        return false;
    }
    let dir = Path::new(rundir);
    if !dir.is_absolute() || current().is_ok_and(|r| r.path() == dir) {
        return false;
    }
    match File::open(dir.join("lock")) {
        Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Remove the run's dir at a normal end (or after a handled signal).
pub fn finish() {
    for run in [CURRENT.get(), FOR_OTHER_UIDS.get().and_then(Option::as_ref)]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_dir_all(run.path());
        // The shared folder too, once no run is left in it (fails otherwise).
        if let Some(folder) = run.path().parent().filter(|p| p.ends_with(RUNS)) {
            let _ = std::fs::remove_dir(folder);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_our_own_noted_names_are_removed() {
        use super::removal;
        assert_eq!(
            removal("docker container shmconf-1-a-main"),
            Some(vec!["docker", "rm", "-f", "shmconf-1-a-main"])
        );
        assert_eq!(
            removal("podman pod shmconf-1-p"),
            Some(vec!["podman", "pod", "rm", "-f", "-t", "0", "shmconf-1-p"])
        );
        for bad in [
            "docker container mydb",
            "sh container shmconf-x",
            "podman container shmconf-x --all",
            "podman volume shmconf-x",
            "",
        ] {
            assert_eq!(removal(bad), None, "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn a_dead_runs_dir_is_swept_a_live_one_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let live = make(tmp.path()).unwrap();
        std::fs::write(live.path().join("x"), b"").unwrap();
        let dead = tmp.path().join(RUNS).join("1-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("lock"), format!("{MARKER}\n")).unwrap();
        std::fs::create_dir(dead.join("shmconf-scenario")).unwrap();
        let swept = sweep(&tmp.path().join(RUNS));
        assert_eq!(swept, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.path().join("x").exists(), "a live run's dir stays");
    }

    #[test]
    fn only_marked_run_dirs_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join(RUNS);
        std::fs::create_dir(&runs).unwrap();
        let keep = |rel: &str, lock: Option<&str>| {
            let d = runs.join(rel);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(text) = lock {
                std::fs::write(d.join("lock"), text).unwrap();
            }
            d
        };
        let notes = keep("notes", None);
        let record = keep("record", Some(MARKER));
        let unmarked = keep("12-ab", Some(""));
        let no_lock = keep("13-ab", None);
        let fresh_half = keep(".14-ab", None);
        let dead = keep("15-ab", Some(MARKER));
        assert_eq!(sweep(&runs), vec![dead]);
        for d in [notes, record, unmarked, no_lock, fresh_half] {
            assert!(d.exists(), "{} was swept", d.display());
        }
        // A fallback dir beside the folder: swept by the next run's make.
        let fallback = tmp.path().join(format!("{RUNS}-16-ab"));
        std::fs::create_dir(&fallback).unwrap();
        std::fs::write(fallback.join("lock"), MARKER).unwrap();
        let users = tmp.path().join(format!("{RUNS}-notes"));
        std::fs::create_dir(&users).unwrap();
        let run = make(tmp.path()).unwrap();
        assert!(!fallback.exists(), "a dead fallback dir is swept");
        assert!(users.exists(), "a user's dir beside it is not");
        drop(run);
    }
}
