//! A reference model of the SysV shared-memory semantics our scenarios touch,
//! and of the writer/reader contract on top of them.
//!
//! Pure and deterministic: given a sequence of events it predicts what each
//! process prints and how it exits, and the segment table after every event.
//! It knows nothing about the machine except what events tell it (a key
//! file's device and inode, when the file is made), so it can be tested on
//! its own and then held against the kernel by `explore`.
//!
//! Semantics modelled (Linux, ipc/shm.c): keys from ftok's formula; shmget
//! with IPC_CREAT finding a live keyed segment or creating a zero-filled one,
//! EINVAL when the existing one is smaller; attach/detach counts; IPC_RMID
//! destroying at once when unattached, else marking SHM_DEST and resetting
//! the key to IPC_PRIVATE; destruction at the last detach of a marked
//! segment, or of any segment when `kernel.shm_rmid_forced` is set.

use std::collections::BTreeMap;

pub mod calls;
pub mod program;

use shmconf::sysv::ftok_formula;

pub use crate::scenario::PairRole as Role;
use crate::scenario::{InitialSegment, KeySpec};

/// One process of an exploration: its role and how it is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub name: String,
    pub role: Role,
    pub key_file: String,
    pub proj_id: i32,
    pub size: usize,
    /// Writer: everything it will get on stdin.
    pub stdin: Vec<u8>,
    /// Writer: attach first, then wait for its input as a separate event.
    pub pause: bool,
    /// Reader: do not IPC_RMID.
    pub keep: bool,
}

/// A file's identity, for ftok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What happens, in order. Process events name a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A paused writer starts: ftok, shmget, shmat, prompt; then it waits.
    Attach(String),
    /// A paused writer gets its input: writes, prints, detaches, exits.
    Input(String),
    /// A process runs from start to exit.
    Run(String),
    /// A key file appears (again) with this identity.
    File(String, FileId),
    /// A key file disappears.
    RemoveFile(String),
    /// A segment of the initial state is made (its ftok key from the file
    /// as it is now), holding its content.
    Seed(InitialSegment),
}

/// A segment as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub id: u32,
    pub key: i32,
    pub size: usize,
    pub mode: u32,
    pub data: Vec<u8>,
    pub nattch: u32,
    pub dest: bool,
}

impl Seg {
    /// The content up to its first NUL, as the programs print it.
    pub fn text(&self) -> Vec<u8> {
        self.data.split(|&b| b == 0).next().unwrap_or_default().to_vec()
    }
}

/// What the model says about a process once it has exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEnd {
    pub stdout: Vec<u8>,
    pub exit: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ProcState {
    NotStarted,
    /// A paused writer, attached to segment `seg`, prompt printed.
    Attached {
        seg: u32,
        /// It created the segment (and removes it if its write is rejected).
        created: bool,
        stdout: Vec<u8>,
    },
    Done(ProcessEnd),
}

/// Exit codes of our contract (see `shmconf::cli::Exit`).
pub mod exit {
    pub const OK: i32 = 0;
    pub const KEY_FILE: i32 = 3;
    pub const INPUT_TOO_LONG: i32 = 4;
    pub const NO_INPUT: i32 = 5;
    pub const SIZE: i32 = 6;
}

/// The whole modelled world of one IPC namespace.
#[derive(Debug, Clone)]
pub struct Model {
    pub runs: BTreeMap<String, RunSpec>,
    pub segs: Vec<Seg>,
    next_id: u32,
    files: BTreeMap<String, FileId>,
    procs: BTreeMap<String, ProcState>,
    pub rmid_forced: bool,
}

/// An event the model cannot apply (a bug in the order, not in a program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError(pub String);

impl Model {
    pub fn new(runs: &[RunSpec]) -> Model {
        Model {
            runs: runs.iter().map(|r| (r.name.clone(), r.clone())).collect(),
            segs: Vec::new(),
            next_id: 0,
            files: BTreeMap::new(),
            procs: runs.iter().map(|r| (r.name.clone(), ProcState::NotStarted)).collect(),
            rmid_forced: false,
        }
    }

    /// The key a run would compute now, or None when its key file is missing.
    pub fn key_of(&self, run: &RunSpec) -> Option<i32> {
        self.files
            .get(&run.key_file)
            .map(|f| ftok_formula(f.dev, f.ino, run.proj_id).raw())
    }

