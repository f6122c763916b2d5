//! Two-process channels for the benchmark: one trait, one implementation per
//! IPC mechanism. Each side of a channel is built in its own process (the
//! parent creates the kernel objects and passes their ids or paths).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};

use shmconf::sysv::{futex_wait, futex_wake, Attachment, MsgQueue, ReadWrite, Semaphores};

/// A bidirectional, message-preserving byte channel between two processes.
pub trait Channel {
    /// Send exactly `data`.
    fn send(&mut self, data: &[u8]) -> std::io::Result<()>;
    /// Receive exactly `buf.len()` bytes.
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<()>;

    /// Receive one chunk and check it is chunk `seq` of `pattern`. By default
    /// into `buf`, then compared; shared memory can compare in place.
    fn recv_verified(&mut self, buf: &mut [u8], seq: u64, pattern: &[u8]) -> std::io::Result<()> {
        self.recv(buf)?;
        super::verify(buf, seq, pattern).map_err(io_err)
    }
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Any Read + Write pair (pipes, FIFOs, a UNIX stream).
pub struct Stream<R, W> {
    pub rx: R,
    pub tx: W,
}

impl<R: Read, W: Write> Channel for Stream<R, W> {
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.tx.write_all(data)
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.rx.read_exact(buf)
    }
}

/// The child's end of the pipe pair: its stdin and stdout, unbuffered
/// (std's Stdout is line-buffered, which would scan every byte for '\n').
pub struct StdioFds;

impl Read for StdioFds {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(nix::unistd::read(std::io::stdin().as_fd(), buf)?)
    }
}

impl Write for StdioFds {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(nix::unistd::write(std::io::stdout().as_fd(), buf)?)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A SysV message queue: messages of at most `piece` bytes each way
/// (kernel.msgmax); mtype 1 goes parent→child, 2 child→parent.
pub struct Mq {
    pub q: MsgQueue,
    pub piece: usize,
    pub send_type: i64,
    pub recv_type: i64,
    pub scratch: Vec<u8>,
}

impl Channel for Mq {
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        for part in data.chunks(self.piece) {
            self.q.send(self.send_type, part, &mut self.scratch).map_err(io_err)?;
        }
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut at = 0;
        while at < buf.len() {
            let end = (at + self.piece).min(buf.len());
            at += self
                .q
                .recv(self.recv_type, &mut buf[at..end], &mut self.scratch)
                .map_err(io_err)?;
        }
        Ok(())
    }
}

/// How a ring's two sides wait for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Sleep in the kernel on the ring's counters (FUTEX_WAIT/FUTEX_WAKE).
    Futex,
    /// Spin briefly, then yield the CPU, re-checking the counters.
    SpinYield,
    /// Two SysV counting semaphores per ring (free slots, filled slots).
    Semaphore(Semaphores),
}

/// Bytes of a ring's header: head, tail, head waiters, tail waiters, padded.
const RING_HEADER: usize = 64;
/// Bytes before each slot's data: its length.
const SLOT_HEADER: usize = 8;

/// A single-producer single-consumer ring of slots inside a segment.
pub struct Ring<'a> {
    at: &'a Attachment<ReadWrite>,
    base: usize,
    slots: u32,
    slot_size: usize,
    hs: Handshake,
    /// Which semaphores of the set this ring uses (free = 2*index, filled = 2*index+1).
    sem_index: u16,
}

impl<'a> Ring<'a> {
    pub fn bytes(slots: u32, slot_size: usize) -> usize {
        RING_HEADER + slots as usize * (SLOT_HEADER + slot_size)
    }

    pub fn new(
        at: &'a Attachment<ReadWrite>,
        base: usize,
        slots: u32,
        slot_size: usize,
        hs: Handshake,
        sem_index: u16,
    ) -> Self {
        Ring {
            at,
            base,
            slots,
            slot_size,
            hs,
            sem_index,
        }
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        self.at
            .atomic_u32(self.base + 4 * i)
            .expect("ring header inside the segment")
    }

    fn slot(&self, n: u32) -> usize {
        self.base + RING_HEADER + (n % self.slots) as usize * (SLOT_HEADER + self.slot_size)
    }

