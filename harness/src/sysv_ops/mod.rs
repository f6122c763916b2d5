//! Programs of SysV operations as data (what `shmconf fuzz` generates and
//! a scenario's `program` step holds): a sequence of shared-memory operations by
//! one task, with every reference to an earlier result taken modulo what
//! exists when the operation runs, so any subsequence of a program is a
//! program too (which is what lets a divergence be shrunk by dropping
//! operations). Generation is reproducible from a seed and weighted toward
//! what makes the table interesting: keys and sizes reused, attachments
//! made before removals.

use observe::Answer;
use serde::{Deserialize, Serialize};

pub mod observe;

/// The raw keys programs use: few, so operations meet on them.
pub const KEYS: [i32; 3] = [0x5f00_0001, 0x5f00_0002, 0x5f00_0003];

/// Sizes around the boundaries that matter: SHMMIN (1), a page, the
/// tutorial's 1024, and the empty request.
pub const SIZES: [u32; 8] = [0, 1, 1024, 4095, 4096, 4097, 8192, 65536];

/// Permission bits programs ask for.
pub const MODES: [u32; 6] = [0o666, 0o600, 0o644, 0o400, 0o200, 0o000];

/// The key of a `shmget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyPick {
    /// `KEYS[n % KEYS.len()]`.
    Raw(u8),
    /// IPC_PRIVATE: always a new segment.
    Private,
}

impl KeyPick {
    pub fn raw(self) -> i32 {
        match self {
            KeyPick::Raw(n) => KEYS[n as usize % KEYS.len()],
            KeyPick::Private => 0,
        }
    }
}

/// IPC_CREAT and IPC_EXCL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreatePick {
    No,
    IfMissing,
    Exclusive,
}

/// One operation. `seg` names the n-th id a successful `shmget` of this
/// program returned (modulo their count; with none, an id no segment has);
/// `att` the n-th attachment a successful `shmat` made (modulo their count;
/// with none, or once it is detached, nothing is done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// `shmget(key, size, create | mode)`.
    Get {
        key: KeyPick,
        size: u32,
        create: CreatePick,
        mode: u32,
    },
    /// `shmat(id, NULL, read_only ? SHM_RDONLY : 0)`.
    Attach { seg: u8, read_only: bool },
    /// `shmdt` of an attachment.
    Detach { att: u8 },
    /// `len` bytes of value `byte` stored at `offset` through an attachment.
    Write { att: u8, offset: u32, len: u8, byte: u8 },
    /// `len` bytes loaded from `offset` through an attachment.
    Read { att: u8, offset: u32, len: u8 },
    /// `shmctl(id, IPC_STAT)`.
    Stat { seg: u8 },
    /// `shmctl(id, IPC_RMID)`.
    Rmid { seg: u8 },
    /// `shmctl(id, IPC_SET)` with new permission bits and a new owner and
    /// group (giving a segment away is how its owner and creator come to
    /// differ without CAP_SYS_ADMIN, which the executor does not keep).
    SetMode { seg: u8, mode: u32, owner: NewOwner },
    /// Switch the effective uid and gid: to 65534 (`other`), or back to
    /// the ones the program started with (capabilities come back with them).
    Become { other: bool },
}

/// Whom an IPC_SET makes the segment's owner (uid and gid alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NewOwner {
    /// The caller's effective ids.
    Caller,
    /// 65534, whoever calls.
    Other,
    /// The ids the executor started with.
    Start,
}

