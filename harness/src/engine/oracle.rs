//! The kernel's view of the segments, behind one seam: the step interpreter
//! and the exploration both ask an [`Oracle`], never `/proc` directly.
//!
//! * [`Procfs`] reads `/proc/sysvipc/shm`.
//! * [`Syscalls`] needs no procfs: `shmctl(SHM_INFO)` and
//!   `shmctl(index, SHM_STAT_ANY)` enumerate the namespace's segments (as
//!   `ipcs` does), and where a kernel refuses enumeration (gVisor answers
//!   SHM_STAT with EINVAL), the keys and ids the scenario named are looked up
//!   with `shmget(key, 0, 0)` + `IPC_STAT`, and ids are tried upward from 0
//!   until SHM_INFO's count of segments is found.
//! * [`CrossCheck`] reads both and compares them on every read; a disagreement is an
//!   error naming the fields, which makes the oracle a conformance check of
//!   procfs against shmctl.

use std::collections::BTreeSet;

use shmconf::sysv::{self, Create, Key};
use shmconf::{SegTable, Segment};

use crate::events::SegRow;

/// What the scenario has named so far: keys it resolved, ids it saved. An
/// oracle that cannot enumerate the table still finds these.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub keys: BTreeSet<i32>,
    pub ids: BTreeSet<i32>,
}

/// Why an oracle gives no (whole) table.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// The read failed.
    #[error(transparent)]
    Failed(#[from] ReadError),
    /// The kernel counts segments this oracle cannot read here (SHM_STAT
    /// refused, IPC_STAT denied by the mode without CAP_IPC_OWNER): `rows`
    /// is what it could read. Nothing may be judged on such a table.
    /// (`why` comes as text from `kernel-view` inside a sandbox.)
    #[error("{why}")]
    Unreadable { rows: Vec<SegRow>, why: String },
}

