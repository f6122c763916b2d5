//! `shmconf`: run SysV shared-memory scenarios against an implementation.

#![deny(clippy::too_many_lines)] // the threshold (100) is in clippy.toml: a long function is split, not allowed

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use shmconf_harness::compose::{self, BackendChoice, Choices, ImplChoice, Isolation, OracleChoice, SandboxKind};
use shmconf_harness::engine::backend::containers::EngineKind;
use shmconf_harness::engine::{oracle, procs, Limits};
use shmconf_harness::rundir;
use shmconf_harness::runner::ScenarioResult;
use shmconf_harness::scenario::ScenarioFile;
use shmconf_harness::{probe, report, scenario, units};

#[derive(Debug, Parser)]
#[command(
    name = "shmconf",
    version,
    about = "Conformance harness for System V shared-memory writer/reader programs"
)]
struct Cli {
    /// Colour in reports: auto (a terminal without NO_COLOR, or
    /// CLICOLOR_FORCE), always or never.
    #[arg(long, global = true, value_enum, default_value = "auto", value_name = "WHEN")]
    color: ColorArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios and judge an implementation (exit 0 all good, 1 something failed, 2 usage, scenario-file
    /// or output-path error or an empty selection, 4 nothing checked: every scenario a SKIP, 128+N signal N).
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Run the catalogue on several targets (local, docker, podman-runc,
    /// podman-crun, podman-runsc, gvisor) and write a JSON and a JUnit report
    /// per target and one HTML page of them side by side (matrix.html).
    Matrix(MatrixArgs),
    /// List scenarios with their tags and description.
    List(ListArgs),
    /// Describe scenarios in plain words: their steps and what each expects.
    Show(SelectArgs),
    /// Print the JSON Schema of scenario files (or of implementation files).
    Schema {
        /// The schema of --impl-file files instead.
        #[arg(long)]
        impl_file: bool,
    },
    /// Print a shell completion script (e.g. `shmconf completions bash >
    /// ~/.local/share/bash-completion/completions/shmconf`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `shmconf man | man -l -`.
    Man,
    /// One raw SysV call (a scenario role).
    Probe(probe::ProbeArgs),
    /// Measure shared memory against pipes, FIFOs, message queues and UNIX
    /// sockets between two processes (and memcpy), every byte verified.
    Bench(BenchArgs),
    /// Generate SysV shared-memory programs from seeds, run each on this
    /// kernel in a new IPC namespace, and hold every result and the table
    /// after every operation against a model that predicts them; each
    /// disagreement is shrunk to the fewest operations that still show it
    /// (exit 0 all agree, 1 a disagreement, 2 usage or a program that could not run).
    Fuzz(FuzzArgs),
    /// Execute one generated program and report each result (internal).
    #[command(hide = true)]
    FuzzExec,
    /// The other process of a benchmark (internal).
    #[command(hide = true)]
    BenchPeer(shmconf_harness::bench::PeerArgs),
    /// Init of a scenario's PID namespace: reaps orphans until killed (internal).
    #[command(hide = true)]
    PidInit,
    /// Run a command with our stdin relayed to it and drained to its end (internal:
    /// works around Podman's exec losing output of a process that leaves input unread).
    #[command(hide = true)]
    StdinRelay {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<std::ffi::OsString>,
    },
    /// The kernel's view from inside a sandbox, for a harness outside it (internal).
    #[command(hide = true, subcommand)]
    KernelView(oracle::KernelView),
}

#[derive(Debug, clap::Args)]
struct MatrixArgs {
    /// Scenario files or directories (default: $SHMCONF_SCENARIOS, else ./scenarios if present, else the built-in catalogue).
    paths: Vec<PathBuf>,
    /// A target to run (repeatable; default: every one). Named targets are
    /// required: one that cannot run here fails the command.
    #[arg(long = "target", value_name = "TARGET")]
    targets: Vec<String>,
    /// Where the reports and matrix.html go.
    #[arg(long, default_value = "matrix")]
    out: PathBuf,
    /// The image for the container targets.
    #[arg(long, default_value = "shmconf")]
    image: String,
    /// The built-in implementation judged.
    #[arg(long = "impl", default_value = "rust")]
    implementation: String,
    /// Run nothing: merge the target reports (<target>.json) in these files
    /// or folders into --out's matrix.html (e.g. a CI matrix's artifacts).
    #[arg(long, value_name = "REPORT", num_args = 1.., conflicts_with_all = ["targets", "paths"])]
    from: Vec<PathBuf>,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
    /// Name the (one) target's column so, e.g. "k8s-hostipc-false" for a
    /// run in a cluster's pod; the reports carry this name.
    #[arg(long = "as", value_name = "NAME", requires = "targets")]
    rename: Option<String>,
    /// Print each target's report (JSON) on stdout instead of progress lines,
    /// for a run whose files cannot be fetched (a Kubernetes Job's log).
    #[arg(long)]
    print: bool,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// human: one line a scenario; json: one array of {id, path, tags, description}.
    #[arg(long, value_enum, default_value = "human")]
    format: ListFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ListFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
struct SelectArgs {
    /// Scenario files, directories or globs (default: $SHMCONF_SCENARIOS, else ./scenarios if present, else the built-in catalogue).
    paths: Vec<PathBuf>,
    /// Only scenarios with this tag (repeatable: any of them).
    #[arg(help_heading = "Selection", long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Leave out scenarios whose id contains this text or matches this glob (repeatable).
    #[arg(help_heading = "Selection", long = "skip", value_name = "PATTERN")]
    skip: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IsolationArg {
    /// Namespaces where this process can make them, else the shared namespace.
    Auto,
    /// Fresh IPC (and PID) namespaces per scenario; fail if they cannot be made.
    Namespaces,
    /// The current IPC namespace, one scenario at a time, checked before and after
    /// (what runs without CAP_SYS_ADMIN; multi-namespace scenarios SKIP).
    Shared,
}

#[derive(Debug, clap::Args)]
struct FuzzArgs {
    /// Programs to run (a count, so every machine runs the same programs).
    #[arg(long, default_value_t = 200)]
    programs: u64,
    /// Operations per program.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u16).range(1..=1000))]
    ops: u16,
    /// Seed of the first program; program i has seed SEED + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the one program of this seed (as a divergence's replay line says).
    #[arg(long, value_name = "SEED", conflicts_with_all = ["seed", "programs"])]
    replay: Option<u64>,
    /// Write each divergence's shrunk program here as a scenario file
    /// (seed-N.toml) that `shmconf run` judges by the same model.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where the programs run: "local" (this kernel, a new IPC namespace
    /// each), "gvisor" (`runsc do`, a new sandbox each) or "docker" (a new
    /// container each, from --image): every target's answers are held
    /// against the same model, so what differs from Linux shows.
    #[arg(long, value_enum, default_value = "local")]
    target: FuzzTargetArg,
    /// The target's known kinds of divergence (e.g.
    /// harness/runtimes/gvisor-fuzz.toml): the run fails only on another
    /// kind, as --expectations does for scenarios.
    #[arg(long, value_name = "FILE")]
    known: Option<PathBuf>,
    /// The image whose `shmconf fuzz-exec` runs each program (--target
    /// docker), e.g. the suite's image.
    #[arg(long, value_name = "IMAGE", required_if_eq("target", "docker"))]
    image: Option<String>,
    /// Also print the coverage table: every call and every answer it can
    /// give (the man pages' errors), with how often the programs reached it.
    #[arg(long)]
    coverage: bool,
    /// Stop starting programs after this long (e.g. 10m): with a large
    /// --programs, a run bounded by the clock (the report says so).
    #[arg(long, value_parser = units::scenario_limit, value_name = "DURATION")]
    time: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FuzzTargetArg {
    Local,
    Gvisor,
    Docker,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Bytes moved per mechanism and chunk size, in MiB.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Chunk sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "4096,65536,1048576")]
    chunks: Vec<usize>,
    /// 1-byte round trips per mechanism.
    #[arg(long, default_value_t = 20000)]
    rounds: usize,
    /// Mechanisms: shm-inplace (futex ring, checked in place), shm-futex, shm-spin, shm-sem (copied out), pipe, fifo, msgq, unix.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "shm-inplace,shm-futex,shm-spin,shm-sem,pipe,fifo,msgq,unix"
    )]
    mechanisms: Vec<String>,
    /// Also copy a file of this many MiB: through a segment (2 copies) and a pipe (4).
    #[arg(long)]
    file_mib: Option<usize>,
    /// Also time the harness on these scenarios: --jobs 1 vs --jobs 2, and
    /// per-scenario overhead against bare fork/exec of the same processes.
    #[arg(long, value_name = "SCENARIOS")]
    harness: Option<PathBuf>,
    /// Scenarios the harness timing leaves out (as `run --skip`; repeatable).
    #[arg(long = "harness-skip", value_name = "PATTERN")]
    harness_skip: Vec<String>,
    /// Also measure order exploration on the exploration scenarios here
    /// (process and system-call granularity side by side; --jobs 1 and 2).
    #[arg(long, value_name = "SCENARIOS")]
    explore: Option<PathBuf>,
    /// The built-in implementation the exploration timing runs.
    #[arg(long, default_value = "rust")]
    explore_impl: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the throughput plot (SVG) here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OracleArg {
    /// /proc/sysvipc/shm where it exists, else shmctl (said once).
    Auto,
    /// /proc/sysvipc/shm.
    Procfs,
    /// shmctl only: SHM_INFO and SHM_STAT_ANY to enumerate, IPC_STAT by key or id.
    Syscalls,
    /// Both, compared on every read: a disagreement is BROKEN naming the fields.
    CrossCheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Local,
    Docker,
    Podman,
    /// bubblewrap: a container IPC mode is a sandbox with (private) or
    /// without (host) --unshare-ipc.
    Bwrap,
    /// bubblewrap as Flatpak starts an app (host: an app with --share=ipc).
    Flatpak,
    /// firejail --noprofile, with (private) or without (host) --ipc-namespace.
    Firejail,
    /// util-linux unshare, --ipc (private) or --uts (host).
    Unshare,
    /// lxc-execute on the host's root: private, or lxc.namespace.share.ipc (host).
    Lxc,
}

/// What a run that checks nothing is (`--no-tests`, as cargo-nextest's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum NoTests {
    /// A failure: exit 2 when the selection is empty, 4 when every scenario was skipped.
    Fail,
    /// Exit 0, with a warning on stderr.
    Warn,
    /// Exit 0.
    Pass,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
    /// TAP version 13 (for `prove` and TAP consumers).
    Tap,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Built-in implementation: rust or c-reference.
    #[arg(help_heading = "Implementation", long = "impl", default_value = "rust", conflicts_with_all = ["writer", "reader"])]
    implementation: String,
    /// Writer command of another implementation (split like a shell).
    #[arg(help_heading = "Implementation", long, requires = "reader")]
    writer: Option<String>,
    /// Reader command of another implementation.
    #[arg(help_heading = "Implementation", long, requires = "writer")]
    reader: Option<String>,
    /// An implementation described in one file: commands, the options it
    /// has (scenarios needing others SKIP), known deviations. Schema:
    /// `shmconf schema --impl-file`.
    #[arg(help_heading = "Implementation", long, value_name = "FILE", conflicts_with_all = ["writer", "reader"])]
    impl_file: Option<PathBuf>,
    /// Name of a --writer/--reader implementation in reports.
    #[arg(help_heading = "Implementation", long, default_value = "custom")]
    name: String,
    /// Known deviations (TOML: scenario id → status "fail"|"skip" and reason).
    #[arg(help_heading = "Implementation", long)]
    expectations: Option<PathBuf>,
    /// Scenarios run at once (default: the number of cores).
    #[arg(help_heading = "Running", long, short, value_parser = at_least_one)]
    jobs: Option<usize>,
    #[arg(help_heading = "Reports", long, value_enum, default_value = "human")]
    format: Format,
    /// Also write a JUnit XML report here.
    #[arg(help_heading = "Reports", long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write a Markdown summary (counts, and every scenario that did not
    /// pass) here, e.g. "$GITHUB_STEP_SUMMARY".
    #[arg(help_heading = "Reports", long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Keep every scenario's event log and verdict as JSON in this directory,
    /// and each failure's diagram (SVG; every one of an --order replay).
    #[arg(help_heading = "Reports", long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Failures show their whole event log (JSON lines, every field) instead
    /// of the readable timeline.
    #[arg(help_heading = "Reports", long, short, conflicts_with = "quiet")]
    verbose: bool,
    /// Human format: a line for each failing scenario only, then the
    /// failures' details and the summary (no header, no progress bar).
    #[arg(help_heading = "Reports", long, short)]
    quiet: bool,
    /// Start no scenario after the first failure (FAIL, BROKEN, TIMEOUT or
    /// XPASS); those not started are INTERRUPTED, not judged.
    #[arg(help_heading = "Running", long)]
    fail_fast: bool,
    /// Where scenarios run: local namespaces, or Docker or Podman containers
    /// (each scenario namespace a container of --image with its --ipc mode,
    /// or a member of a pod), or local namespaces with each container mode
    /// a sandbox (bwrap, flatpak, firejail, unshare, lxc: docs/runtimes.md).
    #[arg(help_heading = "Where scenarios run", long, value_enum, default_value = "local")]
    backend: BackendArg,
    /// Our image, for --backend docker|podman (build it with
    /// docker/build-dist.sh && docker build -t shmconf . (or podman build)).
    #[arg(help_heading = "Where scenarios run", long, default_value = "shmconf")]
    image: String,
    /// --backend podman: the OCI runtime, a name or a path (runc, crun,
    /// runsc). Where it cannot start a container here, every scenario is a
    /// SKIP with the runtime's error (and the run exits 4: see --no-tests).
    #[arg(help_heading = "Where scenarios run", long, value_name = "RUNTIME")]
    runtime: Option<String>,
    /// --backend podman: a containers.conf (default: $CONTAINERS_CONF, else
    /// shmconf's own, harness/runtimes/podman.conf, never the machine's);
    /// a relative path is from here.
    #[arg(help_heading = "Where scenarios run", long, value_name = "FILE")]
    containers_conf: Option<PathBuf>,
    /// Exploration scenarios: run only this order, e.g. "w1:attach,r1,w1:input"
    /// (as printed in a failure's replay command).
    #[arg(help_heading = "Running", long, value_name = "EVENTS")]
    order: Option<String>,
    /// How scenarios are isolated from the host and each other.
    #[arg(help_heading = "Where scenarios run", long, value_enum, default_value = "auto")]
    isolation: IsolationArg,
    /// How the kernel's view of the segments is read.
    #[arg(help_heading = "Where scenarios run", long, value_enum, default_value = "auto")]
    oracle: OracleArg,
    /// Limit per step (a duration: 5s, 250ms, 2m; a bare number is milliseconds).
    #[arg(help_heading = "Limits", long, value_name = "DURATION", default_value = "5s", value_parser = units::step_limit)]
    step_timeout: Duration,
    /// Limit per scenario, a duration (a scenario's own timeout_ms wins).
    #[arg(help_heading = "Limits", long, value_name = "DURATION", default_value = "30s", value_parser = units::scenario_limit)]
    scenario_timeout: Duration,
    /// Most orders one exploration runs (a count, the same on any machine).
    #[arg(help_heading = "Limits", long, default_value_t = shmconf_harness::engine::DEFAULT_MAX_ORDERS, value_parser = at_least_one)]
    max_orders: usize,
    /// An exploration's safety net, a duration (a scenario's own
    /// timeout_ms wins): its expiry is a TIMEOUT, not a verdict.
    #[arg(help_heading = "Limits", long, value_name = "DURATION", default_value = "10m", value_parser = units::scenario_limit)]
    exploration_timeout: Duration,
    /// An exploration that stops at its order budget with every explored
    /// order agreeing is a TIMEOUT (default: a PASS that says how much ran).
    #[arg(help_heading = "Limits", long)]
    strict_budget: bool,
    /// A run that checks nothing: a selection that is empty (exit 2) or whose
    /// every scenario is a SKIP, e.g. a backend that can start no container
    /// (exit 4). `warn` or `pass` make either exit 0.
    #[arg(
        help_heading = "Limits",
        long,
        value_enum,
        default_value = "fail",
        value_name = "ACTION"
    )]
    no_tests: NoTests,
    /// Most processes (and threads) a scenario's programs may have at once.
    #[arg(help_heading = "Limits", long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    max_processes: u64,
    /// Most memory a scenario's programs may use together (bytes, or with K,
    /// M, G or T; per process where only rlimits are available).
    #[arg(help_heading = "Limits", long, value_name = "SIZE", default_value = "1G", value_parser = shmconf_harness::engine::confine::parse_size)]
    max_memory: u64,
}