    /// What a process printed and its exit code, once it has exited.
    pub fn end_of(&self, name: &str) -> Option<&ProcessEnd> {
        match self.procs.get(name) {
            Some(ProcState::Done(o)) => Some(o),
            _ => None,
        }
    }

    pub fn apply(&mut self, event: &Change) -> Result<(), ModelError> {
        match event {
            Change::File(name, id) => {
                self.files.insert(name.clone(), *id);
                Ok(())
            }
            Change::RemoveFile(name) => {
                self.files.remove(name);
                Ok(())
            }
            Change::Seed(seg) => self.seed(seg),
            Change::Attach(name) => {
                let run = self.run(name)?;
                self.expect_state(name, |s| matches!(s, ProcState::NotStarted), "not started")?;
                let state = match self.writer_attach(&run) {
                    Ok((seg, created)) => ProcState::Attached {
                        seg,
                        created,
                        stdout: b"Write Data: ".to_vec(),
                    },
                    Err(outcome) => ProcState::Done(outcome),
                };
                self.procs.insert(name.clone(), state);
                Ok(())
            }
            Change::Input(name) => {
                let run = self.run(name)?;
                let state = self.procs.get(name).cloned();
                match state {
                    Some(ProcState::Attached { seg, created, stdout }) => {
                        let outcome = self.writer_input(&run, seg, created, stdout);
                        self.procs.insert(name.clone(), ProcState::Done(outcome));
                        Ok(())
                    }
                    // It already failed at start (e.g. no key file): input changes nothing.
                    Some(ProcState::Done(_)) => Ok(()),
                    _ => Err(ModelError(format!("{name}: input before it attached"))),
                }
            }
            Change::Run(name) => {
                let run = self.run(name)?;
                self.expect_state(name, |s| matches!(s, ProcState::NotStarted), "not started")?;
                let outcome = match run.role {
                    Role::Writer => match self.writer_attach(&run) {
                        Ok((seg, created)) => self.writer_input(&run, seg, created, b"Write Data: ".to_vec()),
                        Err(outcome) => outcome,
                    },
                    Role::Reader => self.reader(&run),
                };
                self.procs.insert(name.clone(), ProcState::Done(outcome));
                Ok(())
            }
        }
    }

    /// Make an initial segment as `shmget(key, size, IPC_CREAT|IPC_EXCL)`
    /// and a write of its content would.
    fn seed(&mut self, seg: &InitialSegment) -> Result<(), ModelError> {
        let key = match &seg.key {
            KeySpec::Ftok { file, proj_id } => self
                .files
                .get(file.as_str())
                .map(|f| ftok_formula(f.dev, f.ino, *proj_id).raw())
                .ok_or_else(|| ModelError(format!("initial segment {}: no file {file}", seg.key)))?,
            KeySpec::Raw(v) => *v,
            KeySpec::Private => return Err(ModelError("an initial segment needs a key".into())),
        };
        if self.segs.iter().any(|s| s.key == key && !s.dest) {
            return Err(ModelError(format!(
                "initial segment {}: its key exists already",
                seg.key
            )));
        }
        let mut data = vec![0; seg.size];
        data[..seg.content.len()].copy_from_slice(seg.content.as_bytes());
        let id = self.next_id;
        self.next_id += 1;
        self.segs.push(Seg {
            id,
            key,
            size: seg.size,
            mode: seg.mode,
            data,
            nattch: 0,
            dest: false,
        });
        Ok(())
    }

    fn run(&self, name: &str) -> Result<RunSpec, ModelError> {
        self.runs
            .get(name)
            .cloned()
            .ok_or_else(|| ModelError(format!("no run named {name:?}")))
    }

    fn expect_state(&self, name: &str, ok: impl Fn(&ProcState) -> bool, what: &str) -> Result<(), ModelError> {
        match self.procs.get(name) {
            Some(s) if ok(s) => Ok(()),
            _ => Err(ModelError(format!("{name}: expected {what}"))),
        }
    }