/// Every call a program makes, and every answer shmget(2), shmop(2),
/// shmctl(2) and seteuid(2) give for it (errors the man pages list, then
/// the executor's own guards), as the fuzzer's coverage counts them: an
/// answer here that no program reached is a corner never exercised.
pub const CALLS: &[(&str, &[Answer])] = &[
    (
        "shmget",
        &[
            Answer::Id,
            Answer::Errno(libc::EACCES),
            Answer::Errno(libc::EEXIST),
            Answer::Errno(libc::EINVAL),
            Answer::Errno(libc::ENFILE),
            Answer::Errno(libc::ENOENT),
            Answer::Errno(libc::ENOMEM),
            Answer::Errno(libc::ENOSPC),
            Answer::Errno(libc::EPERM),
        ],
    ),
    (
        "shmat",
        &[
            Answer::Attached,
            Answer::Errno(libc::EACCES),
            Answer::Errno(libc::EIDRM),
            Answer::Errno(libc::EINVAL),
            Answer::Errno(libc::ENOMEM),
        ],
    ),
    (
        "shmdt",
        &[Answer::Done, Answer::Errno(libc::EINVAL), Answer::NotAttached],
    ),
    (
        "store",
        &[Answer::Done, Answer::OutOfBounds, Answer::ReadOnly, Answer::NotAttached],
    ),
    (
        "load",
        &[
            Answer::BytesStoredEarlier,
            Answer::ZeroBytes,
            Answer::OutOfBounds,
            Answer::NotAttached,
        ],
    ),
    (
        "IPC_STAT",
        &[
            Answer::Stat,
            Answer::StatOfRemoved,
            Answer::Errno(libc::EACCES),
            Answer::Errno(libc::EIDRM),
            Answer::Errno(libc::EINVAL),
            Answer::Errno(libc::EOVERFLOW),
        ],
    ),
    (
        "IPC_RMID",
        &[
            Answer::Done,
            Answer::Errno(libc::EIDRM),
            Answer::Errno(libc::EINVAL),
            Answer::Errno(libc::EPERM),
        ],
    ),
    (
        "IPC_SET",
        &[
            Answer::Done,
            Answer::Errno(libc::EACCES),
            Answer::Errno(libc::EIDRM),
            Answer::Errno(libc::EINVAL),
            Answer::Errno(libc::EPERM),
        ],
    ),
    ("seteuid/setegid (other)", &[Answer::Done, Answer::Errno(libc::EPERM)]),
    ("seteuid/setegid (back)", &[Answer::Done, Answer::Errno(libc::EPERM)]),
];

impl Op {
    /// The call it makes, as [`CALLS`] names it.
    pub fn call(&self) -> &'static str {
        match self {
            Op::Get { .. } => "shmget",
            Op::Attach { .. } => "shmat",
            Op::Detach { .. } => "shmdt",
            Op::Write { .. } => "store",
            Op::Read { .. } => "load",
            Op::Stat { .. } => "IPC_STAT",
            Op::Rmid { .. } => "IPC_RMID",
            Op::SetMode { .. } => "IPC_SET",
            Op::Become { other: true } => "seteuid/setegid (other)",
            Op::Become { other: false } => "seteuid/setegid (back)",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Op::Get {
                key,
                size,
                create,
                mode,
            } => {
                let key = match key {
                    KeyPick::Private => "IPC_PRIVATE".to_string(),
                    k => format!("{:#010x}", k.raw() as u32),
                };
                let create = match create {
                    CreatePick::No => "",
                    CreatePick::IfMissing => "|IPC_CREAT",
                    CreatePick::Exclusive => "|IPC_CREAT|IPC_EXCL",
                };
                write!(f, "shmget({key}, {size}, 0{mode:o}{create})")
            }
            Op::Attach { seg, read_only } => {
                write!(f, "shmat(id#{seg}{})", if read_only { ", SHM_RDONLY" } else { "" })
            }
            Op::Detach { att } => write!(f, "shmdt(att#{att})"),
            Op::Write { att, offset, len, byte } => write!(f, "write {len} x {byte:#04x} at att#{att}+{offset}"),
            Op::Read { att, offset, len } => write!(f, "read {len} at att#{att}+{offset}"),
            Op::Stat { seg } => write!(f, "shmctl(id#{seg}, IPC_STAT)"),
            Op::Rmid { seg } => write!(f, "shmctl(id#{seg}, IPC_RMID)"),
            Op::SetMode { seg, mode, owner } => {
                write!(f, "shmctl(id#{seg}, IPC_SET, 0{mode:o}")?;
                match owner {
                    NewOwner::Caller => write!(f, ")"),
                    NewOwner::Other => write!(f, ", owner 65534)"),
                    NewOwner::Start => write!(f, ", owner as at the start)"),
                }
            }
            Op::Become { other: true } => write!(f, "seteuid/setegid(65534)"),
            Op::Become { other: false } => write!(f, "seteuid/setegid back to the start"),
        }
    }
}