/// `shmconf run --help`'s closing examples.
const RUN_EXAMPLES: &str = "\
Examples:
  shmconf run                                        every scenario, our Rust pair
  shmconf run --impl c-reference --tag seed-contract the seed's contract, the C stand-in
  shmconf run --writer ./w --reader 'python3 ./r.py' another pair (paths from here)
  shmconf run --impl-file impl.toml --junit out/junit.xml
  shmconf run orders/paused-writer --record out      one scenario by id; logs and diagrams
  shmconf run --quiet --fail-fast --step-timeout 2s  failures only, stop at the first";

/// Exit code of a run in which no scenario was judged (every one a SKIP).
const EXIT_NOTHING_CHECKED: u8 = 4;

/// A count that must be at least 1 (`--jobs 0` is refused, not read as 1).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?} is not a count: {e}")),
    }
}

fn main() -> ExitCode {
    // Started as `shm-writer` or `shm-reader` (a link the run made to run our
    // own implementation from an installed binary): that program and nothing
    // of the harness, so its system calls are the standalone binary's.
    if let Some(program) = shmconf::programs::started_as() {
        return program();
    }
    let cli = Cli::parse();
    match cli.color {
        ColorArg::Auto => {}
        ColorArg::Always => anstream::ColorChoice::Always.write_global(),
        ColorArg::Never => anstream::ColorChoice::Never.write_global(),
    }
    let code = dispatch(cli);
    // Whatever the command made under the run's dir (scenario dirs, staged
    // binaries) goes with it.
    rundir::finish();
    code
}