/// Why the kernel's view (a table, a segment's content, a key) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the segment table: {0}")]
    Procfs(#[source] std::io::Error),
    /// shmctl (SHM_INFO, SHM_STAT_ANY) or the unseen attachment failed.
    #[error("{0}")]
    Syscall(#[source] sysv::Error),
    /// [`CrossCheck`]: procfs and shmctl say different things (each difference in words).
    #[error("the kernel's two views disagree: {}", .0.join("; "))]
    Disagree(Vec<String>),
    /// [`InContainer`]: `kernel-view` in the sandbox gave no answer.
    #[error(transparent)]
    InContainer(#[from] KernelViewError),
}

/// Why `shmconf kernel-view` run in a container ([`InContainer`]) gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum KernelViewError {
    /// The engine's client could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel-view in the container took longer than {} s", IN_CONTAINER_LIMIT.as_secs())]
    TimedOut,
    /// Waiting for the engine's client failed.
    #[error("{0}")]
    Wait(#[source] std::io::Error),
    /// It ended in failure: exit code 1 is kernel-view's own (a missing key
    /// file, ...), anything else the engine's. `said`: the last line of its
    /// stderr.
    #[error("kernel-view in the container failed ({status}): {said}")]
    Exited {
        status: std::process::ExitStatus,
        said: String,
    },
    /// The engine failed to run it three times running (the last failure
    /// is the source): a harness problem, not a verdict (BROKEN).
    #[error("{ENGINE_FAILED}{0}")]
    EngineFailed(#[source] Box<KernelViewError>),
    #[error("kernel-view printed no table: {0}")]
    NoTable(#[source] serde_json::Error),
    #[error("kernel-view ftok printed no key")]
    NoKey,
}

impl KernelViewError {
    /// Did the container engine fail to run kernel-view (worth another
    /// try), rather than kernel-view fail at what it was asked?
    fn by_engine(&self) -> bool {
        match self {
            KernelViewError::Spawn { .. } | KernelViewError::TimedOut | KernelViewError::Wait(_) => true,
            KernelViewError::Exited { status, .. } => status.code() != Some(1),
            KernelViewError::EngineFailed(_) | KernelViewError::NoTable(_) | KernelViewError::NoKey => false,
        }
    }
}

/// Why `shmconf kernel-view` could not answer (on its stderr, exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The answer could not be written as JSON.
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    /// `creators --end-others` could not end the other processes.
    #[error(transparent)]
    EndOthers(#[from] crate::engine::backend::shared::EndOthersError),
    /// `ftok FILE` takes a plain name in the working dir, nothing that leads elsewhere.
    #[error("ftok: {0:?} is not a plain file name")]
    NotAPlainName(String),
    #[error("{0}")]
    Ftok(#[source] sysv::FtokError),
    #[error(transparent)]
    Mappings(#[from] MappingsError),
}

pub trait Oracle: Send + Sync {
    fn name(&self) -> &'static str;

    /// Every segment of the calling thread's IPC namespace (or, where the
    /// kernel refuses enumeration, every one of those `known` names).
    fn table(&self, known: &Known) -> Result<Vec<SegRow>, OracleError>;

    /// Up to `max` bytes of a segment, read through an attachment that
    /// nothing else can see (not inherited by a concurrent fork, so it never
    /// shows in another process's view of nattch).
    fn content(&self, shmid: i32, max: usize) -> Result<Vec<u8>, ReadError> {
        Segment::from_id(shmid)
            .attach_unseen()
            .map(|a| a.to_vec_capped(max))
            .map_err(ReadError::Syscall)
    }

    /// How many mappings of segment `shmid` the processes of the calling
    /// thread's IPC namespace hold, as their `/proc/PID/maps` show them; an
    /// error where that cannot be told for every process seen.
    fn mappings(&self, shmid: i32) -> Result<u64, MappingsError> {
        mappings_in_this_namespace(shmid)
    }
}

/// Why the mappings of a segment could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum MappingsError {
    #[error("cannot read {path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// [`InContainer`]: `kernel-view mappings` in the sandbox gave no count.
    #[error(transparent)]
    InContainer(#[from] KernelViewError),
    #[error("kernel-view mappings printed no count")]
    NoCount,
    /// No process was found in the namespace, not even one attached: the
    /// namespace links cannot be compared here (gVisor gives each link a
    /// number of its own).
    #[error("no process of this IPC namespace is seen in /proc")]
    NoProcessSeen,
}

/// The mappings of segment `shmid` in `maps` (a `/proc/PID/maps`): Linux
/// names a segment's file `/SYSV` + its key and gives its id as the inode
/// (gVisor the same, without the slash), whatever became of the key since.
pub fn mappings_in_maps(maps: &str, shmid: i32) -> u64 {
    let Ok(id) = u64::try_from(shmid) else { return 0 };
    maps.lines()
        .filter(|line| {
            let mut fields = line.split_ascii_whitespace();
            let inode = fields.nth(4).and_then(|f| f.parse::<u64>().ok());
            let name = fields.next().unwrap_or("");
            inode == Some(id) && name.trim_start_matches('/').starts_with("SYSV")
        })
        .count() as u64
}

/// [`Oracle::mappings`] read from `/proc`: every process whose IPC
/// namespace is the calling thread's. A process that ends meanwhile, or
/// whose namespace this process may not read, is passed over; one of this
/// namespace whose maps cannot be read makes the count unknown (an error),
/// and so does finding none at all (where namespace links cannot be
/// compared), never a count of 0 that no attach could ever equal.
pub fn mappings_in_this_namespace(shmid: i32) -> Result<u64, MappingsError> {
    let proc_error = |path: &str| {
        let path = path.to_string();
        move |source| MappingsError::Proc { path, source }
    };
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH);
    let here = std::fs::read_link("/proc/thread-self/ns/ipc").map_err(proc_error("/proc/thread-self/ns/ipc"))?;
    let (mut count, mut seen) = (0, 0);
    for entry in std::fs::read_dir("/proc").map_err(proc_error("/proc"))? {
        let entry = entry.map_err(proc_error("/proc"))?;
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = entry.path();
        let ns_path = dir.join("ns/ipc");
        match std::fs::read_link(&ns_path) {
            Ok(ns) if ns == here => {}
            Ok(_) => continue,
            // Out of this observer's reach (another user's, init outside a
            // container): the caller's bounded patience covers it.
            Err(e) if gone(&e) || e.kind() == std::io::ErrorKind::PermissionDenied => continue,
            Err(e) => return Err(proc_error(&ns_path.display().to_string())(e)),
        }
        let maps_path = dir.join("maps");
        match std::fs::read_to_string(&maps_path) {
            Ok(maps) => {
                seen += 1;
                count += mappings_in_maps(&maps, shmid);
            }
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(proc_error(&maps_path.display().to_string())(e)),
        }
    }
    if seen == 0 {
        return Err(MappingsError::NoProcessSeen);
    }
    Ok(count)
}

/// `/proc/sysvipc/shm`.
pub struct Procfs;

impl Oracle for Procfs {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn table(&self, _known: &Known) -> Result<Vec<SegRow>, OracleError> {
        SegTable::read()
            .map(|t| t.rows.iter().map(SegRow::from_row).collect())
            .map_err(|e| ReadError::Procfs(e).into())
    }
}

/// shmctl only: SHM_INFO + SHM_STAT_ANY, or lookups of what is known.
pub struct Syscalls;

fn row(id: i32, st: &sysv::SegmentStat) -> SegRow {
    SegRow {
        key: st.key.to_string(),
        shmid: id,
        mode: format!("{:04o}", st.mode & 0o7777),
        size: st.size as u64,
        nattch: st.nattch,
        cpid: Some(st.cpid),
        lpid: Some(st.lpid),
        uid: Some(st.uid),
        raw_key: st.key.raw(),
        raw_mode: st.mode & 0o7777,
    }
}

impl Syscalls {
    /// Every slot 0..=max_index, and the count SHM_INFO gives; the rows fall
    /// short of the count where the kernel refuses SHM_STAT for used slots.
    fn enumerate() -> Result<(Vec<SegRow>, usize), ReadError> {
        let info = sysv::shm_info().map_err(ReadError::Syscall)?;
        let mut rows = Vec::new();
        for index in 0..=info.max_index {
            match Segment::stat_index(index) {
                Ok((seg, st)) => rows.push(row(seg.id(), &st)),
                Err(e) if matches!(e.errno, sysv::Errno::EINVAL | sysv::Errno::EIDRM) => {}
                Err(e) => return Err(ReadError::Syscall(e)),
            }
        }
        Ok((rows, info.used_ids.max(0) as usize))
    }

    /// Without SHM_STAT: the ids and keys the scenario named, then IPC_STAT
    /// of ids upward from 0 until SHM_INFO's count is reached (kernels that
    /// refuse SHM_STAT, such as gVisor, hand out small sequential ids).
    fn lookup(known: &Known, used: usize) -> Lookup {
        /// Ids tried at most, whatever SHM_INFO says.
        const SCAN: i32 = 1 << 16;
        let mut denied = BTreeSet::new();
        let mut ids: BTreeSet<i32> = known.ids.clone();
        for &k in known.keys.iter().filter(|&&k| k != 0) {
            match Segment::get(Key::from_raw(k), 0, Create::No, 0) {
                Ok(seg) => {
                    ids.insert(seg.id());
                }
                Err(e) if e.errno == sysv::Errno::EACCES => {
                    denied.insert(format!("key {}", Key::from_raw(k)));
                }
                Err(_) => {}
            }
        }
        let stat = |id: i32, denied: &mut BTreeSet<String>| match Segment::from_id(id).stat() {
            Ok(st) => Some(row(id, &st)),
            Err(e) if e.errno == sysv::Errno::EACCES => {
                denied.insert(format!("id {id}"));
                None
            }
            Err(_) => None,
        };
        let mut rows: Vec<SegRow> = ids.iter().filter_map(|&id| stat(id, &mut denied)).collect();
        // Upward from 0, until the count is reached, or 1024 ids past the
        // highest id seen (SHM_INFO may count segments IPC_STAT cannot see:
        // gVisor still counts a removed one for a while).
        let mut id = 0;
        let mut last_hit = ids.iter().next_back().copied().unwrap_or(0);
        while rows.len() + denied.len() < used && id < SCAN && id <= last_hit + 1024 {
            if !ids.contains(&id) {
                if let Some(r) = stat(id, &mut denied) {
                    rows.push(r);
                    last_hit = last_hit.max(id);
                }
            }
            id += 1;
        }
        rows.sort_by_key(|r| r.shmid);
        Lookup { rows, denied }
    }
}

/// What [`Syscalls::lookup`] found: rows it could read, and keys or ids the
/// kernel has but would not show (EACCES).
struct Lookup {
    rows: Vec<SegRow>,
    denied: BTreeSet<String>,
}

impl Oracle for Syscalls {
    fn name(&self) -> &'static str {
        "syscalls"
    }

    fn table(&self, known: &Known) -> Result<Vec<SegRow>, OracleError> {
        let (rows, used) = Self::enumerate()?;
        if rows.len() >= used {
            return Ok(rows);
        }
        // A count above the rows proves nothing by itself (gVisor counts
        // removed segments for a while); a segment that refuses to be seen does.
        let Lookup { rows, denied } = Self::lookup(known, used);
        if denied.is_empty() {
            return Ok(rows);
        }
        Err(OracleError::Unreadable {
            why: format!(
                "{}: the kernel has them but will not show them: it refuses SHM_STAT, and IPC_STAT needs read permission or CAP_IPC_OWNER",
                denied.into_iter().collect::<Vec<_>>().join(", ")
            ),
            rows,
        })
    }
}

/// Both oracles, compared on every read.
pub struct CrossCheck;

/// Rows by id, fields as both oracles can say them.
fn differences(procfs: &[SegRow], syscalls: &[SegRow]) -> Vec<String> {
    let by_id = |rows: &[SegRow]| -> std::collections::BTreeMap<i32, SegRow> {
        rows.iter().map(|r| (r.shmid, r.clone())).collect()
    };
    let (p, s) = (by_id(procfs), by_id(syscalls));
    let mut out = Vec::new();
    for (id, a) in &p {
        match s.get(id) {
            None => out.push(format!(
                "id {id} ({}) is in /proc/sysvipc/shm, not found by shmctl",
                a.describe()
            )),
            Some(b) => {
                for (field, x, y) in [
                    ("key", a.key.clone(), b.key.clone()),
                    ("mode", a.mode.clone(), b.mode.clone()),
                    ("size", a.size.to_string(), b.size.to_string()),
                    ("nattch", a.nattch.to_string(), b.nattch.to_string()),
                    ("cpid", format!("{:?}", a.cpid), format!("{:?}", b.cpid)),
                    ("lpid", format!("{:?}", a.lpid), format!("{:?}", b.lpid)),
                    ("uid", format!("{:?}", a.uid), format!("{:?}", b.uid)),
                ] {
                    if x != y {
                        out.push(format!("id {id}: {field} is {x} in /proc/sysvipc/shm, {y} by shmctl"));
                    }
                }
            }
        }
    }
    for (id, b) in &s {
        if !p.contains_key(id) {
            out.push(format!(
                "id {id} ({}) is found by shmctl, not in /proc/sysvipc/shm",
                b.describe()
            ));
        }
    }
    out
}

impl Oracle for CrossCheck {
    fn name(&self) -> &'static str {
        "cross-check"
    }

    fn table(&self, known: &Known) -> Result<Vec<SegRow>, OracleError> {
        // A process of the scenario may change the table between two reads:
        // only a view procfs shows the same before and after counts.
        let mut last = Vec::new();
        for _ in 0..20 {
            let before = Procfs.table(known)?;
            let syscalls = Syscalls.table(known)?;
            let after = Procfs.table(known)?;
            if before != after {
                last = after;
                std::thread::yield_now();
                continue;
            }
            let diff = differences(&before, &syscalls);
            if diff.is_empty() {
                return Ok(before);
            }
            return Err(ReadError::Disagree(diff).into());
        }
        // Never still long enough to compare: use procfs, say nothing false.
        Ok(last)
    }
}

/// A segment-table row between `shmconf kernel-view` in a sandbox and the
/// harness outside it: raw values, as the kernel gave them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireRow {
    pub key: i32,
    pub shmid: i32,
    pub mode: u32,
    pub size: u64,
    pub nattch: u64,
    pub cpid: Option<i32>,
    pub lpid: Option<i32>,
    pub uid: Option<u32>,
}

impl WireRow {
    pub fn from_row(r: &SegRow) -> WireRow {
        WireRow {
            key: r.raw_key,
            shmid: r.shmid,
            mode: r.raw_mode,
            size: r.size,
            nattch: r.nattch,
            cpid: r.cpid,
            lpid: r.lpid,
            uid: r.uid,
        }
    }

    pub fn into_row(self) -> SegRow {
        SegRow {
            key: Key::from_raw(self.key).to_string(),
            shmid: self.shmid,
            mode: format!("{:04o}", self.mode & 0o7777),
            size: self.size,
            nattch: self.nattch,
            cpid: self.cpid,
            lpid: self.lpid,
            uid: self.uid,
            raw_key: self.key,
            raw_mode: self.mode & 0o7777,
        }
    }
}

/// What `kernel-view table` prints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WireTable {
    pub rows: Vec<WireRow>,
    /// Set where the table is not whole ([`OracleError::Unreadable`]).
    pub unreadable: Option<String>,
}

/// The kernel's view from inside a sandbox the harness cannot enter: gVisor
/// runs a kernel of its own, so a container's IPC namespace is not one of
/// the host's. Each read runs `shmconf kernel-view` in the container (the
/// image has it), which reads with the oracle that works there.
pub struct InContainer {
    /// The engine's exec command line, up to and including the container.
    exec: Vec<String>,
    containers_conf: Option<std::path::PathBuf>,
}

/// How an in-container read that the container engine itself could not run
/// begins its error: not a verdict on the implementation (BROKEN).
const ENGINE_FAILED: &str = "the container engine could not run the oracle: ";

/// How long one read inside a container may take.
const IN_CONTAINER_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl InContainer {
    pub fn new(exec: Vec<String>, containers_conf: Option<std::path::PathBuf>) -> InContainer {
        InContainer { exec, containers_conf }
    }

    /// Run `shmconf kernel-view ARGS` in the container: its stdout, or its
    /// error in one line. When the engine itself fails to run it (anything
    /// but kernel-view's own exit code 1: Podman's conmon now and then
    /// fails an exec with "container create failed"), try twice more; what
    /// still fails then starts with [`ENGINE_FAILED`], a harness problem.
    fn run(&self, args: &[String]) -> Result<Vec<u8>, KernelViewError> {
        let mut attempt = 0;
        loop {
            match self.run_once(args) {
                Ok(out) => return Ok(out),
                Err(e) if !e.by_engine() => return Err(e),
                Err(e) if attempt == 2 => return Err(KernelViewError::EngineFailed(Box::new(e))),
                Err(_) => {}
            }
            attempt += 1;
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// One try.
    fn run_once(&self, args: &[String]) -> Result<Vec<u8>, KernelViewError> {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(&self.exec[0]);
        cmd.args(&self.exec[1..])
            .args(["/usr/local/bin/shmconf", "kernel-view"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(conf) = &self.containers_conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        let mut child = cmd.spawn().map_err(|source| KernelViewError::Spawn {
            program: self.exec[0].clone(),
            source,
        })?;
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(o) = out.as_mut() {
                let _ = o
                    .take(crate::engine::procs::CAPTURE_KEEP as u64 * 2)
                    .read_to_end(&mut buf);
            }
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(e) = err.as_mut() {
                let _ = e.take(64 * 1024).read_to_end(&mut buf);
            }
            buf
        });
        let deadline = std::time::Instant::now() + IN_CONTAINER_LIMIT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(KernelViewError::TimedOut);
                }
                Err(e) => return Err(KernelViewError::Wait(e)),
            }
        };
        let stdout = reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        if status.success() {
            Ok(stdout)
        } else {
            let text = String::from_utf8_lossy(&stderr);
            let said = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("(no message)");
            Err(KernelViewError::Exited {
                status,
                said: said.trim().to_string(),
            })
        }
    }

    pub fn ftok(&self, file: &str, proj_id: i32) -> Result<i32, ReadError> {
        let out = self.run(&["ftok".into(), file.into(), proj_id.to_string()])?;
        Ok(String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .map_err(|_| KernelViewError::NoKey)?)
    }
}

