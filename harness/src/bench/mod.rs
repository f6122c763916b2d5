//! `shmconf bench`: measure the seed tutorial's claim that shared memory
//! beats pipes, FIFOs and message queues, between two real processes, with
//! every byte verified, plus memcpy as the physical bound and a file-to-file
//! mode (two copies through a segment against four through a pipe).
//!
//! The parent process creates each channel's kernel objects in a private IPC
//! namespace (so nothing can leak, and `kernel.msgmax` can be raised there),
//! spawns itself as `shmconf bench-peer`, and times what arrives.

pub mod channel;
mod error;
pub mod explore_floor;
pub mod explore_speed;
pub mod harness_speed;
pub mod summary;
pub mod syscall_floor;

use std::fs::File;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use shmconf::sysv::{Create, Key, MsgQueue, ReadWrite, Segment, Semaphores};

pub use error::BenchError;

use channel::{Channel, Handshake, Mq, Ring, ShmChannel, StdioFds, Stream};

/// The mechanisms, by the names the CLI and the report use.
pub const MECHANISMS: &[&str] = &[
    "shm-inplace",
    "shm-futex",
    "shm-spin",
    "shm-sem",
    "pipe",
    "fifo",
    "msgq",
    "unix",
];

/// Slots per ring: about 1 MiB of ring per direction (at least 4 slots, at
/// most 256), so small chunks do not make the sides wait on each other at
/// every chunk. Both processes compute it from the chunk size.
fn slots_for(chunk: usize) -> u32 {
    ((1usize << 20) / chunk.max(1)).clamp(4, 256) as u32
}

#[derive(Debug, Clone)]
pub struct Options {
    pub bytes: usize,
    pub chunks: Vec<usize>,
    pub rounds: usize,
    pub mechanisms: Vec<String>,
    pub file_bytes: Option<usize>,
    /// Also time the harness on these scenarios...
    pub harness: Option<PathBuf>,
    /// ...leaving out these (`shmconf run --skip`).
    pub harness_skip: Vec<String>,
    /// Also time the exploration scenarios here, with this implementation.
    pub explore: Option<PathBuf>,
    pub explore_impl: String,
    /// The `shmconf` binary to spawn as the peer.
    pub exe: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub mechanism: String,
    pub chunk: usize,
    pub bytes: usize,
    pub seconds: f64,
    pub gbps: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mechanism: String,
    pub rounds: usize,
    pub rtt_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileToFile {
    pub mechanism: String,
    pub copies: u32,
    pub bytes: usize,
    pub seconds: f64,
    pub gbps: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: summary::Machine,
    pub msg_piece: usize,
    pub throughput: Vec<Throughput>,
    pub latency: Vec<Latency>,
    pub file_to_file: Vec<FileToFile>,
    pub harness: Option<harness_speed::HarnessSpeed>,
    pub explore: Vec<explore_speed::ExploreSpeed>,
}

/// Deterministic pseudo-random bytes; chunk i carries i in its first 8 bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn verify(buf: &[u8], seq: u64, pattern: &[u8]) -> Result<(), BenchError> {
    let n = buf.len().min(8);
    if buf[..n] != seq.to_le_bytes()[..n] || buf[n..] != pattern[n..] {
        let at = buf
            .iter()
            .zip(pattern)
            .enumerate()
            .skip(8)
            .find(|(_, (a, b))| a != b)
            .map_or(0, |(i, _)| i);
        return Err(BenchError::Corrupted { seq, at });
    }
    Ok(())
}

fn stamp(buf: &mut [u8], seq: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Raise the message-queue limits in our own namespace so a 1 MiB chunk can
/// travel as one message; returns the piece size messages are cut to.
fn msg_piece(largest: usize) -> usize {
    let want = largest.max(8192);
    let ok = std::fs::write("/proc/sys/kernel/msgmax", want.to_string()).is_ok()
        && std::fs::write("/proc/sys/kernel/msgmnb", (want * 4).to_string()).is_ok();
    if ok {
        want
    } else {
        std::fs::read_to_string("/proc/sys/kernel/msgmax")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(8192)
    }
}

/// The choices of every order a system-call exploration executes (see
/// `explore::executed_schedules`), for its floor; why not, as the row's
/// reason for having no floor. Given by the caller, which composes an
/// engine as `shmconf run` does (composition is a layer above this one).
pub type ScheduleSource<'a> = &'a (dyn Fn(
    &crate::scenario::ScenarioFile,
    &crate::scenario::Exploration,
) -> Result<Vec<Vec<crate::events::Choice>>, String>
         + Sync);

/// Run every measurement on a thread moved into a private IPC namespace.
pub fn run(opts: &Options, schedules: ScheduleSource) -> Result<Results, BenchError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // Best effort: without privilege the objects live in the current
            // namespace and are removed explicitly.
            let _ = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC);
            run_here(opts, schedules)
        })
        .join()
        .unwrap_or_else(|_| Err(BenchError::Panicked("benchmark thread")))
    })
}

