//! Order exploration: every order (or a sample) of a scenario's runs is
//! executed for real, each in a fresh IPC namespace, and compared after every
//! event with the reference model ([`crate::model`]): the segment table
//! (key, size, nattch, SHM_DEST, content) and, at the end, each process's
//! stdout and exit code. A failing order is shrunk (runs and events dropped
//! while it still fails) and reported with a one-line replay command.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmconf::sysv::{Key, Segment};
use shmconf::SegTable;

use crate::check::Status;
use crate::events::escape_short;
use crate::model::{Event, FileId, Model, Role, RunSpec};
use crate::procs::{self, Proc, WaitOutcome};
use crate::runner::{RunConfig, ScenarioFile, ScenarioResult};
use crate::scenario::{Explore, Orders};

/// One orderable event of an exploration, by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `w1` (a whole run), `w1:attach`, `w1:input`.
    Run { run: String, part: Part },
    /// A key-file event, by its name.
    File { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    Attach,
    Input,
}

impl Step {
    pub fn label(&self) -> String {
        match self {
            Step::Run { run, part: Part::Whole } => run.clone(),
            Step::Run {
                run,
                part: Part::Attach,
            } => format!("{run}:attach"),
            Step::Run { run, part: Part::Input } => format!("{run}:input"),
            Step::File { name } => name.clone(),
        }
    }

    fn owner(&self) -> &str {
        match self {
            Step::Run { run, .. } => run,
            Step::File { name } => name,
        }
    }
}

pub fn label_order(order: &[Step]) -> String {
    order.iter().map(Step::label).collect::<Vec<_>>().join(",")
}

/// Each run's (or event's) own sequence of steps.
fn queues(ex: &Explore) -> Vec<Vec<Step>> {
    let mut q: Vec<Vec<Step>> = ex
        .runs
        .iter()
        .map(|r| {
            if r.role == "writer" && r.pause {
                vec![
                    Step::Run {
                        run: r.name.clone(),
                        part: Part::Attach,
                    },
                    Step::Run {
                        run: r.name.clone(),
                        part: Part::Input,
                    },
                ]
            } else {
                vec![Step::Run {
                    run: r.name.clone(),
                    part: Part::Whole,
                }]
            }
        })
        .collect();
    q.extend(ex.events.iter().map(|e| vec![Step::File { name: e.name.clone() }]));
    q
}

/// Most orders `orders = "all"` may expand to.
pub const MAX_ORDERS: usize = 50_000;

/// Every interleaving of the queues that keeps each queue's own order.
pub fn all_orders(queues: &[Vec<Step>]) -> Result<Vec<Vec<Step>>, String> {
    fn go(qs: &mut [std::collections::VecDeque<Step>], cur: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) -> bool {
        if qs.iter().all(|q| q.is_empty()) {
            out.push(cur.clone());
            return out.len() <= MAX_ORDERS;
        }
        for i in 0..qs.len() {
            if let Some(s) = qs[i].pop_front() {
                cur.push(s.clone());
                let ok = go(qs, cur, out);
                cur.pop();
                qs[i].push_front(s);
                if !ok {
                    return false;
                }
            }
        }
        true
    }
    let mut qs: Vec<_> = queues.iter().map(|q| q.iter().cloned().collect()).collect();
    let mut out = Vec::new();
    if !go(&mut qs, &mut Vec::new(), &mut out) {
        return Err(format!(
            "more than {MAX_ORDERS} orders: use orders = {{ sample = N, seed = S }}"
        ));
    }
    Ok(out)
}

/// `n` distinct random interleavings from a seeded generator (deterministic).
pub fn sample_orders(queues: &[Vec<Step>], n: usize, seed: u64) -> Vec<Vec<Step>> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for _ in 0..n * 20 {
        if out.len() == n {
            break;
        }
        let mut qs: Vec<std::collections::VecDeque<Step>> =
            queues.iter().map(|q| q.iter().cloned().collect()).collect();
        let mut order = Vec::new();
        while qs.iter().any(|q| !q.is_empty()) {
            let live: Vec<usize> = (0..qs.len()).filter(|&i| !qs[i].is_empty()).collect();
            let pick = live[(next() % live.len() as u64) as usize];
            order.push(qs[pick].pop_front().unwrap());
        }
        if seen.insert(label_order(&order)) {
            out.push(order);
        }
    }
    out
}