/// An operation written as [`Op`]'s `Display` prints it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseOpError {
    #[error("{text:?} is not an operation: expected {OP_FORMS}")]
    Unknown { text: String },
    #[error("{text:?}: {what}")]
    Bad { text: String, what: String },
}

/// The forms an operation is written in (scenario files, reports).
pub const OP_FORMS: &str = "shmget(KEY, SIZE, 0MODE[|IPC_CREAT[|IPC_EXCL]]) with KEY IPC_PRIVATE, \
0x5f000001, 0x5f000002 or 0x5f000003; shmat(id#N[, SHM_RDONLY]); shmdt(att#N); write LEN x 0xBB at \
att#N+OFFSET; read LEN at att#N+OFFSET; shmctl(id#N, IPC_STAT|IPC_RMID); shmctl(id#N, IPC_SET, 0MODE); \
seteuid/setegid(65534); seteuid/setegid back to the start";

impl std::str::FromStr for Op {
    type Err = ParseOpError;

    /// The inverse of `Display`: `op.to_string().parse() == Ok(op)`.
    fn from_str(text: &str) -> Result<Op, ParseOpError> {
        let p = OpText(text);
        let t = text.trim();
        let call = |name: &str| t.strip_prefix(name).and_then(|r| r.strip_suffix(')'));
        if let Some(args) = call("shmget(") {
            return p.shmget(args);
        }
        if let Some(args) = call("shmat(") {
            return match args.split_once(',') {
                None => Ok(Op::Attach {
                    seg: p.id(args)?,
                    read_only: false,
                }),
                Some((seg, flag)) if flag.trim() == "SHM_RDONLY" => Ok(Op::Attach {
                    seg: p.id(seg)?,
                    read_only: true,
                }),
                Some(_) => Err(p.bad("shmat's only flag is SHM_RDONLY")),
            };
        }
        if let Some(a) = call("shmdt(") {
            return Ok(Op::Detach { att: p.att(a)? });
        }
        if let Some(args) = call("shmctl(") {
            return p.shmctl(args);
        }
        if let Some(rest) = t.strip_prefix("write ") {
            return p.write(rest);
        }
        if let Some(rest) = t.strip_prefix("read ") {
            let (len, at) = rest
                .split_once(" at ")
                .ok_or_else(|| p.bad("expected read LEN at att#N+OFFSET"))?;
            let (att, offset) = p.place(at)?;
            return Ok(Op::Read {
                att,
                offset,
                len: p.small(len, "length")?,
            });
        }
        match t {
            "seteuid/setegid(65534)" => Ok(Op::Become { other: true }),
            "seteuid/setegid back to the start" => Ok(Op::Become { other: false }),
            _ => Err(ParseOpError::Unknown { text: text.to_string() }),
        }
    }
}

/// An operation's text being read, for its parts and errors that quote it.
struct OpText<'a>(&'a str);