fn run_here(opts: &Options, schedules: ScheduleSource) -> Result<Results, BenchError> {
    let largest = opts.chunks.iter().copied().max().unwrap_or(4096);
    let piece = msg_piece(largest);
    let dir = tempfile::Builder::new().prefix("shmconf-bench-").tempdir()?;
    let mut throughput = Vec::new();
    let mut latency = Vec::new();
    for &chunk in &opts.chunks {
        let count = (opts.bytes / chunk).max(1);
        throughput.push(memcpy(chunk, count)?);
        for mech in &opts.mechanisms {
            let (secs, _) =
                transfer(opts, dir.path(), mech, chunk, count, 0, piece).map_err(|e| e.in_mechanism(mech))?;
            let bytes = chunk * count;
            throughput.push(Throughput {
                mechanism: mech.clone(),
                chunk,
                bytes,
                seconds: secs,
                gbps: bytes as f64 / secs / 1e9,
            });
        }
    }
    for mech in &opts.mechanisms {
        let (_, rtt) = transfer(opts, dir.path(), mech, 1, 0, opts.rounds, piece).map_err(|e| e.in_mechanism(mech))?;
        latency.push(Latency {
            mechanism: mech.clone(),
            rounds: opts.rounds,
            rtt_us: rtt * 1e6,
        });
    }
    let mut file_to_file = Vec::new();
    if let Some(bytes) = opts.file_bytes {
        file_to_file = files(opts, dir.path(), bytes)?;
    }
    let harness = match &opts.harness {
        Some(path) => Some(harness_speed::measure(&opts.exe, path, &opts.harness_skip)?),
        None => None,
    };
    let explore = match &opts.explore {
        Some(path) => explore_speed::measure(&opts.exe, path, &opts.explore_impl, schedules)?,
        None => Vec::new(),
    };
    Ok(Results {
        machine: summary::Machine::read(),
        msg_piece: piece,
        throughput,
        latency,
        file_to_file,
        harness,
        explore,
    })
}