/// Parse `--order "w1:attach,r1,w1:input"` against the scenario's steps.
/// Runs and events it does not mention are left out (as shrinking does).
pub fn parse_order(ex: &Explore, text: &str) -> Result<Vec<Step>, String> {
    let known: Vec<Step> = queues(ex).into_iter().flatten().collect();
    let order: Vec<Step> = text
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            known.iter().find(|s| s.label() == l).cloned().ok_or_else(|| {
                format!(
                    "--order: unknown event {l:?}; this scenario's events are {}",
                    known.iter().map(Step::label).collect::<Vec<_>>().join(", ")
                )
            })
        })
        .collect::<Result<_, _>>()?;
    for q in queues(ex) {
        let positions: Vec<usize> = q.iter().filter_map(|s| order.iter().position(|o| o == s)).collect();
        if !positions.is_empty() && (positions.len() != q.len() || positions.windows(2).any(|w| w[0] > w[1])) {
            return Err(format!(
                "--order: {} must all appear, in order",
                q.iter().map(Step::label).collect::<Vec<_>>().join(" then ")
            ));
        }
    }
    Ok(order)
}

/// What one order did that the model did not predict.
#[derive(Debug, Clone)]
pub struct OrderOutcome {
    pub order: Vec<Step>,
    pub problems: Vec<String>,
    /// A setup or harness error, not a disagreement.
    pub broken: Option<String>,
}

struct Ctx<'a> {
    ex: &'a Explore,
    files: &'a [String],
    cfg: &'a RunConfig,
}

fn run_specs(ex: &Explore, order: &[Step]) -> Vec<RunSpec> {
    ex.runs
        .iter()
        .filter(|r| order.iter().any(|s| s.owner() == r.name))
        .map(|r| RunSpec {
            name: r.name.clone(),
            role: if r.role == "writer" { Role::Writer } else { Role::Reader },
            key_file: r.key_file.clone().unwrap_or_else(|| "shmfile".into()),
            proj_id: r.proj_id.unwrap_or(65),
            size: 1024,
            stdin: r
                .stdin
                .as_ref()
                .map(|b| b.to_vec().unwrap_or_default())
                .unwrap_or_default(),
            pause: r.pause,
            keep: r.keep,
        })
        .collect()
}

/// A segment as compared: what both the model and the kernel can say.
type SegView = (String, u64, u64, bool, String);

fn model_view(m: &Model) -> Vec<SegView> {
    let mut v: Vec<SegView> = m
        .segs
        .iter()
        .map(|s| {
            (
                format!("0x{:08x}", s.key as u32),
                s.size as u64,
                s.nattch as u64,
                s.dest,
                crate::events::escape(&s.text()),
            )
        })
        .collect();
    v.sort();
    v
}

fn kernel_view() -> std::io::Result<Vec<SegView>> {
    let table = SegTable::read()?;
    let mut v: Vec<SegView> = table
        .rows
        .iter()
        .map(|r| {
            let text = Segment::from_id(r.shmid)
                .attach_unseen()
                .map(|a| a.read_c_string_capped(usize::MAX))
                .unwrap_or_else(|e| format!("<unreadable: {e}>").into_bytes());
            (
                r.key.to_string(),
                r.size,
                r.nattch,
                r.is_marked_for_destruction(),
                crate::events::escape(&text),
            )
        })
        .collect();
    v.sort();
    Ok(v)
}

fn show(v: &[SegView]) -> String {
    if v.is_empty() {
        return "no segments".into();
    }
    v.iter()
        .map(|(k, size, nattch, dest, text)| {
            format!(
                "{{key {k} size {size} nattch {nattch}{} \"{text}\"}}",
                if *dest { " DEST" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Execute one order in a fresh IPC namespace on a thread of its own.
fn execute(ctx: &Ctx, order: &[Step]) -> OrderOutcome {
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).map_err(|e| format!("unshare: {e}"))?;
            execute_here(ctx, order)
        })
        .join()
        .unwrap_or_else(|_| Err("the order's thread panicked".into()))
    });
    match result {
        Ok(problems) => OrderOutcome {
            order: order.to_vec(),
            problems,
            broken: None,
        },
        Err(b) => OrderOutcome {
            order: order.to_vec(),
            problems: vec![],
            broken: Some(b),
        },
    }
}

fn file_id(path: &Path) -> Result<FileId, String> {
    let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(FileId {
        dev: md.dev(),
        ino: md.ino(),
    })
}