impl Oracle for InContainer {
    fn name(&self) -> &'static str {
        "in-container"
    }

    fn table(&self, known: &Known) -> Result<Vec<SegRow>, OracleError> {
        let mut args = vec!["table".to_string()];
        for k in &known.keys {
            // (`--key=-1`: a negative key is no flag.)
            args.push(format!("--key={k}"));
        }
        for i in &known.ids {
            args.push(format!("--id={i}"));
        }
        let out = self.run(&args).map_err(ReadError::from)?;
        let table: WireTable =
            serde_json::from_slice(&out).map_err(|e| ReadError::from(KernelViewError::NoTable(e)))?;
        let rows = table.rows.into_iter().map(WireRow::into_row).collect();
        match table.unreadable {
            None => Ok(rows),
            Some(why) => Err(OracleError::Unreadable { rows, why }),
        }
    }

    fn content(&self, shmid: i32, max: usize) -> Result<Vec<u8>, ReadError> {
        Ok(self.run(&["content".into(), shmid.to_string(), max.to_string()])?)
    }

    fn mappings(&self, shmid: i32) -> Result<u64, MappingsError> {
        let out = self.run(&["mappings".into(), shmid.to_string()])?;
        String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .map_err(|_| MappingsError::NoCount)
    }
}

/// `shmconf kernel-view`: this namespace's segments as the oracle that works
/// here reads them, for a harness outside a sandbox ([`InContainer`]).
#[derive(Debug, clap::Subcommand)]
pub enum KernelView {
    /// The segment table, as JSON rows.
    Table {
        /// Keys the scenario named (found even where enumeration is refused).
        #[arg(long = "key")]
        keys: Vec<i32>,
        /// Ids the scenario saw.
        #[arg(long = "id")]
        ids: Vec<i32>,
    },
    /// Up to MAX bytes of segment ID, raw.
    Content { id: i32, max: usize },
    /// How many mappings of segment ID the processes of this IPC namespace
    /// hold (their /proc/PID/maps), in decimal.
    Mappings { id: i32 },
    /// ftok(FILE, PROJ) here, in decimal (FILE: a plain name in the working dir).
    Ftok { file: String, proj: i32 },
    /// Each segment's id and creator pid as this process's PID namespace
    /// sees them (shmctl, which translates the creator into the caller's
    /// namespace: 0 where it was created by a process outside it, dead or
    /// alive), as JSON pairs. The shared isolation runs it in a scenario's PID
    /// namespace to tell the scenario's segments from other programs'.
    Creators {
        /// First kill every other process of this PID namespace but its
        /// init (refused outside a PID namespace of its own).
        #[arg(long)]
        end_others: bool,
    },
}