    /// Block until `ready` holds, using the handshake on counter `word`.
    fn wait_until(&self, word: usize, waiters: usize, ready: impl Fn() -> bool) {
        match self.hs {
            Handshake::SpinYield => loop {
                for _ in 0..200 {
                    if ready() {
                        return;
                    }
                    std::hint::spin_loop();
                }
                std::thread::yield_now();
            },
            Handshake::Futex => loop {
                if ready() {
                    return;
                }
                let seen = self.word(word).load(Ordering::SeqCst);
                self.word(waiters).store(1, Ordering::SeqCst);
                if ready() {
                    return;
                }
                futex_wait(self.word(word), seen);
            },
            Handshake::Semaphore(_) => {}
        }
    }

    fn notify(&self, word: usize, waiters: usize) {
        if self.hs == Handshake::Futex && self.word(waiters).swap(0, Ordering::SeqCst) != 0 {
            futex_wake(self.word(word), 1);
        }
    }

    /// Produce one slot: `fill(attachment, offset, room)` writes up to `room`
    /// bytes at `offset` and returns how many.
    pub fn send_with(
        &self,
        fill: impl FnOnce(&Attachment<ReadWrite>, usize, usize) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        let (head, tail) = (0, 1);
        let h = self.word(head).load(Ordering::Relaxed);
        match self.hs {
            Handshake::Semaphore(s) => s.op(2 * self.sem_index, -1).map_err(io_err)?,
            _ => self.wait_until(tail, 3, || {
                h.wrapping_sub(self.word(tail).load(Ordering::Acquire)) < self.slots
            }),
        }
        let slot = self.slot(h);
        let n = fill(self.at, slot + SLOT_HEADER, self.slot_size)?;
        self.word_at(slot).store(n as u32, Ordering::Relaxed);
        self.word(head).store(h.wrapping_add(1), Ordering::Release);
        match self.hs {
            Handshake::Semaphore(s) => s.op(2 * self.sem_index + 1, 1).map_err(io_err)?,
            _ => self.notify(head, 2),
        }
        Ok(n)
    }

    /// Consume one slot: `drain(attachment, offset, len)`.
    pub fn recv_with<T>(
        &self,
        drain: impl FnOnce(&Attachment<ReadWrite>, usize, usize) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let (head, tail) = (0, 1);
        let t = self.word(tail).load(Ordering::Relaxed);
        match self.hs {
            Handshake::Semaphore(s) => s.op(2 * self.sem_index + 1, -1).map_err(io_err)?,
            _ => self.wait_until(head, 2, || self.word(head).load(Ordering::Acquire) != t),
        }
        let slot = self.slot(t);
        let len = self.word_at(slot).load(Ordering::Relaxed) as usize;
        let out = drain(self.at, slot + SLOT_HEADER, len)?;
        self.word(tail).store(t.wrapping_add(1), Ordering::Release);
        match self.hs {
            Handshake::Semaphore(s) => s.op(2 * self.sem_index, 1).map_err(io_err)?,
            _ => self.notify(tail, 3),
        }
        Ok(out)
    }

    fn word_at(&self, offset: usize) -> &AtomicU32 {
        self.at.atomic_u32(offset).expect("slot header inside the segment")
    }
}

/// Two rings in one segment, one per direction.
pub struct ShmChannel<'a> {
    pub tx: Ring<'a>,
    pub rx: Ring<'a>,
    /// Check received chunks in the segment instead of copying them out.
    pub in_place: bool,
}

impl Channel for ShmChannel<'_> {
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        for part in data.chunks(self.tx.slot_size) {
            self.tx.send_with(|at, off, _| {
                at.write_at(off, part).map_err(io_err)?;
                Ok(part.len())
            })?;
        }
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut at_byte = 0;
        while at_byte < buf.len() {
            let rest = &mut buf[at_byte..];
            at_byte += self.rx.recv_with(|at, off, len| {
                let len = len.min(rest.len());
                at.read_at(off, &mut rest[..len]).map_err(io_err)?;
                Ok(len)
            })?;
        }
        Ok(())
    }

    fn recv_verified(&mut self, buf: &mut [u8], seq: u64, pattern: &[u8]) -> std::io::Result<()> {
        if !self.in_place || buf.len() > self.rx.slot_size {
            self.recv(buf)?;
            return super::verify(buf, seq, pattern).map_err(io_err);
        }
        let n = buf.len().min(8);
        let ok = self.rx.recv_with(|at, off, len| {
            let stamp_ok = at.equals_at(off, &seq.to_le_bytes()[..n]).map_err(io_err)?;
            Ok(len == buf.len() && stamp_ok && at.equals_at(off + n, &pattern[n..len]).map_err(io_err)?)
        })?;
        if !ok {
            return Err(io_err(format!("chunk {seq} arrived corrupted")));
        }
        Ok(())
    }
}