fn execute_here(ctx: &Ctx, order: &[Step]) -> Result<Vec<String>, String> {
    let dir = tempfile::Builder::new()
        .prefix("shmconf-explore-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    let runs = run_specs(ctx.ex, order);
    let mut model = Model::new(&runs);
    for f in ctx.files {
        let p = dir.path().join(f);
        std::fs::write(&p, b"").map_err(|e| e.to_string())?;
        model.apply(&Event::File(f.clone(), file_id(&p)?)).map_err(|e| e.0)?;
    }
    let imp = &ctx.cfg.implementation;
    let limit = ctx.cfg.exec.step_timeout;
    let mut procs: BTreeMap<String, Proc> = BTreeMap::new();
    let mut outputs: BTreeMap<String, (Vec<u8>, i32)> = BTreeMap::new();
    let mut problems = Vec::new();
    let spawn = |run: &RunSpec| -> Result<Proc, String> {
        let role = if run.role == Role::Writer { "writer" } else { "reader" };
        let argv = imp.command(role);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(dir.path());
        if run.key_file != "shmfile" {
            cmd.args(["--key-file", &run.key_file]);
        }
        if run.proj_id != 65 {
            cmd.args(["--proj-id", &run.proj_id.to_string()]);
        }
        if run.keep {
            cmd.arg("--keep");
        }
        Proc::spawn(&run.name, cmd, None).map_err(|e| format!("cannot start {} ({}): {e}", run.name, argv.join(" ")))
    };
    let finish = |p: &mut Proc, outputs: &mut BTreeMap<String, (Vec<u8>, i32)>, problems: &mut Vec<String>| match p
        .wait_exit(Instant::now() + limit)
    {
        WaitOutcome::Done((ending, _)) => {
            let code = match ending {
                crate::events::Ending::Exited { code } => code,
                crate::events::Ending::Signaled { .. } => -1,
            };
            if let crate::events::Ending::Signaled { signal } = &ending {
                problems.push(format!("{} was killed by {signal}", p.name));
            }
            outputs.insert(p.name.clone(), (p.output().0, code));
        }
        WaitOutcome::TimedOut => {
            p.kill_group();
            problems.push(format!(
                "{} did not exit within {} ms (killed with its group)",
                p.name,
                limit.as_millis()
            ));
            outputs.insert(p.name.clone(), (p.output().0, -1));
        }
        WaitOutcome::Interrupted => {}
    };
    for (i, step) in order.iter().enumerate() {
        if procs::interrupted() {
            return Err("interrupted".into());
        }
        let event = match step {
            Step::File { name } => {
                let e = ctx.ex.events.iter().find(|e| &e.name == name).expect("parsed");
                if let Some(f) = &e.recreate_file {
                    let tmp = dir.path().join(format!("{f}.new"));
                    std::fs::write(&tmp, b"")
                        .and_then(|()| std::fs::rename(&tmp, dir.path().join(f)))
                        .map_err(|e| e.to_string())?;
                    Event::File(f.clone(), file_id(&dir.path().join(f))?)
                } else if let Some(f) = &e.create_file {
                    std::fs::write(dir.path().join(f), b"").map_err(|e| e.to_string())?;
                    Event::File(f.clone(), file_id(&dir.path().join(f))?)
                } else {
                    let f = e.remove_file.as_ref().expect("validated");
                    std::fs::remove_file(dir.path().join(f)).map_err(|e| e.to_string())?;
                    Event::RemoveFile(f.clone())
                }
            }
            Step::Run { run, part } => {
                let spec = runs.iter().find(|r| &r.name == run).expect("parsed");
                match part {
                    Part::Whole => {
                        let mut p = spawn(spec)?;
                        let _ = p.write_stdin(&spec.stdin, true);
                        finish(&mut p, &mut outputs, &mut problems);
                        Event::Run(run.clone())
                    }
                    Part::Attach => {
                        // Attached and waiting: its prompt is out, or (for a
                        // program that does not flush it) the kernel shows one
                        // more attachment on its key; or it exited early.
                        let key = model.key_of(spec);
                        let attached = || -> u64 {
                            key.and_then(|k| {
                                SegTable::read()
                                    .ok()
                                    .map(|t| t.by_key(Key::from_raw(k)).map(|r| r.nattch).sum())
                            })
                            .unwrap_or(0)
                        };
                        let before = attached();
                        let p = spawn(spec)?;
                        let deadline = Instant::now() + limit;
                        loop {
                            match p.wait_stdout(
                                b"Write Data: ",
                                (Instant::now() + Duration::from_millis(1)).min(deadline),
                            ) {
                                WaitOutcome::Done(()) => break,
                                _ if attached() > before => break,
                                _ if p.has_exited() || Instant::now() >= deadline || procs::interrupted() => break,
                                _ => {}
                            }
                        }
                        procs.insert(run.clone(), p);
                        Event::Attach(run.clone())
                    }
                    Part::Input => {
                        let mut p = procs.remove(run).expect("attach precedes input");
                        let _ = p.write_stdin(&spec.stdin, true);
                        finish(&mut p, &mut outputs, &mut problems);
                        Event::Input(run.clone())
                    }
                }
            }
        };
        model.apply(&event).map_err(|e| format!("model: {}", e.0))?;
        let kernel = kernel_view().map_err(|e| format!("reading the segment table: {e}"))?;
        let expected = model_view(&model);
        if kernel != expected {
            problems.push(format!(
                "after {} (event {} of {}): the model expects {}, the kernel has {}",
                step.label(),
                i + 1,
                order.len(),
                show(&expected),
                show(&kernel)
            ));
            break; // later tables follow from this difference
        }
    }
    for run in &runs {
        let (Some(want), Some((stdout, code))) = (model.outcome(&run.name), outputs.get(&run.name)) else {
            continue;
        };
        if &want.stdout != stdout {
            problems.push(format!(
                "{}: stdout: the model expects {}, it printed {}",
                run.name,
                escape_short(&want.stdout, 120),
                escape_short(stdout, 120)
            ));
        }
        if want.exit != *code {
            problems.push(format!(
                "{}: exit code: the model expects {}, it exited {code}",
                run.name, want.exit
            ));
        }
    }
    Ok(problems)
}

/// Run the exploration of one scenario file.
pub fn run(sf: &ScenarioFile, cfg: &RunConfig, replay: Option<&str>) -> ScenarioResult {
    let start = Instant::now();
    let ex = sf.scenario.explore.as_ref().expect("an exploration scenario");
    let result = |status, message: String, problems| ScenarioResult {
        id: sf.id.clone(),
        status,
        duration: start.elapsed(),
        message,
        problems,
        log: None,
    };
    let orders = match (replay, &ex.orders) {
        (Some(text), _) => parse_order(ex, text).map(|o| vec![o]),
        (None, Orders::All(_)) => all_orders(&queues(ex)),
        (None, Orders::Sample { sample, seed }) => Ok(sample_orders(&queues(ex), *sample, *seed)),
    };
    let orders = match orders {
        Ok(o) => o,
        Err(e) => return result(Status::Broken, e, vec![]),
    };
    let ctx = Ctx {
        ex,
        files: &sf.scenario.files,
        cfg,
    };
    let limit = sf
        .scenario
        .timeout_ms
        .map_or(cfg.exec.scenario_timeout, Duration::from_millis);
    let outcomes = execute_all(&ctx, &orders, start + limit);
    let not_run = orders.len() - outcomes.len();
    let broken: Vec<&OrderOutcome> = outcomes.iter().filter(|o| o.broken.is_some()).collect();
    if let Some(b) = broken.first() {
        return result(
            Status::Broken,
            format!(
                "order {}: {}",
                label_order(&b.order),
                b.broken.as_deref().unwrap_or_default()
            ),
            vec![],
        );
    }
    let failed: Vec<&OrderOutcome> = outcomes.iter().filter(|o| !o.problems.is_empty()).collect();
    let rate = orders.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);
    if failed.is_empty() && not_run > 0 {
        return result(
            Status::Timeout,
            format!(
                "explored {} of {} orders within the scenario limit of {} ms (all agreed); raise timeout_ms or sample",
                outcomes.len(),
                orders.len(),
                limit.as_millis()
            ),
            vec![],
        );
    }
    if failed.is_empty() {
        return result(
            Status::Pass,
            format!("{} orders agree with the model ({rate:.0} orders/s)", orders.len()),
            vec![],
        );
    }
    // Shrink the shortest failing order: drop whole runs/events while it still fails.
    let shortest = failed.iter().min_by_key(|o| o.order.len()).expect("non-empty");
    let shrunk = shrink(&ctx, shortest);
    let replay = replay_command(sf, cfg, &shrunk.order);
    let mut problems: Vec<String> = shrunk.problems.clone();
    problems.push(format!("replay: {replay}"));
    for o in failed.iter().take(5) {
        problems.push(format!("also failing: {} ({})", label_order(&o.order), o.problems[0]));
    }
    result(
        Status::Fail,
        format!(
            "{} of {} orders disagree with the model{}; shortest failing order: {} ({} events): {}; replay: {replay}",
            failed.len(),
            outcomes.len(),
            if not_run > 0 {
                format!(" (stopped early; {not_run} of {} orders not run)", orders.len())
            } else {
                String::new()
            },
            label_order(&shrunk.order),
            shrunk.order.len(),
            shrunk.problems[0]
        ),
        problems,
    )
}

