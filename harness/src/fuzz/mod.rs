//! `shmconf fuzz`: generative differential conformance. Programs are
//! generated from seeds (`crate::sysv_ops`), executed by a program of ours
//! in a fresh IPC namespace ([`exec`], `shmconf fuzz-exec`), and every
//! result and the table after every operation are held against a reference
//! model that predicts them (`crate::model::program`). On Linux a disagreement is a bug in the
//! model or in the kernel; elsewhere (a sandbox's kernel) it is a
//! divergence. Each one is shrunk to the fewest operations that still show
//! it, and reported with the command that replays it.

pub mod exec;
pub mod known;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::model::program::{judge, read_report, Divergence, Garbled};
use crate::sysv_ops::observe::{self, Answer, Hello, Observation};
use crate::sysv_ops::{self as program, NewOwner, Op, Program};

/// Why a program could not be run (no verdict).
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("each program runs in a new IPC namespace, which this process cannot make: {0}")]
    Namespace(nix::Error),
    #[error("cannot start the executor {exe}: {error}")]
    Start { exe: PathBuf, error: std::io::Error },
    #[error("the executor of program {seed} ended with {status}: {stderr}")]
    Executor {
        seed: u64,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("the executor of program {seed} said something that is not an observation: {line:?}: {error}")]
    Garbled {
        seed: u64,
        line: String,
        error: serde_json::Error,
    },
    #[error("the executor's thread panicked")]
    Panicked,
    #[error("{path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
}

/// Run a program on this machine's kernel: `exe fuzz-exec` in a new IPC
/// namespace of its own (made by a thread that exists for it, so the
/// namespace and every segment in it die with the executor).
pub fn execute(target: &Target, exe: &Path, program: &Program) -> Result<(Hello, Vec<Observation>), FuzzError> {
    let input = serde_json::to_string(program).unwrap_or_default();
    let output = std::thread::scope(|s| {
        s.spawn(|| -> Result<std::process::Output, FuzzError> {
            // Locally, a new IPC namespace made by this thread; a sandbox
            // brings its own (and its own kernel).
            let mut command = match target {
                Target::Local => {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).map_err(FuzzError::Namespace)?;
                    Command::new(exe)
                }
                Target::Gvisor { runsc } => {
                    let mut c = Command::new(runsc);
                    c.args(["--network=none", "do"]).arg(exe);
                    c
                }
                Target::Docker { docker, image } => {
                    let mut c = Command::new(docker);
                    c.args(DOCKER_RUN).arg(image);
                    c
                }
            };
            // A plain spawn (posix_spawn): it copies none of this process's
            // mappings, so no observer's attachment is inherited.
            let mut child = command
                .arg(EXEC_SUBCOMMAND)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|error| FuzzError::Start {
                    exe: target.program(exe),
                    error,
                })?;
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(input.as_bytes()).and_then(|()| stdin.write_all(b"\n"));
            }
            child.wait_with_output().map_err(|error| FuzzError::Start {
                exe: target.program(exe),
                error,
            })
        })
        .join()
        .map_err(|_| FuzzError::Panicked)
        .and_then(|output| output)
    })?;
    // The executor ended before it said what it was asked (its stderr says why).
    let died = || FuzzError::Executor {
        seed: program.seed,
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr)
            .trim()
            .chars()
            .take(500)
            .collect(),
    };
    let (hello, observed) = match read_report(&output.stdout) {
        Ok(Some(report)) => report,
        Ok(None) => return Err(died()),
        Err(Garbled { line, error }) => {
            return Err(FuzzError::Garbled {
                seed: program.seed,
                line,
                error,
            })
        }
    };
    if !output.status.success() && observed.len() < program.ops.len() {
        return Err(died());
    }
    Ok((hello, observed))
}