impl KernelView {
    /// Serve one request; exit status 0, or 1 with the error on stderr.
    pub fn serve(self) -> Result<Vec<u8>, ServeError> {
        match self {
            KernelView::Table { keys, ids } => {
                let known = Known {
                    keys: keys.into_iter().collect(),
                    ids: ids.into_iter().collect(),
                };
                let (rows, unreadable) = match detect().0.table(&known) {
                    Ok(rows) => (rows, None),
                    Err(OracleError::Unreadable { rows, why }) => (rows, Some(why)),
                    Err(OracleError::Failed(why)) => return Err(why.into()),
                };
                let table = WireTable {
                    rows: rows.iter().map(WireRow::from_row).collect(),
                    unreadable,
                };
                serde_json::to_vec(&table).map_err(ServeError::Encode)
            }
            KernelView::Content { id, max } => Ok(Procfs.content(id, max.min(64 << 20))?),
            KernelView::Mappings { id } => Ok(format!("{}\n", mappings_in_this_namespace(id)?).into_bytes()),
            KernelView::Creators { end_others } => {
                if end_others {
                    crate::engine::backend::shared::end_other_processes_of_this_pid_namespace()?;
                }
                let (rows, _) = Syscalls::enumerate()?;
                let pairs: Vec<(i32, i32)> = rows.iter().map(|r| (r.shmid, r.cpid.unwrap_or(0))).collect();
                serde_json::to_vec(&pairs).map_err(ServeError::Encode)
            }
            KernelView::Ftok { file, proj } => {
                if file.is_empty() || file.contains('/') || file == "." || file == ".." {
                    return Err(ServeError::NotAPlainName(file));
                }
                sysv::Key::ftok(std::path::Path::new(&file), proj)
                    .map(|k| format!("{}\n", k.raw()).into_bytes())
                    .map_err(ServeError::Ftok)
            }
        }
    }
}