/// Exploration stops early after this many failing orders (each may have
/// waited for timeouts; the first ones say enough).
pub const MAX_FAILING_ORDERS: usize = 20;

fn execute_all(ctx: &Ctx, orders: &[Vec<Step>], deadline: Instant) -> Vec<OrderOutcome> {
    let failing = AtomicUsize::new(0);
    let stop =
        || procs::interrupted() || failing.load(Ordering::SeqCst) >= MAX_FAILING_ORDERS || Instant::now() >= deadline;
    crate::runner::parallel_map(orders.len(), ctx.cfg.jobs, stop, |i| {
        let outcome = execute(ctx, &orders[i]);
        if !outcome.problems.is_empty() || outcome.broken.is_some() {
            failing.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    })
}

fn shrink(ctx: &Ctx, failing: &OrderOutcome) -> OrderOutcome {
    let mut best = failing.clone();
    loop {
        let owners: Vec<String> = {
            let mut o: Vec<String> = best.order.iter().map(|s| s.owner().to_string()).collect();
            o.dedup();
            o.sort();
            o.dedup();
            o
        };
        let mut improved = false;
        for owner in owners {
            let candidate: Vec<Step> = best.order.iter().filter(|s| s.owner() != owner).cloned().collect();
            if candidate.is_empty() {
                continue;
            }
            let outcome = execute(ctx, &candidate);
            if outcome.broken.is_none() && !outcome.problems.is_empty() {
                best = outcome;
                improved = true;
                break;
            }
        }
        if !improved {
            return best;
        }
    }
}

fn replay_command(sf: &ScenarioFile, cfg: &RunConfig, order: &[Step]) -> String {
    let imp = &cfg.implementation;
    let impl_args = if imp.builtin {
        format!("--impl {}", imp.name)
    } else {
        let quote = |argv: &[String]| {
            let joined = shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_default();
            shlex::try_quote(&joined).map(|q| q.into_owned()).unwrap_or(joined)
        };
        format!("--writer {} --reader {}", quote(&imp.writer), quote(&imp.reader))
    };
    format!(
        "shmconf run {} {impl_args} --order '{}'",
        sf.path.display(),
        label_order(order)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(spec: &[(&str, bool)]) -> Vec<Vec<Step>> {
        spec.iter()
            .map(|(n, pause)| {
                if *pause {
                    vec![
                        Step::Run {
                            run: n.to_string(),
                            part: Part::Attach,
                        },
                        Step::Run {
                            run: n.to_string(),
                            part: Part::Input,
                        },
                    ]
                } else {
                    vec![Step::Run {
                        run: n.to_string(),
                        part: Part::Whole,
                    }]
                }
            })
            .collect()
    }

    #[test]
    fn counts_are_multinomial() {
        assert_eq!(
            all_orders(&q(&[("a", false), ("b", false), ("c", false)]))
                .unwrap()
                .len(),
            6
        );
        // 3 writers x 2 readers: 5! orders.
        let five = q(&[
            ("w1", false),
            ("w2", false),
            ("w3", false),
            ("r1", false),
            ("r2", false),
        ]);
        assert_eq!(all_orders(&five).unwrap().len(), 120);
        // A paused writer among two readers: 4!/2! = 12.
        assert_eq!(
            all_orders(&q(&[("w", true), ("r1", false), ("r2", false)]))
                .unwrap()
                .len(),
            12
        );
    }

    #[test]
    fn every_order_keeps_each_runs_own_order() {
        for o in all_orders(&q(&[("w", true), ("v", true), ("r", false)])).unwrap() {
            let pos = |l: &str| o.iter().position(|s| s.label() == l).unwrap();
            assert!(pos("w:attach") < pos("w:input"));
            assert!(pos("v:attach") < pos("v:input"));
        }
    }

    #[test]
    fn samples_are_distinct_valid_and_deterministic() {
        let qs = q(&[("w1", true), ("w2", true), ("r1", false), ("r2", false)]);
        let a = sample_orders(&qs, 30, 7);
        assert_eq!(a.len(), 30);
        let labels: std::collections::BTreeSet<String> = a.iter().map(|o| label_order(o)).collect();
        assert_eq!(labels.len(), 30);
        assert_eq!(a, sample_orders(&qs, 30, 7));
        let all = all_orders(&qs).unwrap();
        assert!(a.iter().all(|o| all.contains(o)));
    }
}