impl OpText<'_> {
    fn bad(&self, what: &str) -> ParseOpError {
        ParseOpError::Bad {
            text: self.0.to_string(),
            what: what.to_string(),
        }
    }

    fn number(&self, s: &str, what: &str) -> Result<u32, ParseOpError> {
        s.trim()
            .parse::<u32>()
            .map_err(|_| self.bad(&format!("{what} {:?} is not a number", s.trim())))
    }

    fn small(&self, s: &str, what: &str) -> Result<u8, ParseOpError> {
        s.trim()
            .parse::<u8>()
            .map_err(|_| self.bad(&format!("{what} {:?} is not a number from 0 to 255", s.trim())))
    }

    fn mode(&self, s: &str) -> Result<u32, ParseOpError> {
        let s = s.trim();
        match s.strip_prefix('0').map(|m| if m.is_empty() { "0" } else { m }) {
            Some(m) => match u32::from_str_radix(m, 8) {
                Ok(v) if v <= 0o777 => Ok(v),
                _ => Err(self.bad(&format!("mode {s:?} is not octal permission bits (0 to 0777)"))),
            },
            None => Err(self.bad(&format!("mode {s:?} must be octal with a leading 0, e.g. 0600"))),
        }
    }

    fn id(&self, s: &str) -> Result<u8, ParseOpError> {
        match s.trim().strip_prefix("id#") {
            Some(n) => self.small(n, "id#"),
            None => Err(self.bad(&format!("{:?} must be id#N (the N-th id a shmget returned)", s.trim()))),
        }
    }

    fn att(&self, s: &str) -> Result<u8, ParseOpError> {
        match s.trim().strip_prefix("att#") {
            Some(n) => self.small(n, "att#"),
            None => Err(self.bad(&format!(
                "{:?} must be att#N (the N-th attachment a shmat made)",
                s.trim()
            ))),
        }
    }

    /// "att#N+OFFSET"
    fn place(&self, s: &str) -> Result<(u8, u32), ParseOpError> {
        let (a, offset) = s.split_once('+').ok_or_else(|| self.bad("expected att#N+OFFSET"))?;
        Ok((self.att(a)?, self.number(offset, "offset")?))
    }

    /// "KEY, SIZE, 0MODE[|IPC_CREAT[|IPC_EXCL]]"
    fn shmget(&self, args: &str) -> Result<Op, ParseOpError> {
        let parts: Vec<&str> = args.split(',').collect();
        let [key, size, flags] = parts[..] else {
            return Err(self.bad("shmget takes KEY, SIZE, FLAGS"));
        };
        let key = match key.trim() {
            "IPC_PRIVATE" => KeyPick::Private,
            k => {
                let raw = k
                    .strip_prefix("0x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or_else(|| self.bad(&format!("key {k:?} is not IPC_PRIVATE or a hex key")))?;
                let index = KEYS.iter().position(|known| *known as u32 == raw).ok_or_else(|| {
                    self.bad(&format!(
                        "key {k:?} is not one of the programs' keys (0x5f000001, 0x5f000002, 0x5f000003)"
                    ))
                })?;
                KeyPick::Raw(index as u8)
            }
        };
        let mut flags = flags.split('|');
        let mode = self.mode(flags.next().unwrap_or_default())?;
        let rest: Vec<&str> = flags.map(str::trim).collect();
        let create = match rest[..] {
            [] => CreatePick::No,
            ["IPC_CREAT"] => CreatePick::IfMissing,
            ["IPC_CREAT", "IPC_EXCL"] => CreatePick::Exclusive,
            _ => return Err(self.bad("flags after the mode are |IPC_CREAT or |IPC_CREAT|IPC_EXCL")),
        };
        Ok(Op::Get {
            key,
            size: self.number(size, "size")?,
            create,
            mode,
        })
    }

    /// "id#N, IPC_STAT | IPC_RMID | IPC_SET, 0MODE[, owner ...]"
    fn shmctl(&self, args: &str) -> Result<Op, ParseOpError> {
        let parts: Vec<&str> = args.split(',').map(str::trim).collect();
        match parts[..] {
            [seg, "IPC_STAT"] => Ok(Op::Stat { seg: self.id(seg)? }),
            [seg, "IPC_RMID"] => Ok(Op::Rmid { seg: self.id(seg)? }),
            [seg, "IPC_SET", m] => Ok(Op::SetMode {
                seg: self.id(seg)?,
                mode: self.mode(m)?,
                owner: NewOwner::Caller,
            }),
            [seg, "IPC_SET", m, to] => Ok(Op::SetMode {
                seg: self.id(seg)?,
                mode: self.mode(m)?,
                owner: match to {
                    "owner 65534" => NewOwner::Other,
                    "owner as at the start" => NewOwner::Start,
                    _ => return Err(self.bad("IPC_SET's owner is \"owner 65534\" or \"owner as at the start\"")),
                },
            }),
            _ => Err(self
                .bad("shmctl takes id#N, IPC_STAT | IPC_RMID | IPC_SET, 0MODE[, owner 65534 | owner as at the start]")),
        }
    }

    /// "LEN x 0xBB at att#N+OFFSET"
    fn write(&self, rest: &str) -> Result<Op, ParseOpError> {
        let (len, rest) = rest
            .split_once(" x ")
            .ok_or_else(|| self.bad("expected write LEN x 0xBB at att#N+OFFSET"))?;
        let (byte, at) = rest
            .split_once(" at ")
            .ok_or_else(|| self.bad("expected write LEN x 0xBB at att#N+OFFSET"))?;
        let byte = byte
            .trim()
            .strip_prefix("0x")
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.bad(&format!("byte {:?} is not 0x00 to 0xff", byte.trim())))?;
        let (att, offset) = self.place(at)?;
        Ok(Op::Write {
            att,
            offset,
            len: self.small(len, "length")?,
            byte,
        })
    }
}