/// Make a program smaller while `still` holds, until nothing more can go:
/// drop operations (halves, then quarters, down to single ones; references
/// are taken modulo what exists, so every subsequence is a program), then
/// point references at earlier results (smaller numbers), which can let
/// more operations go; repeated until neither changes anything.
pub fn shrink(program: &Program, still: &mut dyn FnMut(&Program) -> bool) -> Program {
    let mut best = program.clone();
    loop {
        let mut changed = false;
        let mut chunk = best.ops.len().div_ceil(2).max(1);
        loop {
            let mut i = 0;
            while i < best.ops.len() {
                let end = (i + chunk).min(best.ops.len());
                let candidate = Program {
                    seed: best.seed,
                    ops: best.ops[..i].iter().chain(&best.ops[end..]).copied().collect(),
                };
                if still(&candidate) {
                    best = candidate;
                    changed = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        for i in 0..best.ops.len() {
            for simpler in simpler_references(best.ops[i]) {
                let mut candidate = best.clone();
                candidate.ops[i] = simpler;
                if still(&candidate) {
                    best = candidate;
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            return best;
        }
    }
}

/// The operation with its reference to an earlier result made smaller
/// (0 first, then one less): each is strictly smaller, so shrinking ends.
fn simpler_references(op: Op) -> Vec<Op> {
    let smaller = |n: u8| -> Vec<u8> {
        match n {
            0 => vec![],
            1 => vec![0],
            n => vec![0, n - 1],
        }
    };
    match op {
        Op::Attach { seg, read_only } => smaller(seg)
            .into_iter()
            .map(|seg| Op::Attach { seg, read_only })
            .collect(),
        Op::Detach { att } => smaller(att).into_iter().map(|att| Op::Detach { att }).collect(),
        Op::Write { att, offset, len, byte } => smaller(att)
            .into_iter()
            .map(|att| Op::Write { att, offset, len, byte })
            .collect(),
        Op::Read { att, offset, len } => smaller(att)
            .into_iter()
            .map(|att| Op::Read { att, offset, len })
            .collect(),
        Op::Stat { seg } => smaller(seg).into_iter().map(|seg| Op::Stat { seg }).collect(),
        Op::Rmid { seg } => smaller(seg).into_iter().map(|seg| Op::Rmid { seg }).collect(),
        Op::SetMode { seg, mode, owner } => smaller(seg)
            .into_iter()
            .map(|seg| Op::SetMode { seg, mode, owner })
            .chain((owner != NewOwner::Caller).then_some(Op::SetMode {
                seg,
                mode,
                owner: NewOwner::Caller,
            }))
            .collect(),
        Op::Get { .. } | Op::Become { .. } => vec![],
    }
}

/// The executor's subcommand (of this binary, or of the image's).
const EXEC_SUBCOMMAND: &str = "fuzz-exec";

/// `docker run` for one program: a container of its own (its own IPC
/// namespace, Docker's default), removed when the executor ends (it ends
/// by itself: its input is one bounded program), labelled so CI finds any
/// left; confined as the container backend confines programs (no network,
/// bounded processes and memory, no privilege gained) except for the
/// executor's three capabilities (`exec::EXECUTOR_CAPABILITIES`: the
/// executor drops every other at its start), which a program step keeps.
const DOCKER_RUN: &[&str] = &[
    "run",
    "--rm",
    "-i",
    "--network=none",
    "--ipc=private",
    "--label=io.shmconf.role=fuzz",
    "--cap-drop=ALL",
    "--cap-add=IPC_OWNER",
    "--cap-add=SETUID",
    "--cap-add=SETGID",
    "--security-opt=no-new-privileges",
    "--pids-limit=16",
    "--memory=268435456",
    "--memory-swap=268435456",
    "--log-driver=none",
];

/// Where the programs run: this machine's kernel (a new IPC namespace
/// each), gVisor's (`runsc do`: a new sandbox each, its own kernel), or a
/// new Docker container each (the default runtime, runc: the machine's
/// kernel behind the engine's namespaces, capabilities and seccomp profile),
/// whose image carries the executor (`shmconf fuzz-exec`, as the suite's
/// image does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local,
    Gvisor { runsc: PathBuf },
    Docker { docker: PathBuf, image: String },
}

impl Target {
    /// The program that is started for each executor.
    fn program(&self, exe: &Path) -> PathBuf {
        match self {
            Target::Local => exe.to_path_buf(),
            Target::Gvisor { runsc } => runsc.clone(),
            Target::Docker { docker, .. } => docker.clone(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Gvisor { .. } => "gvisor",
            Target::Docker { .. } => "docker",
        }
    }
}

/// What a fuzz run is asked to do.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// The `shmconf` binary that serves `fuzz-exec`.
    pub exe: PathBuf,
    /// Program i has seed `seed + i`.
    pub seed: u64,
    pub programs: u64,
    /// Operations per program.
    pub ops: usize,
    /// Where each divergence's shrunk program goes, as a scenario file
    /// (seed-N.toml), if anywhere.
    pub out: Option<PathBuf>,
    /// The target's known kinds of divergence (`--known`): only another
    /// kind fails the run.
    pub known: known::Known,
    pub target: Target,
    /// Stop starting programs after this long (the count then depends on
    /// the machine, and the report says the clock stopped it).
    pub time: Option<std::time::Duration>,
}

/// A divergence found, and the smallest program that still shows it.
#[derive(Debug, Clone)]
pub struct Found {
    pub seed: u64,
    /// Its first divergence (numbered as in the generated program).
    pub first: Divergence,
    /// Operations of the generated program (0-based) left out before it
    /// showed: each diverged first, in a kind reported earlier.
    pub dropped: Vec<usize>,
    pub shrunk: Program,
    pub shrunk_divergence: Divergence,
    /// Later programs whose first divergence was of the same kind (not
    /// shrunk again).
    pub also: Vec<u64>,
}

/// Observations where the kernel's listing of its segments fell short of
/// its count (the table then read by id), and the first one.
#[derive(Debug, Clone, Default)]
pub struct ListingShortfalls {
    pub observations: usize,
    /// (seed, operation index, operation, the listing, the model's live
    /// segments there).
    pub first: Option<(u64, usize, Op, observe::Listing, usize)>,
    /// Of those, the ones where SHM_INFO's count is not the model's live
    /// segments (a count that does not go down), and the first.
    pub count_off: usize,
    pub first_count_off: Option<(u64, usize, Op, observe::Listing, usize)>,
    /// The first such program, shrunk while some listing still falls short.
    pub shrunk: Option<Program>,
}

#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    pub programs: u64,
    pub operations: usize,
    pub found: Vec<Found>,
    /// How many answers of each kind the kernel gave: what was checked.
    pub answers: BTreeMap<Answer, usize>,
    /// The same per call: (call, answer kind) -> times.
    pub coverage: BTreeMap<(&'static str, Answer), usize>,
    pub listing: ListingShortfalls,
    /// `--time` ran out before `programs` programs had run.
    pub stopped_by_time: bool,
}

impl FuzzReport {
    /// Anything where the target differs from the model (or from itself).
    pub fn diverged(&self) -> bool {
        !self.found.is_empty() || self.listing.observations > 0
    }

    /// The kinds of divergence `known` does not list (the listing's
    /// shortfall counts as one): what fails a run.
    pub fn unexpected(&self, known: &known::Known) -> usize {
        let kinds = self.found.iter().filter(|f| known.of(f.first.kind()).is_none()).count();
        kinds + usize::from(self.listing.observations > 0 && known.listing.is_none())
    }
}

/// The coverage table: every call and every answer it can give, with how
/// many times the programs reached it (0: never exercised), then answers
/// met that the list does not name.
pub fn render_coverage(report: &FuzzReport) -> String {
    let mut out = String::from("| call | answer | reached |\n| --- | --- | ---: |\n");
    let mut never = 0;
    for (call, answers) in program::CALLS {
        for answer in *answers {
            let n = report.coverage.get(&(*call, *answer)).copied().unwrap_or(0);
            never += usize::from(n == 0);
            out.push_str(&format!(
                "| {call} | {answer} | {} |\n",
                if n == 0 { "never".into() } else { n.to_string() }
            ));
        }
    }
    for ((call, answer), n) in &report.coverage {
        let listed = program::CALLS.iter().any(|(c, a)| c == call && a.contains(answer));
        if !listed {
            out.push_str(&format!("| {call} | {answer} (not in the man pages' list) | {n} |\n"));
        }
    }
    let total: usize = program::CALLS.iter().map(|(_, a)| a.len()).sum();
    out.push_str(&format!(
        "\n{} of {total} answers reached; {never} never\n",
        total - never
    ));
    out
}

/// How many operations of one program are left out, one at a time, to see
/// past divergences of kinds already reported.
pub const PAST_KNOWN: usize = 3;

/// Generate, execute, judge and shrink `opts.programs` programs.
pub fn fuzz(opts: &FuzzOptions) -> Result<FuzzReport, FuzzError> {
    let mut report = FuzzReport::default();
    let start = std::time::Instant::now();
    for i in 0..opts.programs {
        if crate::interrupt::interrupted() {
            break;
        }
        if opts.time.is_some_and(|t| start.elapsed() >= t) {
            report.stopped_by_time = true;
            break;
        }
        let program = program::generate(opts.seed.wrapping_add(i), opts.ops);
        take_program(&mut report, program, opts, &mut |p: &Program| {
            execute(&opts.target, &opts.exe, p)
        })?;
    }
    Ok(report)
}

/// What runs a program and reports what it observed (the target's
/// executor; a simulated kernel in tests).
type Run<'a> = dyn FnMut(&Program) -> Result<(Hello, Vec<Observation>), FuzzError> + 'a;

/// Count what each call answered, and where the listing fell short.
fn count_observed(report: &mut FuzzReport, program: &Program, hello: Hello, observed: &[Observation]) {
    // Stepped along with the observations: its live segments after each.
    let mut model = crate::model::program::predict::Model::new(hello);
    for (index, obs) in observed.iter().enumerate() {
        if let Some(op) = program.ops.get(index) {
            model.apply(op);
        }
        let kind = obs.outcome.answer();
        if let Some(op) = program.ops.get(index) {
            *report.coverage.entry((op.call(), kind)).or_default() += 1;
        }
        *report.answers.entry(kind).or_default() += 1;
        if let (Some(listing), Some(op)) = (obs.listing, program.ops.get(index)) {
            report.listing.observations += 1;
            let live = model.table().len();
            report
                .listing
                .first
                .get_or_insert((program.seed, index, *op, listing, live));
            if usize::try_from(listing.counted).ok() != Some(live) {
                report.listing.count_off += 1;
                report
                    .listing
                    .first_count_off
                    .get_or_insert((program.seed, index, *op, listing, live));
            }
        }
    }
}

/// Shrink the first program whose listing falls short, and write it.
fn take_listing(
    report: &mut FuzzReport,
    program: &Program,
    opts: &FuzzOptions,
    run: &mut Run,
) -> Result<(), FuzzError> {
    let shrunk = shrink_listing(program, run)?;
    if let Some(dir) = &opts.out {
        let what = "the kernel does not list every segment it counts (IPC_INFO or SHM_INFO against SHM_STAT)";
        write_scenario(
            dir,
            &format!("seed-{}-listing.toml", program.seed),
            what,
            program.seed,
            &shrunk,
            opts,
        )?;
    }
    report.listing.shrunk = Some(shrunk);
    Ok(())
}

/// A program's first divergence of a kind not reported yet.
struct NewKind {
    /// The program as run (the generated one, less `dropped`).
    program: Program,
    first: Divergence,
    /// The generated operations' indexes that `program` kept.
    kept: Vec<usize>,
    /// Those left out, each a divergence of a known kind.
    dropped: Vec<usize>,
}

/// The program's first divergence of a kind not reported yet, looking past
/// known kinds: a program whose first divergence is of a kind already
/// reported is run again without that operation (a subsequence is a
/// program), up to PAST_KNOWN times, since a kernel that differs in a
/// common way would otherwise hide every rarer way behind it.
fn first_new_kind(
    report: &mut FuzzReport,
    mut program: Program,
    mut verdict: Result<usize, Divergence>,
    run: &mut Run,
) -> Result<Option<NewKind>, FuzzError> {
    let mut kept: Vec<usize> = (0..program.ops.len()).collect();
    let mut dropped: Vec<usize> = Vec::new();
    loop {
        let Err(first) = verdict else {
            return Ok(None);
        };
        let Some(known) = report.found.iter_mut().find(|f| f.first.kind() == first.kind()) else {
            return Ok(Some(NewKind {
                program,
                first,
                kept,
                dropped,
            }));
        };
        if dropped.is_empty() {
            known.also.push(program.seed);
        }
        if dropped.len() == PAST_KNOWN {
            return Ok(None);
        }
        dropped.push(kept.remove(first.index));
        program.ops.remove(first.index);
        let (hello, observed) = run(&program)?;
        verdict = judge(&program, hello, &observed);
    }
}

/// Run one program, count what it reached, judge it (past known kinds of
/// divergence), and shrink and record a new kind.
fn take_program(report: &mut FuzzReport, program: Program, opts: &FuzzOptions, run: &mut Run) -> Result<(), FuzzError> {
    let (hello, observed) = run(&program)?;
    report.programs += 1;
    report.operations += program.ops.len();
    count_observed(report, &program, hello, &observed);
    if report.listing.shrunk.is_none() && observed.iter().any(|o| o.listing.is_some()) {
        take_listing(report, &program, opts, run)?;
    }
    let verdict = judge(&program, hello, &observed);
    let Some(NewKind {
        program,
        first,
        kept,
        dropped,
    }) = first_new_kind(report, program, verdict, run)?
    else {
        return Ok(());
    };
    let kind = first.kind();
    let mut error = None;
    let mut still = |candidate: &Program| match run(candidate) {
        Ok((hello, observed)) => judge(candidate, hello, &observed).is_err_and(|d| d.kind() == kind),
        Err(e) => {
            error.get_or_insert(e);
            false
        }
    };
    let shrunk = shrink(&program, &mut still);
    if let Some(e) = error {
        return Err(e);
    }
    let (hello, observed) = run(&shrunk)?;
    let shrunk_divergence = judge(&shrunk, hello, &observed).err().unwrap_or_else(|| first.clone());
    if let Some(dir) = &opts.out {
        let what = shrunk_divergence.to_string();
        write_scenario(
            dir,
            &format!("seed-{}.toml", program.seed),
            &what,
            program.seed,
            &shrunk,
            opts,
        )?;
    }
    // Numbered as in the generated program.
    let first = Divergence {
        index: kept[first.index],
        ..first
    };
    report.found.push(Found {
        seed: program.seed,
        first,
        dropped,
        shrunk,
        shrunk_divergence,
        also: Vec::new(),
    });
    Ok(())
}

/// The smallest program whose table the kernel still lists short of its
/// count.
fn shrink_listing(program: &Program, run: &mut Run) -> Result<Program, FuzzError> {
    let mut error = None;
    let mut still = |candidate: &Program| match run(candidate) {
        Ok((_, observed)) => observed.iter().any(|o| o.listing.is_some()),
        Err(e) => {
            error.get_or_insert(e);
            false
        }
    };
    let shrunk = shrink(program, &mut still);
    match error {
        Some(e) => Err(e),
        None => Ok(shrunk),
    }
}

/// A shrunk program as a scenario file: one `program` step, judged by the
/// same model, so it fails where the target diverged and passes on Linux.
pub fn scenario_text(what: &str, seed: u64, program: &Program, opts: &FuzzOptions) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let description = format!(
        "Found by `shmconf fuzz` ({}, program {seed}, shrunk to {} operation{}): {what}",
        opts.target.name(),
        program.ops.len(),
        if program.ops.len() == 1 { "" } else { "s" },
    );
    let mut out = format!(
        "description = {}\ntags = [\"fuzz\"]\nreference = {}\n\n[[step]]\nprogram = [\n",
        quote(&description),
        quote(&format!(
            "shmconf fuzz --replay {seed} --ops {}{}",
            opts.ops,
            target_flag(&opts.target)
        )),
    );
    for op in &program.ops {
        out.push_str(&format!("  {},\n", quote(&op.to_string())));
    }
    out.push_str("]\n");
    out
}

fn write_scenario(
    dir: &Path,
    file: &str,
    what: &str,
    seed: u64,
    program: &Program,
    opts: &FuzzOptions,
) -> Result<(), FuzzError> {
    let path = dir.join(file);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, scenario_text(what, seed, program, opts)))
        .map_err(|error| FuzzError::Write { path, error })
}

/// The report as people read it.
pub fn render(report: &FuzzReport, opts: &FuzzOptions) -> String {
    let mut out = String::new();
    for f in &report.found {
        render_found(&mut out, f, opts);
    }
    render_listing(&mut out, report, opts);
    render_summary(&mut out, report, opts);
    out
}

/// Whether a divergence is a known kind (why, and its scenario) or new; nothing
/// when no kinds are known.
fn known_or_new(opts: &FuzzOptions, why: Option<(&str, Option<&str>)>) -> String {
    match why {
        Some((reason, scenario)) => format!(
            "  known ({}{reason})\n",
            scenario.map_or_else(String::new, |s| format!("{s}: "))
        ),
        None if opts.known.is_empty() => String::new(),
        None => "  NEW: not among the known kinds of divergence\n".into(),
    }
}

/// One kind of divergence: where it was first seen, shrunk, its replay.
fn render_found(out: &mut String, f: &Found, opts: &FuzzOptions) {
    out.push_str(&format!("divergence in program {}: {}\n", f.seed, f.first));
    let known = opts.known.of(f.first.kind());
    out.push_str(&known_or_new(
        opts,
        known.map(|k| (k.reason.as_str(), k.scenario.as_deref())),
    ));
    if !f.dropped.is_empty() {
        let ops: Vec<String> = f.dropped.iter().map(|i| (i + 1).to_string()).collect();
        out.push_str(&format!(
            "  (seen with operation{} {} left out: {} first, in kinds reported above)\n",
            if ops.len() == 1 { "" } else { "s" },
            ops.join(", "),
            if ops.len() == 1 { "it diverged" } else { "each diverged" },
        ));
    }
    out.push_str(&format!(
        "  shrunk to {} operation{}: {}\n",
        f.shrunk.ops.len(),
        if f.shrunk.ops.len() == 1 { "" } else { "s" },
        f.shrunk_divergence
    ));
    for (i, op) in f.shrunk.ops.iter().enumerate() {
        out.push_str(&format!("    {}. {op}\n", i + 1));
    }
    out.push_str(&format!(
        "  replay: shmconf fuzz --replay {} --ops {}{}{}\n",
        f.seed,
        opts.ops,
        target_flag(&opts.target),
        if f.dropped.is_empty() {
            ""
        } else {
            " (alone it shows the first of those kinds; the shrunk program shows this one)"
        }
    ));
    if !f.also.is_empty() {
        let seeds: Vec<String> = f.also.iter().take(8).map(u64::to_string).collect();
        out.push_str(&format!(
            "  the same kind of divergence in {} more program{}: seeds {}{}\n",
            f.also.len(),
            if f.also.len() == 1 { "" } else { "s" },
            seeds.join(", "),
            if f.also.len() > 8 { ", ..." } else { "" }
        ));
    }
}

/// The listing's shortfall, if the kernel's listing ever fell short.
fn render_listing(out: &mut String, report: &FuzzReport, opts: &FuzzOptions) {
    if let Some((seed, index, op, listing, live)) = &report.listing.first {
        out.push_str(&format!(
            "divergence: the kernel does not list what it counts, after {} of the {} observations \
             (first: program {seed}, operation {} ({op}): {listing}; {}); there the table was read by id \
             (IPC_STAT of every id the program was given) and judged as usual\n",
            report.listing.observations,
            report.operations,
            index + 1,
            crate::model::program::listing_against_model(listing, *live)
        ));
        if let Some((seed, index, op, listing, live)) = &report.listing.first_count_off {
            out.push_str(&format!(
                "  SHM_INFO's count is not the model's live segments in {} of them (first: program {seed}, \
                 operation {} ({op}): {listing}; {})\n",
                report.listing.count_off,
                index + 1,
                crate::model::program::listing_against_model(listing, *live)
            ));
        }
        out.push_str(&known_or_new(opts, opts.known.listing.as_deref().map(|r| (r, None))));
        if let Some(shrunk) = &report.listing.shrunk {
            out.push_str(&format!(
                "  shrunk to {} operation{}:\n",
                shrunk.ops.len(),
                if shrunk.ops.len() == 1 { "" } else { "s" }
            ));
            for (i, op) in shrunk.ops.iter().enumerate() {
                out.push_str(&format!("    {}. {op}\n", i + 1));
            }
        }
    }
}

/// What was checked, and the run's one-line verdict.
fn render_summary(out: &mut String, report: &FuzzReport, opts: &FuzzOptions) {
    let answers: Vec<String> = report.answers.iter().map(|(k, n)| format!("{n} {k}")).collect();
    if !answers.is_empty() {
        out.push_str(&format!("answers checked: {}\n", answers.join(", ")));
    }
    let last = opts.seed.wrapping_add(report.programs.saturating_sub(1));
    let disagree: usize = report.found.iter().map(|f| 1 + f.also.len()).sum();
    out.push_str(&format!(
        "fuzz ({}): {} program{} (seeds {}..={last}), {} operations{}: {}\n",
        opts.target.name(),
        report.programs,
        if report.programs == 1 { "" } else { "s" },
        opts.seed,
        report.operations,
        if report.stopped_by_time {
            format!(", stopped by --time before {}", opts.programs)
        } else {
            String::new()
        },
        if report.found.is_empty() {
            "every result and every table after it agrees with the model".to_string()
        } else {
            format!(
                "{disagree} disagree with the model, in {} kind{} of divergence",
                report.found.len(),
                if report.found.len() == 1 { "" } else { "s" }
            )
        }
    ));
    if !opts.known.is_empty() {
        let new = report.unexpected(&opts.known);
        let met = report.found.len() + usize::from(report.listing.observations > 0) - new;
        let listed = opts.known.kinds.len() + usize::from(opts.known.listing.is_some());
        out.push_str(&format!(
            "known divergences: {met} of the {listed} listed met, {new} new{}\n",
            if new == 0 { "" } else { " (each marked NEW above)" }
        ));
    }
}

/// The flags that run the same target again (in replay lines).
fn target_flag(target: &Target) -> String {
    match target {
        Target::Local => String::new(),
        Target::Gvisor { .. } => " --target gvisor".into(),
        Target::Docker { image, .. } => format!(" --target docker --image {image}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replay line runs the same target again: docker with its image.
    #[test]
    fn replay_lines_name_the_target_and_its_image() {
        assert_eq!(target_flag(&Target::Local), "");
        let gvisor = Target::Gvisor { runsc: "runsc".into() };
        assert_eq!(target_flag(&gvisor), " --target gvisor");
        let docker = Target::Docker {
            docker: "docker".into(),
            image: "shmconf:ci".into(),
        };
        assert_eq!(target_flag(&docker), " --target docker --image shmconf:ci");
        assert_eq!(docker.name(), "docker");
        assert_eq!(docker.program(Path::new("/x/shmconf")), PathBuf::from("docker"));
    }
    use crate::model::program::predict::{Model, Predicted};
    use crate::model::program::{judge_report, Disagreement, Kind};
    use crate::sysv_ops::observe::OpResult;

    /// A kernel made of the model, with ids of its own, and a fault
    /// applied to every observation.
    fn simulated(program: &Program, fault: &dyn Fn(&mut Observation)) -> (Hello, Vec<Observation>) {
        let mut m = Model::new(Hello {
            ipc_owner: true,
            sys_admin: true,
            uid: 0,
            gid: 0,
            set_uid: true,
            set_gid: true,
        });
        let id = |seg: usize| 1000 + seg as i32 * 32768;
        let observed = program
            .ops
            .iter()
            .map(|op| {
                let outcome = match m.apply(op) {
                    Predicted::NewId { seg } | Predicted::SameId { seg } => OpResult::Id { id: id(seg) },
                    Predicted::Exactly(o) => o,
                };
                let table = m.table().into_iter().map(|(s, st)| (id(s), st)).collect();
                let mut obs = Observation {
                    outcome,
                    table,
                    listing: None,
                };
                fault(&mut obs);
                obs
            })
            .collect();
        (
            Hello {
                ipc_owner: true,
                sys_admin: true,
                uid: 0,
                gid: 0,
                set_uid: true,
                set_gid: true,
            },
            observed,
        )
    }

    fn faithful(_: &mut Observation) {}

    #[test]
    fn a_kernel_that_behaves_as_the_model_agrees_on_every_program() {
        for seed in 0..200 {
            let p = program::generate(seed, 30);
            let (hello, observed) = simulated(&p, &faithful);
            assert_eq!(judge(&p, hello, &observed), Ok(30), "seed {seed}");
        }
    }

    /// Each fault, the operation kind it must be caught at, and the most
    /// operations its shrunk program may keep.
    #[test]
    fn each_faulty_kernel_is_caught_and_shrunk_to_a_few_operations() {
        type Fault = fn(&mut Observation);
        let faults: [(&str, Fault, usize); 4] = [
            (
                "IPC_STAT counts one attachment too many",
                |o| {
                    if let OpResult::Stat(s) = &mut o.outcome {
                        s.nattch += 1;
                    }
                },
                2,
            ),
            (
                "a removed, attached segment keeps its key",
                |o| {
                    for (_, s) in &mut o.table {
                        if s.dest {
                            s.key = program::KEYS[0];
                        }
                    }
                },
                3,
            ),
            (
                "EEXIST is reported as ENOENT",
                |o| {
                    if o.outcome == (OpResult::Errno { errno: libc::EEXIST }) {
                        o.outcome = OpResult::Errno { errno: libc::ENOENT };
                    }
                },
                2,
            ),
            (
                "stores are lost",
                |o| {
                    if let OpResult::Bytes { data } = &mut o.outcome {
                        data.fill(0);
                    }
                },
                4,
            ),
        ];
        for (name, fault, most) in faults {
            let caught = (0..400).find_map(|seed| {
                let p = program::generate(seed, 30);
                let (hello, observed) = simulated(&p, &fault);
                judge(&p, hello, &observed).err().map(|d| (p, d))
            });
            let Some((p, first)) = caught else {
                panic!("{name}: not caught in 400 programs");
            };
            let kind = first.kind();
            let shrunk = shrink(&p, &mut |c| {
                let (hello, observed) = simulated(c, &fault);
                judge(c, hello, &observed).is_err_and(|d| d.kind() == kind)
            });
            assert!(
                shrunk.ops.len() <= most,
                "{name}: shrunk to {} operations, at most {most} expected: {:?}",
                shrunk.ops.len(),
                shrunk.ops
            );
            let (hello, observed) = simulated(&shrunk, &faithful);
            assert!(
                judge(&shrunk, hello, &observed).is_ok(),
                "{name}: the shrunk program is fine on a faithful kernel"
            );
        }
    }

    /// Every call's every listed answer is a row, 0 shown as "never";
    /// an answer the list does not name still shows, flagged.
    #[test]
    fn the_coverage_table_names_what_was_never_reached() {
        let mut report = FuzzReport::default();
        report.coverage.insert(("shmget", Answer::Errno(libc::EEXIST)), 3);
        report.coverage.insert(("shmat", Answer::Errno(libc::EFAULT)), 1);
        let table = render_coverage(&report);
        assert!(table.contains("| shmget | EEXIST | 3 |\n"), "{table}");
        assert!(table.contains("| shmget | ENOENT | never |\n"), "{table}");
        assert!(
            table.contains("| shmat | EFAULT (not in the man pages' list) | 1 |\n"),
            "{table}"
        );
        let total: usize = program::CALLS.iter().map(|(_, a)| a.len()).sum();
        assert!(
            table.ends_with(&format!("1 of {total} answers reached; {} never\n", total - 1)),
            "{table}"
        );
        // Every answer kind the fuzzer counts is in the list's words.
        for o in [
            OpResult::Id { id: 1 },
            OpResult::Attached,
            OpResult::Done,
            OpResult::OutOfBounds,
            OpResult::NotAttached,
            OpResult::ReadOnly,
            OpResult::Errno { errno: libc::EACCES },
        ] {
            let kind = o.answer();
            assert!(program::CALLS.iter().any(|(_, a)| a.contains(&kind)), "{kind}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the program and the fault, shrinking keeps the
        /// divergence it started from (the same kind at the same kind of
        /// operation), never grows the program, and is itself reproducible.
        #[test]
        fn shrinking_keeps_the_divergence(seed in 0u64..100_000, len in 1usize..40, which in 0usize..4) {
            let faults: [fn(&mut Observation); 4] = [
                |o| if let OpResult::Stat(s) = &mut o.outcome { s.nattch += 1 },
                |o| if o.outcome == (OpResult::Errno { errno: libc::EINVAL }) { o.outcome = OpResult::Errno { errno: libc::ENOENT } },
                |o| if let OpResult::Bytes { data } = &mut o.outcome { data.fill(0) },
                |o| if let Some(row) = o.table.first_mut() { row.1.nattch += 1 },
            ];
            let fault = faults[which];
            let p = program::generate(seed, len);
            proptest::prop_assert_eq!(&p.ops, &program::generate(seed, len).ops, "generation is reproducible");
            let (hello, observed) = simulated(&p, &fault);
            if let Err(first) = judge(&p, hello, &observed) {
                let kind = first.kind();
                let mut still = |c: &Program| {
                    let (hello, observed) = simulated(c, &fault);
                    judge(c, hello, &observed).is_err_and(|d| d.kind() == kind)
                };
                let shrunk = shrink(&p, &mut still);
                proptest::prop_assert!(shrunk.ops.len() <= p.ops.len());
                let (hello, observed) = simulated(&shrunk, &fault);
                let kept = judge(&shrunk, hello, &observed);
                proptest::prop_assert!(
                    kept.as_ref().is_err_and(|d| d.kind() == kind),
                    "{} shrunk to {:?}: {:?}", first, shrunk.ops, kept
                );
                proptest::prop_assert_eq!(shrunk.ops, shrink(&p, &mut still).ops, "shrinking is reproducible");
            }
        }
    }

    #[test]
    fn a_new_segment_with_a_live_segments_id_is_a_divergence() {
        let p = Program {
            seed: 0,
            ops: vec![
                Op::Get {
                    key: program::KeyPick::Raw(0),
                    size: 64,
                    create: program::CreatePick::IfMissing,
                    mode: 0o600,
                },
                Op::Get {
                    key: program::KeyPick::Raw(1),
                    size: 64,
                    create: program::CreatePick::IfMissing,
                    mode: 0o600,
                },
            ],
        };
        let (hello, mut observed) = simulated(&p, &faithful);
        observed[1].outcome = observed[0].outcome.clone();
        let d = judge(&p, hello, &observed).unwrap_err();
        assert_eq!(d.index, 1);
        assert!(matches!(d.disagreement, Disagreement::Result { .. }), "{d}");
    }

    #[test]
    fn an_executor_that_stops_early_is_a_divergence_not_a_pass() {
        let p = program::generate(5, 10);
        let (hello, mut observed) = simulated(&p, &faithful);
        observed.truncate(4);
        let d = judge(&p, hello, &observed).unwrap_err();
        assert_eq!((d.index, d.disagreement), (4, Disagreement::Missing));
    }

    /// What the executor prints: who it runs as, then one line per
    /// observation.
    fn report_text(hello: Hello, observed: &[Observation]) -> Vec<u8> {
        let mut out = serde_json::to_string(&hello).unwrap();
        for o in observed {
            out.push('\n');
            out.push_str(&serde_json::to_string(o).unwrap());
        }
        out.push('\n');
        out.into_bytes()
    }

    /// A `program` step passes a faithful report and names, in words,
    /// every other: a wrong answer, a short report, a garbled line, an
    /// empty one, and a listing that falls short of the count.
    #[test]
    fn a_program_steps_report_is_judged_by_the_model() {
        let p = program::generate(11, 16);
        let (hello, observed) = simulated(&p, &faithful);
        assert_eq!(judge_report(&p, &report_text(hello, &observed)), Vec::<String>::new());

        let mut wrong = observed.clone();
        wrong[2].outcome = OpResult::Errno { errno: libc::EIDRM };
        let problems = judge_report(&p, &report_text(hello, &wrong));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("operation 3 ("), "{problems:?}");
        assert!(problems[0].contains("the kernel answered EIDRM"), "{problems:?}");

        let problems = judge_report(&p, &report_text(hello, &observed[..5]));
        assert_eq!(
            problems,
            vec![format!(
                "operation 6 ({}): the executor reported nothing for it",
                p.ops[5]
            )]
        );

        let mut garbled = report_text(hello, &observed);
        garbled.extend_from_slice(b"{\"outcome\": 7}\n");
        let problems = judge_report(&p, &garbled);
        assert!(problems[0].contains("not an observation"), "{problems:?}");

        assert!(judge_report(&p, b"")[0].contains("reported nothing"));

        let mut short = observed.clone();
        short[0].listing = Some(observe::Listing {
            counted: 1,
            listed: 0,
            refused: None,
        });
        let problems = judge_report(&p, &report_text(hello, &short));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!("after operation 1 ({}) the kernel does not list", p.ops[0])),
            "{problems:?}"
        );
    }

    /// A listing that falls short is held against the model's live
    /// segments, so the report says which of the count and the listing is
    /// wrong (gVisor's count never goes down; its listing is refused).
    #[rstest::rstest]
    #[case::listing_short(
        1,
        0,
        1,
        "1 segment is alive by the model: SHM_INFO's count is right, the listing shows 1 fewer"
    )]
    #[case::count_stale(
        2,
        0,
        0,
        "0 segments are alive by the model: SHM_INFO counts 2 more, the listing is right"
    )]
    #[case::both(
        3,
        1,
        2,
        "2 segments are alive by the model: SHM_INFO counts 1 more, the listing shows 1 fewer"
    )]
    #[case::count_low(
        0,
        1,
        1,
        "1 segment is alive by the model: SHM_INFO counts 1 fewer, the listing is right"
    )]
    fn a_listing_shortfall_says_which_side_is_wrong(
        #[case] counted: i32,
        #[case] listed: usize,
        #[case] live: usize,
        #[case] says: &str,
    ) {
        let listing = observe::Listing {
            counted,
            listed,
            refused: None,
        };
        assert_eq!(crate::model::program::listing_against_model(&listing, live), says);
    }

    /// The model's live segments after an operation: created, removed while
    /// attached (still alive), gone at the last detach.
    #[test]
    fn live_segments_follow_the_model() {
        let p = Program {
            seed: 0,
            ops: [
                "shmget(0x5f000001, 1024, 0600|IPC_CREAT)",
                "shmat(id#0)",
                "shmctl(id#0, IPC_RMID)",
                "shmdt(att#0)",
            ]
            .iter()
            .map(|o| o.parse().unwrap())
            .collect(),
        };
        let hello = Hello {
            ipc_owner: true,
            sys_admin: true,
            uid: 0,
            gid: 0,
            set_uid: true,
            set_gid: true,
        };
        let live: Vec<usize> = (0..4)
            .map(|i| crate::model::program::live_after(&p, hello, i))
            .collect();
        assert_eq!(live, [1, 1, 1, 0]);
    }

    /// A kernel that refuses IPC_STAT (a common way to differ) and answers
    /// ENOENT for EEXIST (a rarer one).
    fn stat_refused_and_eexist_lost(o: &mut Observation) {
        match o.outcome {
            OpResult::Stat(_) => o.outcome = OpResult::Errno { errno: libc::EINVAL },
            OpResult::Errno { errno: libc::EEXIST } => o.outcome = OpResult::Errno { errno: libc::ENOENT },
            _ => {}
        }
    }

    /// A local run of `programs` programs of 8 operations from seed 0.
    fn local_options(programs: u64, known: known::Known) -> FuzzOptions {
        FuzzOptions {
            exe: PathBuf::from("shmconf"),
            seed: 0,
            programs,
            ops: 8,
            out: None,
            known,
            target: Target::Local,
            time: None,
        }
    }

    /// A program written out, with its seed.
    fn parse(seed: u64, ops: &[&str]) -> Program {
        Program {
            seed,
            ops: ops.iter().map(|o| o.parse().unwrap()).collect(),
        }
    }

    /// A kernel that differs in a common way (IPC_STAT refused) and a rarer
    /// one (EEXIST answered ENOENT): once the common kind is reported, a
    /// program that shows it first is run again without that operation, so
    /// the rarer kind behind it is found too, numbered as generated; at
    /// most PAST_KNOWN operations are left out.
    #[test]
    fn a_known_kind_of_divergence_does_not_hide_a_new_one_behind_it() {
        let mut run = |p: &Program| Ok(simulated(p, &stat_refused_and_eexist_lost));
        let opts = local_options(3, known::Known::default());
        let create = "shmget(0x5f000001, 1024, 0600|IPC_CREAT)";
        let stat = "shmctl(id#0, IPC_STAT)";
        let exclusive = "shmget(0x5f000001, 1024, 0600|IPC_CREAT|IPC_EXCL)";
        let mut report = FuzzReport::default();
        // Stats refused, first; then more stats than are left out before
        // the EEXIST: nothing new; then one stat before it: found.
        take_program(&mut report, parse(1, &[create, stat]), &opts, &mut run).unwrap();
        let more = [create, stat, stat, stat, stat, exclusive];
        take_program(&mut report, parse(2, &more), &opts, &mut run).unwrap();
        assert_eq!(report.found.len(), 1, "{}", render(&report, &opts));
        take_program(&mut report, parse(3, &[create, stat, exclusive]), &opts, &mut run).unwrap();
        let text = render(&report, &opts);
        assert_eq!(report.found.len(), 2, "{text}");
        assert_eq!(report.found[0].also, vec![2, 3], "{text}");
        let behind = &report.found[1];
        assert_eq!(
            (behind.seed, behind.first.index, behind.dropped.clone()),
            (3, 2, vec![1]),
            "{text}"
        );
        assert_eq!(
            behind.first.kind(),
            Kind::Result {
                call: "shmget",
                expected: Answer::Errno(libc::EEXIST),
                observed: Answer::Errno(libc::ENOENT)
            }
        );
        assert_eq!(behind.shrunk.ops.len(), 2, "{text}");
        assert!(
            text.contains("divergence in program 3: operation 3 (shmget(0x5f000001, 1024, 0600|IPC_CREAT|IPC_EXCL)): the model says EEXIST, the kernel answered ENOENT\n  (seen with operation 2 left out: it diverged first, in kinds reported above)"),
            "{text}"
        );
    }

    /// With the target's known kinds, only another kind fails the run, and
    /// the report marks each kind known (with its reason) or NEW.
    #[rstest::rstest]
    #[case::none_known("", 2, 2)]
    #[case::one_known(
        "[[divergence]]\ncall = \"IPC_STAT\"\nmodel = \"stat\"\nkernel = \"EINVAL\"\nreason = \"stats refused\"\n",
        1,
        1
    )]
    #[case::both_known("[[divergence]]\ncall = \"IPC_STAT\"\nmodel = \"stat\"\nkernel = \"EINVAL\"\nreason = \"stats refused\"\n[[divergence]]\ncall = \"shmget\"\nmodel = \"EEXIST\"\nkernel = \"ENOENT\"\nreason = \"lost\"\n", 0, 0)]
    #[case::another_call_known(
        "[[divergence]]\ncall = \"IPC_RMID\"\nmodel = \"stat\"\nkernel = \"EINVAL\"\nreason = \"x\"\n",
        2,
        2
    )]
    fn only_a_kind_not_known_fails_the_run(#[case] known: &str, #[case] unexpected: usize, #[case] marked_new: usize) {
        let mut run = |p: &Program| Ok(simulated(p, &stat_refused_and_eexist_lost));
        let opts = local_options(2, known::Known::parse(Path::new("known.toml"), known).unwrap());
        let create = "shmget(0x5f000001, 1024, 0600|IPC_CREAT)";
        let mut report = FuzzReport::default();
        take_program(
            &mut report,
            parse(1, &[create, "shmctl(id#0, IPC_STAT)"]),
            &opts,
            &mut run,
        )
        .unwrap();
        let exclusive = "shmget(0x5f000001, 1024, 0600|IPC_CREAT|IPC_EXCL)";
        take_program(&mut report, parse(2, &[create, exclusive]), &opts, &mut run).unwrap();
        assert_eq!(report.found.len(), 2);
        assert_eq!(report.unexpected(&opts.known), unexpected);
        let text = render(&report, &opts);
        assert_eq!(
            text.matches("  NEW: not among the known kinds").count(),
            if known.is_empty() { 0 } else { marked_new },
            "{text}"
        );
        if !known.is_empty() {
            assert!(text.contains(&format!("{unexpected} new")), "{text}");
        }
        if known.contains("stats refused") {
            assert!(text.contains("  known (stats refused)"), "{text}");
        }
    }

    /// Two divergences at one call are two kinds when the answers differ
    /// in kind (EEXIST answered EINVAL is not EACCES answered with an id).
    #[test]
    fn a_divergences_kind_is_the_call_and_both_answers_kinds() {
        let at = |op: &str, expected: OpResult, observed: OpResult| Divergence {
            index: 0,
            op: op.parse().unwrap(),
            disagreement: Disagreement::Result {
                expected: crate::model::program::Expected::Exactly(expected),
                observed,
            },
        };
        let get = "shmget(0x5f000001, 0, 0600|IPC_CREAT|IPC_EXCL)";
        let errno = |errno| OpResult::Errno { errno };
        let eexist = at(get, errno(libc::EEXIST), errno(libc::EINVAL));
        let eacces = at(get, errno(libc::EACCES), OpResult::Id { id: 3 });
        let eacces_again = at(get, errno(libc::EACCES), OpResult::Id { id: 7 });
        let stat = at("shmctl(id#0, IPC_STAT)", errno(libc::EACCES), errno(libc::EINVAL));
        assert_ne!(eexist.kind(), eacces.kind());
        assert_eq!(eacces.kind(), eacces_again.kind());
        assert_ne!(stat.kind(), at(get, errno(libc::EACCES), errno(libc::EINVAL)).kind());
    }

    /// A written scenario holds the shrunk program exactly: its `program`
    /// step parses back to the same operations, and its reference replays
    /// the seed on the same target.
    #[test]
    fn a_written_scenario_holds_the_shrunk_program() {
        for seed in 0..40 {
            let p = program::generate(seed, 12);
            let opts = FuzzOptions {
                exe: PathBuf::from("shmconf"),
                seed,
                programs: 1,
                ops: 12,
                out: None,
                known: known::Known::default(),
                target: Target::Gvisor {
                    runsc: PathBuf::from("runsc"),
                },
                time: None,
            };
            let text = scenario_text("what \"it\" found\n", seed, &p, &opts);
            let scenario = crate::scenario::Scenario::parse(Path::new("seed.toml"), &text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(
                scenario.reference.as_deref(),
                Some(format!("shmconf fuzz --replay {seed} --ops 12 --target gvisor").as_str())
            );
            assert!(scenario.description.contains("what \"it\" found"));
            let crate::scenario::Body::Steps(steps) = &scenario.body else {
                panic!("{text}")
            };
            let programs: Vec<&Program> = steps
                .iter()
                .filter_map(|s| match &s.action {
                    crate::scenario::Action::Spawn(spawn) => spawn.expect.program.as_ref(),
                    _ => None,
                })
                .collect();
            assert_eq!(programs.len(), 1, "{text}");
            assert_eq!(programs[0].ops, p.ops, "{text}");
        }
    }
}