/// The oracle for this machine: procfs where it exists, else syscalls, and
/// a note saying so.
pub fn detect() -> (Box<dyn Oracle>, Option<String>) {
    if std::fs::File::open(shmconf::segtable::PROC_PATH).is_ok() {
        (Box::new(Procfs), None)
    } else {
        (
            Box::new(Syscalls),
            Some(format!(
                "{} is missing here; the kernel is read through shmctl (SHM_INFO, SHM_STAT, IPC_STAT)",
                shmconf::segtable::PROC_PATH
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: i32, nattch: u64) -> SegRow {
        SegRow {
            key: "0x00000041".into(),
            shmid: id,
            mode: "0666".into(),
            size: 1024,
            nattch,
            cpid: Some(7),
            lpid: Some(8),
            uid: Some(0),
            raw_key: 0x41,
            raw_mode: 0o666,
        }
    }

    /// Linux's and gVisor's maps lines of segment 32769 (key 0x41002171,
    /// still named by it after IPC_RMID), beside lines that are not it.
    #[test]
    fn a_segment_s_mappings_are_told_by_name_and_id() {
        let maps = "\
00400000-00452000 r-xp 00000000 fe:00 32769                              /usr/bin/shm-writer
7f12ab000000-7f12ab001000 rw-s 00000000 00:01 32769                      /SYSV41002171 (deleted)
7f12ab001000-7f12ab002000 r--s 00000000 00:01 32769                      /SYSV41002171 (deleted)
7f12ab002000-7f12ab003000 rw-s 00000000 00:01 1                          /SYSV00000000 (deleted)
7f12ab003000-7f12ab004000 rw-s 00000000 00:05 32769                      SYSV1090568561
7f12ab004000-7f12ab005000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(mappings_in_maps(maps, 32769), 3);
        assert_eq!(mappings_in_maps(maps, 1), 1);
        assert_eq!(
            mappings_in_maps(maps, 0),
            0,
            "an anonymous mapping's inode 0 is no segment"
        );
        assert_eq!(mappings_in_maps(maps, -1), 0);
        assert_eq!(mappings_in_maps("", 32769), 0);
    }

    /// A namespace in which no process is seen (this test's thread alone
    /// entered it; its process stays where it was) gives no count rather
    /// than 0: the barrier then takes nattch alone instead of waiting for
    /// mappings it cannot see.
    #[test]
    fn a_namespace_without_a_process_seen_has_no_count() {
        let Ok(counted) = shmconf::ipcns::in_private_ipc_ns(|| mappings_in_this_namespace(0)) else {
            eprintln!("skipped: no IPC namespace can be made here");
            return;
        };
        assert!(matches!(counted, Err(MappingsError::NoProcessSeen)), "{counted:?}");
    }

    #[test]
    fn a_row_crosses_the_sandbox_wall_unchanged() {
        let row = r(7, 2);
        assert_eq!(WireRow::from_row(&row).into_row(), row);
        let json = serde_json::to_vec(&[WireRow::from_row(&row)]).unwrap();
        let back: Vec<WireRow> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back[0].clone().into_row(), row);
    }

    #[test]
    fn kernel_view_ftok_takes_plain_names_only() {
        for bad in ["../etc/passwd", "/etc/passwd", "a/b", "..", ""] {
            let e = KernelView::Ftok {
                file: bad.into(),
                proj: 65,
            }
            .serve()
            .unwrap_err();
            assert!(matches!(&e, ServeError::NotAPlainName(f) if f == bad), "{bad}: {e}");
            assert_eq!(e.to_string(), format!("ftok: {bad:?} is not a plain file name"));
        }
    }

    /// An engine that fails to run kernel-view is tried three times and then
    /// said to be the engine's failure; kernel-view's own failure (exit 1) at once.
    #[test]
    fn only_the_engines_failures_are_tried_again_and_say_so() {
        let fake = |script: &str| InContainer::new(vec!["sh".into(), "-c".into(), script.into(), "sh".into()], None);
        let tries = tempfile::tempdir().unwrap();
        let count = tries.path().join("count");
        let engine = fake(&format!(
            "echo x >> '{}'; echo 'Error: container create failed' >&2; exit 125",
            count.display()
        ));
        let e = engine.ftok("f", 65).unwrap_err();
        assert!(
            matches!(&e, ReadError::InContainer(KernelViewError::EngineFailed(last)) if last.by_engine()),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{ENGINE_FAILED}kernel-view in the container failed (exit status: 125): Error: container create failed"
            )
        );
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);
        let own = fake("echo 'ftok(f) failed: No such file or directory' >&2; exit 1");
        let e = own.ftok("f", 65).unwrap_err();
        assert!(
            matches!(&e, ReadError::InContainer(KernelViewError::Exited { .. })),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "kernel-view in the container failed (exit status: 1): ftok(f) failed: No such file or directory"
        );
        let e = fake("echo nothing").ftok("f", 65).unwrap_err();
        assert_eq!(e.to_string(), "kernel-view ftok printed no key");
        let d = ReadError::Disagree(vec!["id 1: a".into(), "id 2: b".into()]);
        assert_eq!(d.to_string(), "the kernel's two views disagree: id 1: a; id 2: b");
    }

    #[test]
    fn differences_name_the_id_and_the_field() {
        assert!(differences(&[r(1, 0)], &[r(1, 0)]).is_empty());
        let d = differences(&[r(1, 0), r(2, 0)], &[r(1, 1), r(3, 0)]);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d[0].contains("id 1: nattch is 0 in /proc/sysvipc/shm, 1 by shmctl"),
            "{d:?}"
        );
        assert!(d[1].contains("id 2") && d[1].contains("not found by shmctl"), "{d:?}");
        assert!(
            d[2].contains("id 3") && d[2].contains("not in /proc/sysvipc/shm"),
            "{d:?}"
        );
    }
}