/// Print a command's output; a reader that stopped reading (`| head`) got
/// what it wanted, any other write error is said.
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmconf: stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Probe(args) => ExitCode::from(probe::run(args) as u8),
        Command::Schema { impl_file } => {
            if impl_file {
                emit(&format!("{}\n", shmconf_harness::impls::ImplFile::json_schema()))
            } else {
                emit(&format!("{}\n", scenario::json_schema()))
            }
        }
        Command::Completions { shell } => completions(shell),
        Command::Man => man_page(),
        Command::List(args) => list(&args),
        Command::Show(select) => match load_by_path_or_id(&select) {
            Ok(scenarios) if scenarios.is_empty() => {
                eprintln!("shmconf: no scenario matches");
                ExitCode::from(2)
            }
            Ok(scenarios) => {
                // Each line as the terminal shows it: ids and descriptions are
                // a scenario file's text.
                let shown: Vec<String> = scenarios
                    .iter()
                    .map(|s| {
                        scenario::describe::describe(&s.id, &s.scenario)
                            .lines()
                            .map(|l| format!("{}\n", report::for_terminal(l)))
                            .collect()
                    })
                    .collect();
                emit(&shown.join("\n"))
            }
            Err(e) => e.exit(),
        },
        Command::Run(args) => run(*args),
        Command::Matrix(args) => matrix(args),
        Command::PidInit => procs::pid_init(),
        Command::StdinRelay { argv } => ExitCode::from(procs::stdin_relay(&argv).clamp(0, 255) as u8),
        Command::KernelView(request) => match request.serve() {
            Ok(bytes) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                match out.write_all(&bytes).and_then(|()| out.flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("shmconf kernel-view: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("shmconf kernel-view: {e}");
                ExitCode::FAILURE
            }
        },
        Command::BenchPeer(args) => match shmconf_harness::bench::peer(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shmconf bench-peer: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => bench(args),
        Command::Fuzz(args) => fuzz(args),
        Command::FuzzExec => match shmconf_harness::fuzz::exec::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shmconf fuzz-exec: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `shmconf fuzz`.
fn fuzz(args: FuzzArgs) -> ExitCode {
    use shmconf_harness::fuzz;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shmconf fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let target = match args.target {
        FuzzTargetArg::Local => fuzz::Target::Local,
        FuzzTargetArg::Gvisor => match which("runsc") {
            Some(runsc) => fuzz::Target::Gvisor { runsc },
            None => {
                eprintln!("shmconf fuzz: --target gvisor needs runsc on PATH (Debian: apt-get install runsc)");
                return ExitCode::from(2);
            }
        },
        FuzzTargetArg::Docker => match (which("docker"), args.image.clone()) {
            (Some(docker), Some(image)) => fuzz::Target::Docker { docker, image },
            (None, _) => {
                eprintln!("shmconf fuzz: --target docker needs docker on PATH");
                return ExitCode::from(2);
            }
            // clap requires --image with --target docker.
            (_, None) => return ExitCode::from(2),
        },
    };
    let known = match args.known.as_deref().map(fuzz::known::Known::load).transpose() {
        Ok(known) => known.unwrap_or_default(),
        Err(e) => {
            eprintln!("shmconf fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = fuzz::FuzzOptions {
        known,
        exe,
        seed: args.replay.unwrap_or(args.seed),
        programs: if args.replay.is_some() { 1 } else { args.programs },
        ops: usize::from(args.ops),
        out: args.out.clone(),
        target,
        time: args.time,
    };
    match fuzz::fuzz(&opts) {
        Ok(report) => {
            let mut text = fuzz::render(&report, &opts);
            if args.coverage {
                text.push('\n');
                text.push_str(&fuzz::render_coverage(&report));
            }
            let code = emit(&text);
            if report.unexpected(&opts.known) == 0 {
                code
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("shmconf fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

/// The first `program` on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `shmconf completions SHELL`.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(
        shell,
        &mut <Cli as clap::CommandFactory>::command(),
        "shmconf",
        &mut out,
    );
    emit(&String::from_utf8_lossy(&out))
}

/// `shmconf man`: the manual page, from the same definition as --help.
fn man_page() -> ExitCode {
    let mut out = Vec::new();
    match clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out) {
        Ok(()) => emit(&String::from_utf8_lossy(&out)),
        Err(e) => {
            eprintln!("shmconf man: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `shmconf list`: a line a scenario, or the catalogue as JSON.
fn list(args: &ListArgs) -> ExitCode {
    let scenarios = match load(&args.select) {
        Ok(scenarios) => scenarios,
        Err(e) => return e.exit(),
    };
    match args.format {
        ListFormat::Json => {
            let listed: Vec<serde_json::Value> = scenarios
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id,
                        // The built-in catalogue's files go with the run: none to name.
                        "path": (!scenario::catalogue::is_unpacked(&s.path)).then_some(&s.path),
                        "tags": s.scenario.tags,
                        "description": s.scenario.description,
                    })
                })
                .collect();
            emit(&format!("{}\n", serde_json::Value::Array(listed)))
        }
        ListFormat::Human => {
            let lines: String = scenarios
                .iter()
                .map(|s| {
                    format!(
                        "{:<45} [{}] {}\n",
                        report::for_terminal(&s.id),
                        report::for_terminal(&s.scenario.tags.join(",")),
                        report::for_terminal(first_sentence(&s.scenario.description))
                    )
                })
                .collect();
            emit(&lines)
        }
    }
}

/// `matrix --from`: merge target reports made elsewhere into one page.
fn merge_matrix_reports(from: &[PathBuf], out: &Path) -> ExitCode {
    use shmconf_harness::matrix;
    let done = matrix::load_reports(from).and_then(|mut reports| {
        std::fs::create_dir_all(out).map_err(|source| matrix::MatrixError::File {
            path: out.to_path_buf(),
            source,
        })?;
        matrix::carry_diagrams(&mut reports, out);
        matrix::write_page(out, &reports).map(|()| reports.len())
    });
    match done {
        Ok(n) => {
            println!(
                "shmconf matrix: {n} target(s) merged into {}",
                out.join("matrix.html").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shmconf matrix: {e}");
            ExitCode::from(2)
        }
    }
}

/// A finished matrix target, as a line (or its JSON report with --print).
fn print_target_line(r: &shmconf_harness::matrix::TargetReport, print: bool) {
    match &r.not_run {
        _ if print => println!("{}", serde_json::to_string(r).unwrap_or_default()),
        Some(why) => println!("{:<14} not run: {why}", r.target),
        None => {
            let count = |s| r.count(s);
            use shmconf_harness::outcome::Status as S;
            println!(
                "{:<14} {} PASS, {} FAIL, {} XFAIL, {} BROKEN, {} TIMEOUT, {} SKIP in {:.1} s (exit {})",
                r.target,
                count(S::Pass),
                count(S::Fail) + count(S::Xpass),
                count(S::Xfail),
                count(S::Broken),
                count(S::Timeout),
                count(S::Skip) + count(S::Interrupted),
                r.duration_ms as f64 / 1000.0,
                r.exit_code.map_or("signal".to_string(), |c| c.to_string())
            );
        }
    }
}

fn matrix(args: MatrixArgs) -> ExitCode {
    use shmconf_harness::matrix;
    if args.list {
        for t in matrix::TARGETS {
            println!("{:<14} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    if !args.from.is_empty() {
        return merge_matrix_reports(&args.from, &args.out);
    }
    let mut targets = Vec::new();
    for name in &args.targets {
        match matrix::target(name) {
            Some(t) => targets.push(t),
            None => {
                let known: Vec<&str> = matrix::TARGETS.iter().map(|t| t.name).collect();
                eprintln!("shmconf matrix: unknown target {name:?} (known: {})", known.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if args.rename.is_some() && targets.len() != 1 {
        eprintln!("shmconf matrix: --as names one target's column; give exactly one --target");
        return ExitCode::from(2);
    }
    let required = !targets.is_empty();
    if targets.is_empty() {
        targets = matrix::TARGETS.iter().collect();
    }
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let scenarios: Vec<PathBuf> = if args.paths.is_empty() {
        vec![absolute(&default_scenarios())]
    } else {
        args.paths.iter().map(absolute).collect()
    };
    let shmconf = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shmconf matrix: cannot find this program: {e}");
            return ExitCode::from(2);
        }
    };
    let run = matrix::MatrixRun {
        targets,
        required,
        out: absolute(&args.out),
        image: args.image,
        implementation: args.implementation,
        scenarios,
        shmconf,
        rename: args.rename,
    };
    let print = args.print;
    let mut progress = |r: &matrix::TargetReport| print_target_line(r, print);
    match run.run(&mut progress) {
        Ok((_, ok)) => {
            if !print {
                println!("shmconf matrix: {}", run.out.join("matrix.html").display());
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("shmconf matrix: {e}");
            ExitCode::from(2)
        }
    }
}

fn first_sentence(s: &str) -> &str {
    let s = s.trim();
    s.split_once(". ").map_or(s, |(a, _)| a)
}

/// Why scenarios could not be loaded or selected.
enum LoadFailure {
    /// Printed already: scenario-file errors, an unknown id.
    Reported,
    /// The selection is empty or names a tag no scenario has.
    Select(scenario::discover::SelectError),
    /// A signal arrived while loading.
    Interrupted,
}

impl LoadFailure {
    /// Say it (once) and give the exit code.
    fn exit(self) -> ExitCode {
        match self {
            LoadFailure::Reported => ExitCode::from(2),
            LoadFailure::Select(e) => {
                eprintln!("shmconf: {}", report::for_terminal(&e.to_string()));
                ExitCode::from(2)
            }
            LoadFailure::Interrupted => interrupted_exit(),
        }
    }
}

/// The end of a run a signal stopped (before or after scenarios ran).
fn interrupted_exit() -> ExitCode {
    eprintln!(
        "shmconf: {}; every process, temp dir and namespace of the run is gone",
        shmconf_harness::interrupt::interruption()
    );
    ExitCode::from(128 + shmconf_harness::interrupt::interrupting_signal().map_or(2, |s| s as u8))
}

/// Like `load`, but an argument that is not a path names a scenario id of
/// the default scenarios dir (`shmconf show orders/paused-writer`).
fn load_by_path_or_id(select: &SelectArgs) -> Result<Vec<ScenarioFile>, LoadFailure> {
    let is_path = |p: &PathBuf| std::fs::symlink_metadata(p).is_ok() || p.to_string_lossy().contains(['*', '?', '[']);
    let (paths, ids): (Vec<PathBuf>, Vec<PathBuf>) = select.paths.iter().cloned().partition(is_path);
    if ids.is_empty() {
        return load(select);
    }
    let mut found = if paths.is_empty() {
        Vec::new()
    } else {
        load(&SelectArgs {
            paths,
            tags: select.tags.clone(),
            skip: select.skip.clone(),
        })?
    };
    if std::fs::symlink_metadata(default_scenarios()).is_err() {
        // No scenarios folder to name ids in: each is just a missing path.
        for id in &ids {
            eprintln!(
                "shmconf: {}: no such file or directory",
                report::for_terminal(&id.to_string_lossy())
            );
        }
        return Err(LoadFailure::Reported);
    }
    let all = load(&SelectArgs {
        paths: vec![],
        tags: select.tags.clone(),
        skip: select.skip.clone(),
    })?;
    for id in &ids {
        let id = id.to_string_lossy();
        match all.iter().find(|s| s.id == id.trim_end_matches(".toml")) {
            Some(s) if !found.iter().any(|f| f.id == s.id) => found.push(s.clone()),
            Some(_) => {}
            None => {
                eprintln!(
                    "shmconf: {}: no such file, and no scenario with that id",
                    report::for_terminal(&id)
                );
                return Err(LoadFailure::Reported);
            }
        }
    }
    Ok(found)
}

/// $SHMCONF_SCENARIOS; else ./scenarios if there is one (a checkout, or a
/// project's own catalogue); else the catalogue this binary carries,
/// written into the run's dir.
fn default_scenarios() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHMCONF_SCENARIOS") {
        return PathBuf::from(dir);
    }
    let here = PathBuf::from("scenarios");
    if std::fs::symlink_metadata(&here).is_ok() {
        return here;
    }
    match scenario::catalogue::unpacked() {
        Ok(dir) => dir.to_path_buf(),
        Err(e) => {
            eprintln!("shmconf: {e}");
            here
        }
    }
}

fn load(select: &SelectArgs) -> Result<Vec<ScenarioFile>, LoadFailure> {
    let paths = if select.paths.is_empty() {
        vec![default_scenarios()]
    } else {
        select.paths.clone()
    };
    let loaded = scenario::discover(&paths);
    // A signal stops discovery where it is: the run ends as one would later.
    if shmconf_harness::interrupt::interrupted() {
        return Err(LoadFailure::Interrupted);
    }
    match loaded {
        Ok(all) => {
            let where_: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            scenario::select(all, &select.tags, &select.skip, &where_.join(", ")).map_err(LoadFailure::Select)
        }
        Err(errors) => {
            for e in errors {
                eprintln!("shmconf: {}", report::for_terminal(&e.to_string()));
            }
            Err(LoadFailure::Reported)
        }
    }
}

/// Output paths of a run, checked (their folder made) before any scenario
/// runs, so a typo costs nothing and the report is never lost to it.
fn check_outputs(args: &RunArgs) -> Result<(), String> {
    use nix::unistd::{access, AccessFlags};
    let file = |flag: &str, path: &PathBuf| -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{flag} {}: {e}", path.display());
        if std::fs::symlink_metadata(path).is_ok() {
            // Opened as it will be written, nothing truncated yet.
            return std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map(drop)
                .map_err(fail);
        }
        // Not there yet: its folder made, and one this user can create it in
        // (no empty file is left if the run stops before its end).
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(fail)?;
        access(parent, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| fail(e.into()))
    };
    if let Some(p) = &args.junit {
        file("--junit", p)?;
    }
    if let Some(p) = &args.summary {
        file("--summary", p)?;
    }
    if let Some(dir) = &args.record {
        let fail = |e: std::io::Error| format!("--record {}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(fail)?;
        access(dir, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| fail(e.into()))?;
    }
    Ok(())
}

/// What `run` composes, from its flags: resolved once, here.
fn choices(args: &RunArgs) -> Choices {
    Choices {
        implementation: match (&args.writer, &args.reader) {
            (Some(w), Some(r)) => ImplChoice::Custom {
                name: args.name.clone(),
                writer: w.clone(),
                reader: r.clone(),
            },
            _ => match &args.impl_file {
                Some(f) => ImplChoice::File(f.clone()),
                None => ImplChoice::Builtin(args.implementation.clone()),
            },
        },
        backend: match args.backend {
            BackendArg::Docker => BackendChoice::Containers {
                engine: EngineKind::Docker,
                image: args.image.clone(),
                runtime: args.runtime.clone(),
                containers_conf: None,
            },
            BackendArg::Podman => BackendChoice::Containers {
                engine: EngineKind::Podman,
                image: args.image.clone(),
                runtime: args.runtime.clone(),
                containers_conf: args.containers_conf.clone(),
            },
            BackendArg::Bwrap => BackendChoice::Sandbox(SandboxKind::Bwrap),
            BackendArg::Flatpak => BackendChoice::Sandbox(SandboxKind::Flatpak),
            BackendArg::Firejail => BackendChoice::Sandbox(SandboxKind::Firejail),
            BackendArg::Unshare => BackendChoice::Sandbox(SandboxKind::Unshare),
            BackendArg::Lxc => BackendChoice::Sandbox(SandboxKind::Lxc),
            BackendArg::Local => BackendChoice::Local(match args.isolation {
                IsolationArg::Auto => Isolation::Auto,
                IsolationArg::Namespaces => Isolation::Namespaces,
                IsolationArg::Shared => Isolation::Shared,
            }),
        },
        oracle: match args.oracle {
            OracleArg::Auto => OracleChoice::Auto,
            OracleArg::Procfs => OracleChoice::Procfs,
            OracleArg::Syscalls => OracleChoice::Syscalls,
            OracleArg::CrossCheck => OracleChoice::CrossCheck,
        },
        limits: Limits {
            step: args.step_timeout,
            scenario: args.scenario_timeout,
            max_orders: args.max_orders,
            exploration: args.exploration_timeout,
            strict_budget: args.strict_budget,
            bounds: shmconf_harness::engine::confine::Bounds {
                max_processes: args.max_processes,
                max_memory: args.max_memory,
            },
        },
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        expectations: args.expectations.clone(),
        replay_order: args.order.clone(),
    }
}

fn run(args: RunArgs) -> ExitCode {
    compose::enter_user_namespace_if_unprivileged();
    // First, before any scenario starts a process: SIGINT, SIGTERM and SIGHUP
    // all stop the run and clean up.
    if let Err(e) = procs::handle_termination_signals() {
        eprintln!("shmconf: cannot install the signal handlers: {e}");
        return ExitCode::from(2);
    }
    let scenarios = match load_by_path_or_id(&args.select) {
        Ok(s) => s,
        Err(LoadFailure::Select(e)) if args.no_tests != NoTests::Fail => {
            if args.no_tests == NoTests::Warn {
                eprintln!("shmconf: warning: {}", report::for_terminal(&e.to_string()));
            }
            return ExitCode::SUCCESS;
        }
        Err(e) => return e.exit(),
    };
    // Where every scenario's dir goes: said once, naming the path, before
    // anything runs (not one BROKEN per scenario).
    if let Err(e) = rundir::current() {
        eprintln!("shmconf: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = check_outputs(&args) {
        eprintln!("shmconf: {e}");
        return ExitCode::from(2);
    }
    let choices = choices(&args);
    let composed = compose::compose(&choices);
    // A signal while an engine was probed: the run ends as it would later.
    if shmconf_harness::interrupt::interrupted() {
        return interrupted_exit();
    }
    let runner = match composed {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shmconf: {}", report::for_terminal(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    if args.expectations.is_some() {
        for id in runner.expectations.0.keys() {
            if !scenarios.iter().any(|s| &s.id == id) {
                eprintln!("shmconf: note: expectations name {id:?}, which is not among the selected scenarios");
            }
        }
    }
    for note in &runner.notes {
        eprintln!("shmconf: note: {}", report::for_terminal(note));
    }
    // Someone else's programs: check they start at all before judging them.
    if runner.implementation.origin != shmconf_harness::impls::Origin::Builtin {
        if let Err(e) = runner.preflight() {
            eprintln!("shmconf: {}", report::for_terminal(&e.to_string()));
            return ExitCode::from(2);
        }
    }
    let human = matches!(args.format, Format::Human);
    if human && !args.quiet {
        eprintln!(
            "shmconf: {} scenario(s), implementation {}, backend {}, oracle {}, jobs {}",
            scenarios.len(),
            report::for_terminal(&runner.implementation.name),
            runner.backend.name(),
            runner.oracle.name(),
            runner.parallel()
        );
    }
    let reporters = reporters(&args, scenarios.len());
    let progress = |r: &ScenarioResult| reporters.scenario_finished(r);
    let (started, start) = (std::time::SystemTime::now(), std::time::Instant::now());
    let fail_fast = if args.fail_fast {
        shmconf_harness::runner::FailFast::Yes
    } else {
        shmconf_harness::runner::FailFast::No
    };
    let results = runner.run_all(&scenarios, &progress, fail_fast);
    let run = report::Run {
        implementation: &runner.implementation.name,
        results: &results,
        time: report::RunTime {
            started,
            took: start.elapsed(),
        },
    };
    finish_run(&args, &reporters, &run)
}

/// The run's sinks: its format on stdout, then each report file asked for.
fn reporters(args: &RunArgs, total: usize) -> report::Reporters {
    let mut sinks = report::Reporters::default();
    match args.format {
        Format::Human => {
            let detail = if args.verbose {
                report::human::Detail::Full
            } else {
                report::human::Detail::Timeline
            };
            sinks.add(report::human::Human::new(
                detail,
                args.record.clone(),
                total,
                args.quiet,
            ));
        }
        Format::Json => sinks.add(report::json::Json),
        Format::Tap => sinks.add(report::tap::Tap),
    }
    if let Some(dir) = &args.record {
        sinks.add(report::record::Record {
            dir: dir.clone(),
            replay: args.order.is_some(),
        });
    }
    if let Some(path) = &args.summary {
        sinks.add(report::markdown::MarkdownSummary { path: path.clone() });
    }
    if let Some(path) = &args.junit {
        sinks.add(report::junit::Junit { path: path.clone() });
    }
    sinks
}

fn finish_run(args: &RunArgs, reporters: &report::Reporters, run: &report::Run<'_>) -> ExitCode {
    // Every report first: a file that cannot be written must not cost another.
    let unwritten = reporters.run_finished(run);
    for e in &unwritten {
        eprintln!("shmconf: {}", report::for_terminal(&e.to_string()));
    }
    if shmconf_harness::interrupt::interrupting_signal().is_some() {
        return interrupted_exit();
    }
    if !unwritten.is_empty() {
        return ExitCode::from(2);
    }
    let results = run.results;
    let summary = report::Summary::of(results);
    if summary.failed() > 0 {
        return ExitCode::from(1);
    }
    if summary.judged() == 0 && args.no_tests != NoTests::Pass {
        let why = results
            .iter()
            .find(|r| !r.message.is_empty())
            .map_or_else(String::new, |r| format!(" (first: {}: {})", r.id, r.message));
        let text = format!(
            "nothing was checked: all {} scenario(s) were skipped{}",
            summary.total,
            report::for_terminal(&why)
        );
        if args.no_tests == NoTests::Warn {
            eprintln!("shmconf: warning: {text}");
        } else {
            eprintln!("shmconf: {text}; exit {EXIT_NOTHING_CHECKED} (--no-tests pass to accept)");
            return ExitCode::from(EXIT_NOTHING_CHECKED);
        }
    }
    ExitCode::SUCCESS
}

fn bench(args: BenchArgs) -> ExitCode {
    use shmconf_harness::bench;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shmconf bench: {e}");
            return ExitCode::from(2);
        }
    };
    // "none": no transfer benchmark (e.g. only --harness or --explore).
    let mechanisms: Vec<String> = args.mechanisms.iter().filter(|m| *m != "none").cloned().collect();
    for m in &mechanisms {
        if !bench::MECHANISMS.contains(&m.as_str()) {
            eprintln!(
                "shmconf bench: unknown mechanism {m:?}; known: {}",
                bench::MECHANISMS.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    let opts = bench::Options {
        bytes: args.mib << 20,
        chunks: args.chunks,
        rounds: args.rounds,
        mechanisms,
        file_bytes: args.file_mib.map(|m| m << 20),
        harness: args.harness,
        harness_skip: args.harness_skip,
        explore: args.explore,
        explore_impl: args.explore_impl,
        exe,
    };
    // The system-call floor's orders come from an exploration composed as
    // `shmconf run` composes one (the bench is a layer below composition).
    let schedules = |sf: &ScenarioFile, ex: &shmconf_harness::scenario::Exploration| {
        let runner = compose::compose(&Choices {
            implementation: ImplChoice::Builtin(opts.explore_impl.clone()),
            backend: BackendChoice::Local(Isolation::Namespaces),
            oracle: OracleChoice::Auto,
            limits: Limits::default(),
            jobs: 1,
            expectations: None,
            replay_order: None,
        })
        .map_err(|e| format!("the system-call floor's exploration: {e}"))?;
        shmconf_harness::explore::executed_schedules(sf, ex, &runner.engine())
            .map_err(|r| format!("the system-call floor's exploration: {:?}: {}", r.status, r.message))
    };
    let results = match bench::run(&opts, &schedules) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shmconf bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", bench::summary::table(&results));
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&results).unwrap_or_default()) {
            eprintln!("shmconf bench: --json {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.svg {
        if let Err(e) = bench::summary::svg(&results, path) {
            eprintln!("shmconf bench: --svg {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