fn memcpy(chunk: usize, count: usize) -> Result<Throughput, BenchError> {
    let mut src = pattern(chunk);
    let pat = src.clone();
    let mut dst = vec![0u8; chunk];
    let t0 = Instant::now();
    for i in 0..count as u64 {
        stamp(&mut src, i);
        dst.copy_from_slice(std::hint::black_box(&src));
        verify(std::hint::black_box(&dst), i, &pat)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let bytes = chunk * count;
    Ok(Throughput {
        mechanism: "memcpy".into(),
        chunk,
        bytes,
        seconds: secs,
        gbps: bytes as f64 / secs / 1e9,
    })
}

/// Kernel objects of one measurement, removed on drop.
struct Objects {
    segment: Option<Segment>,
    sems: Option<Semaphores>,
    queue: Option<MsgQueue>,
}

impl Objects {
    /// The SysV objects `mech` needs (a segment, semaphores, a queue), their
    /// ids added to the peer's `args`; removed when dropped.
    fn for_mechanism(mech: &str, chunk: usize, slot: usize, args: &mut Vec<String>) -> Result<Objects, BenchError> {
        let mut objs = Objects {
            segment: None,
            sems: None,
            queue: None,
        };
        if mech.starts_with("shm") {
            let size = 2 * Ring::bytes(slots_for(chunk), slot);
            let seg = Segment::get(Key::PRIVATE, size, Create::IfMissing, 0o600)?;
            objs.segment = Some(seg);
            args.extend(["--shm-id".into(), seg.id().to_string()]);
            if mech == "shm-sem" {
                let s = Semaphores::create_private(4, 0o600)?;
                s.op(0, slots_for(chunk) as i16)?;
                s.op(2, slots_for(chunk) as i16)?;
                objs.sems = Some(s);
                args.extend(["--sem-id".into(), s.id().to_string()]);
            }
        }
        if mech == "msgq" {
            let q = MsgQueue::create_private(0o600)?;
            objs.queue = Some(q);
            args.extend(["--msq-id".into(), q.id().to_string()]);
        }
        Ok(objs)
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        if let Some(s) = self.segment {
            let _ = s.remove();
        }
        if let Some(s) = self.sems {
            let _ = s.remove();
        }
        if let Some(q) = self.queue {
            let _ = q.remove();
        }
    }
}

fn handshake_of(mech: &str, sems: Option<Semaphores>) -> Handshake {
    match mech {
        "shm-spin" => Handshake::SpinYield,
        "shm-sem" => Handshake::Semaphore(sems.expect("semaphores made for shm-sem")),
        _ => Handshake::Futex,
    }
}

/// Receive `count` chunks (each verified), then time `rounds` one-byte
/// round trips: (seconds for the chunks, seconds per round trip).
fn measure(ch: &mut dyn Channel, chunk: usize, count: usize, rounds: usize) -> std::io::Result<(f64, f64)> {
    let pat = pattern(chunk);
    let mut buf = vec![0u8; chunk];
    ch.send(&[1])?;
    let t0 = Instant::now();
    for i in 0..count as u64 {
        ch.recv_verified(&mut buf, i, &pat)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut one = [0u8; 1];
    for i in 0..rounds {
        ch.send(&[i as u8])?;
        ch.recv(&mut one)?;
        if one[0] != (i as u8).wrapping_add(1) {
            return Err(std::io::Error::other(format!("round trip {i}: wrong echo")));
        }
    }
    let rtt = t1.elapsed().as_secs_f64() / rounds.max(1) as f64;
    Ok((secs, rtt))
}

/// One child, `count` chunks child→parent, then `rounds` 1-byte round trips.
/// Returns (seconds for the chunks, seconds per round trip); an error is
/// said as the mechanism's by the caller.
fn transfer(
    opts: &Options,
    dir: &Path,
    mech: &str,
    chunk: usize,
    count: usize,
    rounds: usize,
    piece: usize,
) -> Result<(f64, f64), BenchError> {
    let slot = chunk.max(64);
    let mut args: Vec<String> = vec![
        "bench-peer".into(),
        "--mech".into(),
        mech.into(),
        "--chunk".into(),
        chunk.to_string(),
        "--count".into(),
        count.to_string(),
        "--rounds".into(),
        rounds.to_string(),
        "--dir".into(),
        dir.display().to_string(),
        "--piece".into(),
        piece.to_string(),
    ];
    let objs = Objects::for_mechanism(mech, chunk, slot, &mut args)?;
    let (fifo_p2c, fifo_c2p, sock) = (dir.join("p2c"), dir.join("c2p"), dir.join("sock"));
    let listener = if mech == "unix" {
        let _ = std::fs::remove_file(&sock);
        Some(UnixListener::bind(&sock)?)
    } else {
        None
    };
    if mech == "fifo" {
        for p in [&fifo_p2c, &fifo_c2p] {
            let _ = std::fs::remove_file(p);
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)?;
        }
    }
    let mut child: Child = Command::new(&opts.exe)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    // Kill the peer if anything below fails.
    struct Reap(Option<Child>);
    impl Drop for Reap {
        fn drop(&mut self) {
            if let Some(c) = self.0.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let mut reap = Reap(Some(child));
    let attachment;
    let mut ch: Box<dyn Channel> = match mech {
        "pipe" => Box::new(Stream { rx: stdout, tx: stdin }),
        "fifo" => {
            let tx = std::fs::OpenOptions::new().write(true).open(&fifo_p2c)?;
            let rx = File::open(&fifo_c2p)?;
            Box::new(Stream { rx, tx })
        }
        "unix" => {
            let (s, _) = listener.as_ref().expect("bound").accept()?;
            let rx = s.try_clone()?;
            Box::new(Stream { rx, tx: s })
        }
        "msgq" => Box::new(Mq {
            q: objs.queue.expect("made"),
            piece,
            send_type: 1,
            recv_type: 2,
            scratch: Vec::new(),
        }),
        m if m.starts_with("shm") => {
            attachment = objs.segment.expect("made").attach::<ReadWrite>()?;
            let hs = handshake_of(m, objs.sems);
            let second = Ring::bytes(slots_for(chunk), slot);
            Box::new(ShmChannel {
                tx: Ring::new(&attachment, 0, slots_for(chunk), slot, hs, 0),
                rx: Ring::new(&attachment, second, slots_for(chunk), slot, hs, 1),
                in_place: m == "shm-inplace",
            })
        }
        other => return Err(BenchError::UnknownMechanism(other.into())),
    };
    let (secs, rtt) = measure(ch.as_mut(), chunk, count, rounds)?;
    drop(ch);
    let mut child = reap.0.take().expect("child");
    let status = child.wait()?;
    if !status.success() {
        return Err(BenchError::PeerFailed(status));
    }
    Ok((secs, rtt))
}

/// Arguments of `shmconf bench-peer` (internal).
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    #[arg(long)]
    mech: String,
    #[arg(long)]
    chunk: usize,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    rounds: usize,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    piece: usize,
    #[arg(long)]
    shm_id: Option<i32>,
    #[arg(long)]
    sem_id: Option<i32>,
    #[arg(long)]
    msq_id: Option<i32>,
    /// File-to-file mode: read this file and send it (ends with an empty slot).
    #[arg(long)]
    input: Option<PathBuf>,
}

/// The child side: connect, stream `count` stamped chunks, echo round trips.
pub fn peer(a: PeerArgs) -> Result<(), BenchError> {
    let attachment;
    let mut ch: Box<dyn Channel> = match a.mech.as_str() {
        "pipe" => Box::new(Stream {
            rx: StdioFds,
            tx: StdioFds,
        }),
        "fifo" => {
            let rx = File::open(a.dir.join("p2c"))?;
            let tx = std::fs::OpenOptions::new().write(true).open(a.dir.join("c2p"))?;
            Box::new(Stream { rx, tx })
        }
        "unix" => {
            let s = UnixStream::connect(a.dir.join("sock"))?;
            Box::new(Stream {
                rx: s.try_clone()?,
                tx: s,
            })
        }
        "msgq" => Box::new(Mq {
            q: MsgQueue::from_id(a.msq_id.ok_or(BenchError::MissingArgument("--msq-id"))?),
            piece: a.piece,
            send_type: 2,
            recv_type: 1,
            scratch: Vec::new(),
        }),
        m if m.starts_with("shm") => {
            attachment =
                Segment::from_id(a.shm_id.ok_or(BenchError::MissingArgument("--shm-id"))?).attach::<ReadWrite>()?;
            let hs = handshake_of(m, a.sem_id.map(Semaphores::from_id));
            let slot = a.chunk.max(64);
            let second = Ring::bytes(slots_for(a.chunk), slot);
            if let Some(input) = &a.input {
                // File mode: file → segment by read(2) straight into the slot.
                let ring = Ring::new(&attachment, second, slots_for(a.chunk), slot, hs, 1);
                let file = File::open(input)?;
                while ring.send_with(|at, off, room| at.read_from(off, room, &file))? > 0 {}
                return Ok(());
            }
            Box::new(ShmChannel {
                tx: Ring::new(&attachment, second, slots_for(a.chunk), slot, hs, 1),
                rx: Ring::new(&attachment, 0, slots_for(a.chunk), slot, hs, 0),
                in_place: false,
            })
        }
        other => return Err(BenchError::UnknownMechanism(other.into())),
    };
    if let Some(input) = &a.input {
        // File mode through a stream: read(2) into a buffer, write(2) it on.
        let mut file = File::open(input)?;
        let mut buf = vec![0u8; a.chunk];
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            ch.send(&buf[..n])?;
        }
    }
    let mut go = [0u8; 1];
    ch.recv(&mut go)?;
    let mut buf = pattern(a.chunk);
    for i in 0..a.count as u64 {
        stamp(&mut buf, i);
        ch.send(&buf)?;
    }
    let mut one = [0u8; 1];
    for _ in 0..a.rounds {
        ch.recv(&mut one)?;
        ch.send(&[one[0].wrapping_add(1)])?;
    }
    Ok(())
}

/// File to file: through a segment (read(2) into it, write(2) out of it: two
/// copies) and through a pipe (read, write, read, write: four).
/// Copy what the peer sends through segment `s`'s ring into `dst`, from
/// the segment straight to the file (two copies in all).
fn segment_to_file(s: &Segment, chunk: usize, dst: &File) -> Result<(), BenchError> {
    let at = s.attach::<ReadWrite>()?;
    let ring = Ring::new(
        &at,
        Ring::bytes(slots_for(chunk), chunk),
        slots_for(chunk),
        chunk,
        Handshake::Futex,
        1,
    );
    loop {
        match ring.recv_with(|at, off, len| {
            let mut done = 0;
            while done < len {
                done += at.write_to(off + done, len - done, dst)?;
            }
            Ok(len)
        }) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Copy the peer's pipe into `dst` with a plain read/write loop
/// (std::io::copy would splice, skipping copies).
fn pipe_to_file(mut rx: std::process::ChildStdout, mut dst: File, chunk: usize) -> Result<(), BenchError> {
    let mut buf = vec![0u8; chunk];
    loop {
        match std::io::Read::read(&mut rx, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => std::io::Write::write_all(&mut dst, &buf[..n])?,
            Err(e) => return Err(e.into()),
        }
    }
}

fn files(opts: &Options, dir: &Path, bytes: usize) -> Result<Vec<FileToFile>, BenchError> {
    let input = dir.join("input");
    let chunk = 1 << 20;
    {
        let mut f = File::create(&input)?;
        let block = pattern(chunk);
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk);
            std::io::Write::write_all(&mut f, &block[..n])?;
            left -= n;
        }
    }
    let mut out = Vec::new();
    for (mech, copies) in [("shm-futex", 2), ("pipe", 4)] {
        let output = dir.join(format!("output-{mech}"));
        let dst = File::create(&output)?;
        let mut args: Vec<String> = vec!["bench-peer".into(), "--mech".into(), mech.into()];
        args.extend([
            "--chunk".into(),
            chunk.to_string(),
            "--count".into(),
            "0".into(),
            "--rounds".into(),
            "0".into(),
        ]);
        args.extend([
            "--dir".into(),
            dir.display().to_string(),
            "--piece".into(),
            chunk.to_string(),
        ]);
        args.extend(["--input".into(), input.display().to_string()]);
        let mut seg = None;
        if mech.starts_with("shm") {
            let s = Segment::get(
                Key::PRIVATE,
                2 * Ring::bytes(slots_for(chunk), chunk),
                Create::IfMissing,
                0o600,
            )?;
            args.extend(["--shm-id".into(), s.id().to_string()]);
            seg = Some(s);
        }
        let t0 = Instant::now();
        let mut child = Command::new(&opts.exe).args(&args).stdout(Stdio::piped()).spawn()?;
        let result = match seg {
            Some(s) => {
                let r = segment_to_file(&s, chunk, &dst);
                let _ = s.remove();
                r
            }
            None => pipe_to_file(child.stdout.take().expect("piped"), dst, chunk),
        };
        let status = child.wait()?;
        let secs = t0.elapsed().as_secs_f64();
        result?;
        if !status.success() {
            return Err(BenchError::PeerFailed(status).in_mechanism(&format!("file-to-file {mech}")));
        }
        let same = std::fs::read(&input)? == std::fs::read(&output)?;
        if !same {
            return Err(BenchError::OutputDiffers.in_mechanism(&format!("file-to-file {mech}")));
        }
        let _ = std::fs::remove_file(&output);
        out.push(FileToFile {
            mechanism: mech.into(),
            copies,
            bytes,
            seconds: secs,
            gbps: bytes as f64 / secs / 1e9,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_catches_a_wrong_byte_or_sequence() {
        let pat = pattern(4096);
        let mut buf = pat.clone();
        stamp(&mut buf, 7);
        verify(&buf, 7, &pat).unwrap();
        assert!(verify(&buf, 8, &pat).is_err());
        buf[100] ^= 1;
        assert!(matches!(
            verify(&buf, 7, &pat),
            Err(BenchError::Corrupted { seq: 7, at: 100 })
        ));
    }
}