    /// shmget(key, size, 0666|IPC_CREAT): the live segment with the key (and
    /// false), or a new one (and true).
    fn shmget_create(&mut self, key: i32, size: usize) -> Result<(u32, bool), i32> {
        if let Some(seg) = self.segs.iter().find(|s| s.key == key && key != 0 && !s.dest) {
            if seg.size < size {
                return Err(exit::SIZE);
            }
            return Ok((seg.id, false));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.segs.push(Seg {
            id,
            key,
            size,
            mode: 0o666,
            data: vec![0; size],
            nattch: 0,
            dest: false,
        });
        Ok((id, true))
    }

    fn seg_mut(&mut self, id: u32) -> Option<&mut Seg> {
        self.segs.iter_mut().find(|s| s.id == id)
    }

    fn attach(&mut self, id: u32) {
        if let Some(s) = self.seg_mut(id) {
            s.nattch += 1;
        }
    }

    /// shmdt: at nattch 0 a marked segment (or any, with shm_rmid_forced) dies.
    fn detach(&mut self, id: u32) {
        let forced = self.rmid_forced;
        if let Some(s) = self.seg_mut(id) {
            s.nattch -= 1;
            if s.nattch == 0 && (s.dest || forced) {
                self.segs.retain(|s| s.id != id);
            }
        }
    }

    /// IPC_RMID: gone now if unattached, else SHM_DEST with the key reset.
    fn rmid(&mut self, id: u32) {
        if let Some(s) = self.seg_mut(id) {
            if s.nattch == 0 {
                self.segs.retain(|s| s.id != id);
            } else {
                s.dest = true;
                s.key = 0;
            }
        }
    }

    fn writer_attach(&mut self, run: &RunSpec) -> Result<(u32, bool), ProcessEnd> {
        let fail = |exit| ProcessEnd {
            stdout: Vec::new(),
            exit,
        };
        let key = self.key_of(run).ok_or(fail(exit::KEY_FILE))?;
        let (id, created) = self.shmget_create(key, run.size).map_err(fail)?;
        self.attach(id);
        Ok((id, created))
    }

    /// The line goes in if it fits `--size` (a larger existing segment does
    /// not widen it); a rejected line leaves the kernel as the writer found
    /// it: a segment it had created for the write is removed again.
    fn writer_input(&mut self, run: &RunSpec, seg: u32, created: bool, mut stdout: Vec<u8>) -> ProcessEnd {
        let line = first_line(&run.stdin, run.size);
        let exit = match line {
            Line::Fits(line) => {
                if let Some(s) = self.seg_mut(seg) {
                    s.data[..line.len()].copy_from_slice(&line);
                    s.data[line.len()] = 0;
                    stdout.extend_from_slice(b"Data written in memory: ");
                    stdout.extend(s.text());
                    stdout.push(b'\n');
                }
                exit::OK
            }
            Line::TooLong => exit::INPUT_TOO_LONG,
            Line::Eof => exit::NO_INPUT,
        };
        self.detach(seg);
        if exit != exit::OK && created {
            self.rmid(seg);
        }
        ProcessEnd { stdout, exit }
    }

    fn reader(&mut self, run: &RunSpec) -> ProcessEnd {
        let fail = |exit| ProcessEnd {
            stdout: Vec::new(),
            exit,
        };
        let Some(key) = self.key_of(run) else {
            return fail(exit::KEY_FILE);
        };
        let id = match self.shmget_create(key, run.size) {
            Ok((id, _)) => id,
            Err(code) => return fail(code),
        };
        self.attach(id);
        let mut stdout = b"Data read from memory: ".to_vec();
        stdout.extend(self.segs.iter().find(|s| s.id == id).map(Seg::text).unwrap_or_default());
        stdout.push(b'\n');
        self.detach(id);
        if !run.keep {
            self.rmid(id); // a segment already destroyed by the detach is simply gone
        }
        ProcessEnd { stdout, exit: exit::OK }
    }
}

enum Line {
    Fits(Vec<u8>),
    TooLong,
    Eof,
}

/// The writer's reading rule: one line, its newline dropped, at most size-1 bytes.
fn first_line(input: &[u8], size: usize) -> Line {
    if input.is_empty() {
        return Line::Eof;
    }
    let line = match input.iter().position(|&b| b == b'\n') {
        Some(i) => &input[..i],
        None => input,
    };
    if line.len() + 1 > size {
        Line::TooLong
    } else {
        Line::Fits(line.to_vec())
    }
}

#[cfg(test)]
mod tests;
