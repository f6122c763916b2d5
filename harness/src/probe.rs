//! `shmconf probe`: one raw SysV call per invocation, its result or errno on
//! stdout, so scenarios can pin kernel behaviour directly (as LTP's and
//! gVisor's tests do) and judge a kernel or a container runtime.
//!
//! Output: one `ok ...` line (exit 0) or `errno NAME: text` (exit 1); usage
//! errors exit 2.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use shmconf::cli::{parse_hex_key, parse_octal_mode};
use shmconf::sysv::{self, Attachment, Create, Key, Mode, ReadOnly, ReadWrite, Segment};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    op: ProbeOp,
    /// Explicit key in hex.
    #[arg(long, global = true, value_parser = parse_hex_key)]
    key: Option<Key>,
    /// Key from ftok: FILE:PROJ (default shmfile:65).
    #[arg(long, global = true, value_name = "FILE:PROJ")]
    ftok: Option<String>,
    /// Segment id instead of a key lookup (stat, rmid, set, attach).
    #[arg(long, global = true)]
    id: Option<i32>,
}

#[derive(Debug, Subcommand)]
enum ProbeOp {
    /// Print the key ftok gives.
    Key,
    /// shmget(key, size, flags).
    Get {
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long)]
        create: bool,
        #[arg(long)]
        exclusive: bool,
        #[arg(long, default_value = "666", value_parser = parse_octal_mode)]
        mode: u32,
    },
    /// shmctl(IPC_STAT).
    Stat,
    /// shmctl(IPC_RMID).
    Rmid,
    /// shmctl(IPC_SET) with new permission bits.
    Set {
        #[arg(long, value_parser = parse_octal_mode)]
        mode: u32,
    },
    /// shmat, then optionally write, hold until stdin closes, read, and shmdt.
    Attach {
        #[arg(long)]
        read_only: bool,
        /// Write this text and a NUL at offset 0.
        #[arg(long)]
        write: Option<String>,
        /// Print "holding" and keep the attachment until stdin reaches EOF.
        #[arg(long)]
        hold: bool,
        /// Exit without shmdt (the kernel must detach at exit).
        #[arg(long)]
        no_detach: bool,
        /// Write a zero into every page, so the whole segment is resident
        /// (its memory then shows in /proc/meminfo Shmem).
        #[arg(long)]
        touch: bool,
    },
    /// Run a program of operations read as JSON from stdin (what a scenario's
    /// `program` step sends) and report each one's result and the table
    /// after it as JSON lines: the fuzzer's executor.
    Program,
    /// A step kind's calls (`scenario::kinds`), as its step starts them.
    Step {
        kind: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn errno_line(e: &sysv::Error) -> String {
    format!("errno {:?}: {}", e.errno, e)
}

/// Why a probe operation did not succeed: its one line on stdout (the
/// harness reads the errno name after `errno `).
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    #[error("--ftok wants FILE:PROJ")]
    FtokSpec,
    #[error("errno {errno:?}: {failure}", errno = .0.errno, failure = .0)]
    Ftok(sysv::FtokError),
    #[error("{}", errno_line(.0))]
    Call(#[from] sysv::Error),
    /// A write the probe would not make: the mapping is read-only.
    #[error("refused write: the attachment is read-only (SHM_RDONLY)")]
    ReadOnly,
    #[error("refused write: {0}")]
    OutOfBounds(#[from] sysv::OutOfBounds),
}

pub fn run(args: ProbeArgs) -> i32 {
    if let ProbeOp::Step { kind, args } = &args.op {
        return crate::scenario::kinds::probe(kind, args).unwrap_or_else(|| {
            eprintln!(
                "shmconf probe step: no step kind {kind:?} (there are: {})",
                crate::scenario::kinds::KEYS.join(", ")
            );
            2
        });
    }
    if let ProbeOp::Program = args.op {
        return match crate::fuzz::exec::serve() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("shmconf probe program: {e}");
                2
            }
        };
    }
    match probe(args) {
        Ok(()) => 0,
        Err(failure) => {
            say(failure.to_string());
            1
        }
    }
}