/// A generated program and the seed it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub seed: u64,
    pub ops: Vec<Op>,
}

/// splitmix64: small, seedable, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The program of `seed`: `ops` operations.
pub fn generate(seed: u64, ops: usize) -> Program {
    let mut rng = Rng(seed);
    let mut sizes_used: Vec<u32> = Vec::new();
    let mut gets = 0u8;
    let mut attaches = 0u8;
    // Whether the last Become switched to the other uid.
    let mut other = false;
    let mut out = Vec::with_capacity(ops);
    for _ in 0..ops {
        // Early on, mostly make segments; later, mostly use them.
        let weights: [(u64, u8); 9] = [
            (if gets < 2 { 40 } else { 18 }, 0),
            (if gets > 0 { 20 } else { 3 }, 1),
            (if attaches > 0 { 12 } else { 1 }, 2),
            (if attaches > 0 { 10 } else { 1 }, 3),
            (if attaches > 0 { 10 } else { 1 }, 4),
            (8, 5),
            (if gets > 0 { 12 } else { 2 }, 6),
            (4, 7),
            // Another uid meets the segments made so far.
            (if gets > 0 { 6 } else { 1 }, 8),
        ];
        let total: u64 = weights.iter().map(|(w, _)| w).sum();
        let mut roll = rng.below(total);
        let mut kind = 0;
        for (w, k) in weights {
            if roll < w {
                kind = k;
                break;
            }
            roll -= w;
        }
        let seg = |rng: &mut Rng| (rng.below(u64::from(gets.max(1)) + 1)) as u8;
        let att = |rng: &mut Rng| (rng.below(u64::from(attaches.max(1)) + 1)) as u8;
        let op = match kind {
            0 => {
                let size = if !sizes_used.is_empty() && rng.chance(50) {
                    let base = rng.pick(&sizes_used);
                    match rng.below(3) {
                        0 => base.saturating_sub(1),
                        1 => base,
                        _ => base.saturating_add(1),
                    }
                } else {
                    rng.pick(&SIZES)
                };
                sizes_used.push(size);
                gets = gets.saturating_add(1);
                Op::Get {
                    key: if rng.chance(12) {
                        KeyPick::Private
                    } else {
                        KeyPick::Raw(rng.below(KEYS.len() as u64) as u8)
                    },
                    size,
                    create: rng.pick(&[
                        CreatePick::IfMissing,
                        CreatePick::IfMissing,
                        CreatePick::No,
                        CreatePick::Exclusive,
                    ]),
                    mode: rng.pick(&MODES),
                }
            }
            1 => {
                attaches = attaches.saturating_add(1);
                Op::Attach {
                    seg: seg(&mut rng),
                    read_only: rng.chance(30),
                }
            }
            2 => Op::Detach { att: att(&mut rng) },
            3 => {
                let offset = offset(&mut rng, &sizes_used);
                Op::Write {
                    att: att(&mut rng),
                    offset,
                    len: 1 + rng.below(24) as u8,
                    byte: 1 + rng.below(254) as u8,
                }
            }
            4 => {
                let offset = offset(&mut rng, &sizes_used);
                Op::Read {
                    att: att(&mut rng),
                    offset,
                    len: 1 + rng.below(24) as u8,
                }
            }
            5 => Op::Stat { seg: seg(&mut rng) },
            6 => Op::Rmid { seg: seg(&mut rng) },
            7 => Op::SetMode {
                seg: seg(&mut rng),
                mode: rng.pick(&MODES),
                owner: rng.pick(&[NewOwner::Caller, NewOwner::Caller, NewOwner::Other, NewOwner::Start]),
            },
            _ => {
                other = !other;
                Op::Become { other }
            }
        };
        out.push(op);
    }
    Program { seed, ops: out }
}

/// An offset near the start or the end of a size the program used.
fn offset(rng: &mut Rng, sizes: &[u32]) -> u32 {
    let size = if sizes.is_empty() { 1024 } else { rng.pick(sizes) };
    match rng.below(4) {
        0 => 0,
        1 => rng.below(u64::from(size.max(1))) as u32,
        2 => size.saturating_sub(1 + rng.below(8) as u32),
        _ => size.saturating_sub(4).saturating_add(rng.below(8) as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_program_every_time_and_seeds_differ() {
        assert_eq!(generate(7, 30), generate(7, 30));
        assert_ne!(generate(7, 30).ops, generate(8, 30).ops);
    }

    #[test]
    fn generated_programs_use_every_kind_of_operation_and_reuse_keys() {
        let mut kinds = std::collections::HashSet::new();
        let mut raw_gets = 0;
        for seed in 0..50 {
            for op in generate(seed, 20).ops {
                kinds.insert(std::mem::discriminant(&op));
                if let Op::Get {
                    key: KeyPick::Raw(_), ..
                } = op
                {
                    raw_gets += 1;
                }
            }
        }
        assert_eq!(kinds.len(), 9, "every operation kind is generated");
        assert!(raw_gets > 3 * KEYS.len(), "keys are met again: {raw_gets} raw-key gets");
    }

    #[test]
    fn every_generated_operation_reads_back_from_its_text() {
        for seed in 0..300 {
            for op in generate(seed, 30).ops {
                let text = op.to_string();
                assert_eq!(text.parse::<Op>(), Ok(op), "{text}");
            }
        }
    }

    #[rstest::rstest]
    #[case::unknown_call("shmfoo(1)", "is not an operation")]
    #[case::unknown_key("shmget(0x12345678, 64, 0600)", "not one of the programs' keys")]
    #[case::decimal_mode("shmget(IPC_PRIVATE, 64, 600)", "leading 0")]
    #[case::mode_too_big("shmget(IPC_PRIVATE, 64, 01777)", "permission bits")]
    #[case::excl_alone("shmget(IPC_PRIVATE, 64, 0600|IPC_EXCL)", "IPC_CREAT")]
    #[case::size_not_a_number("shmget(IPC_PRIVATE, big, 0600)", "size")]
    #[case::bad_id("shmat(7)", "id#N")]
    #[case::bad_flag("shmat(id#0, SHM_RND)", "SHM_RDONLY")]
    #[case::id_too_big("shmctl(id#256, IPC_RMID)", "0 to 255")]
    #[case::bad_byte("write 3 x 0x1ff at att#0+0", "0x00 to 0xff")]
    #[case::no_offset("read 3 at att#0", "att#N+OFFSET")]
    fn a_mistyped_operation_says_what_is_wrong(#[case] text: &str, #[case] says: &str) {
        let e = text.parse::<Op>().unwrap_err().to_string();
        assert!(e.contains(says), "{text}: {e}");
    }

    #[test]
    fn a_program_round_trips_through_json() {
        let p = generate(3, 12);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Program>(&text).unwrap(), p);
    }
}