fn probe(args: ProbeArgs) -> Result<(), ProbeFailure> {
    let key = || -> Result<Key, ProbeFailure> {
        if let Some(k) = args.key {
            return Ok(k);
        }
        let spec = args.ftok.clone().unwrap_or_else(|| "shmfile:65".into());
        let (file, proj) = spec.rsplit_once(':').ok_or(ProbeFailure::FtokSpec)?;
        let proj: i32 = proj.parse().map_err(|_| ProbeFailure::FtokSpec)?;
        Key::ftok(&PathBuf::from(file), proj).map_err(ProbeFailure::Ftok)
    };
    let segment = || -> Result<Segment, ProbeFailure> {
        match args.id {
            Some(id) => Ok(Segment::from_id(id)),
            None => Segment::get(key()?, 0, Create::No, 0).map_err(ProbeFailure::Call),
        }
    };
    match &args.op {
        // Served by run(), their reports on stdout and errors on stderr.
        ProbeOp::Program | ProbeOp::Step { .. } => {}
        ProbeOp::Key => say(format!("ok key {}", key()?)),
        ProbeOp::Get {
            size,
            create,
            exclusive,
            mode,
        } => {
            let how = match (create, exclusive) {
                (_, true) => Create::Exclusive,
                (true, false) => Create::IfMissing,
                _ => Create::No,
            };
            let seg = Segment::get(key()?, *size, how, *mode)?;
            say(format!("ok shmid {}", seg.id()));
        }
        ProbeOp::Stat => {
            let st = segment()?.stat()?;
            say(format!(
                "ok key {} mode {:04o} size {} nattch {} dest {} cpid {} lpid {} uid {} gid {}",
                st.key,
                st.mode,
                st.size,
                st.nattch,
                st.is_marked_for_destruction(),
                st.cpid,
                st.lpid,
                st.uid,
                st.gid
            ));
        }
        ProbeOp::Rmid => {
            segment()?.remove()?;
            say("ok removed".into());
        }
        ProbeOp::Set { mode } => {
            let seg = segment()?;
            let st = seg.stat()?;
            seg.set(st.uid, st.gid, *mode)?;
            say(format!("ok mode {mode:04o}"));
        }
        ProbeOp::Attach {
            read_only,
            write,
            hold,
            no_detach,
            touch,
        } => {
            let seg = segment()?;
            if *read_only {
                if *touch || write.is_some() {
                    return Err(ProbeFailure::ReadOnly);
                }
                let at = seg.attach::<ReadOnly>()?;
                say(format!("ok attached shmid {} size {}", seg.id(), at.len()));
                finish_attach(at, *hold, *no_detach)?;
            } else {
                let at = seg.attach::<ReadWrite>()?;
                say(format!("ok attached shmid {} size {}", seg.id(), at.len()));
                if *touch {
                    for offset in (0..at.len()).step_by(4096) {
                        at.write_at(offset, &[0])?;
                    }
                    say(format!("ok touched {} pages", at.len().div_ceil(4096)));
                }
                if let Some(text) = write {
                    let mut bytes = text.as_bytes().to_vec();
                    bytes.push(0);
                    at.write_at(0, &bytes)?;
                    say(format!("ok wrote {} bytes", text.len()));
                }
                finish_attach(at, *hold, *no_detach)?;
            }
        }
    }
    Ok(())
}

/// Hold (until stdin closes) if asked, print the content, detach or not.
fn finish_attach<M: Mode>(at: Attachment<M>, hold: bool, no_detach: bool) -> Result<(), ProbeFailure> {
    if hold {
        say("holding".into());
        let mut sink = [0u8; 4096];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
    }
    let content = at.read_c_string_capped(64 * 1024);
    say(format!("ok content {}", crate::events::escape(&content)));
    if no_detach {
        // Leave the attachment to the kernel's exit-time detach.
        std::mem::forget(at);
        say("ok exiting without shmdt".into());
        return Ok(());
    }
    at.detach()?;
    say("ok detached".into());
    Ok(())
}
