//! A scenario in plain words (`shmconf show ID`): what each step does and
//! what it expects, so a reader of a failure can see what was meant without
//! opening the TOML.

use super::{
    Action, Body, EndingExpect, Expect, Exploration, FileOp, Orders, Program, Scenario, SegmentExpect, Spawn,
    StreamExpect, WaitFor, MAIN_NS,
};
use crate::events::escape_short;

pub fn describe(id: &str, s: &Scenario) -> String {
    let mut out = format!("{id}\n\n{}\n", s.description.trim());
    if !s.tags.is_empty() {
        out.push_str(&format!("\ntags: {}\n", s.tags.join(", ")));
    }
    if let Some(r) = &s.reference {
        out.push_str(&format!("reference: {r}\n"));
    }
    let files: Vec<&str> = s.files.iter().map(|f| f.as_str()).collect();
    out.push_str(&format!(
        "key files made first: {}\n",
        if files.is_empty() {
            "none".to_string()
        } else {
            files.join(", ")
        }
    ));
    for (name, d) in &s.namespaces {
        let how = match (&d.share, &d.docker) {
            (Some(t), _) => format!("the same IPC namespace as {t}"),
            (None, Some(mode)) => format!("a container with Docker IPC mode {mode:?}"),
            (None, None) => "an IPC namespace of its own".to_string(),
        };
        out.push_str(&format!("namespace {name}: {how}\n"));
    }
    if let Some(t) = s.timeout {
        out.push_str(&format!("time limit: {} ms\n", t.as_millis()));
    }
    out.push('\n');
    match &s.body {
        Body::Steps(steps) => {
            for step in steps {
                let ns = if step.ns == MAIN_NS {
                    String::new()
                } else {
                    format!(" [in {}]", step.ns)
                };
                out.push_str(&format!("{:>3}. {}{ns}\n", step.n, action(&step.action)));
            }
        }
        Body::Explore(ex) => out.push_str(&exploration(ex)),
    }
    out
}

fn text(b: &[u8]) -> String {
    escape_short(b, 60)
}

fn program(p: &Program) -> String {
    match p {
        Program::Role(r) => format!("the {}", r.as_str()),
        Program::Exec(argv) => format!("`{}`", argv.join(" ")),
    }
}

fn spawn(sp: &Spawn) -> String {
    let mut s = format!("start {} as {}", program(&sp.program), sp.name);
    let args: Vec<String> = sp
        .args
        .iter()
        .map(|a| {
            a.0.iter()
                .map(|p| match p {
                    super::ArgPart::Text(t) => t.clone(),
                    super::ArgPart::SavedId(n) => format!("{{id {n}}}"),
                })
                .collect()
        })
        .collect();
    if !args.is_empty() {
        s.push_str(&format!(" with arguments {}", args.join(" ")));
    }
    if let Some(uid) = sp.uid {
        s.push_str(&format!(" as uid {uid}"));
    }
    if !sp.stdin.is_empty() {
        s.push_str(&format!(", input {}", text(&sp.stdin)));
    }
    match sp.background {
        Some(b) => s.push_str(if b.close_stdin {
            ", and leave it running"
        } else {
            ", and leave it running with its input open"
        }),
        None => s.push_str(&format!("; {}", expect(&sp.expect))),
    }
    s
}

fn stream(name: &str, e: &StreamExpect) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(x) = &e.exact {
        v.push(format!("{name} exactly {}", text(x)));
    }
    for c in &e.contains {
        v.push(format!("{name} containing {}", text(c)));
    }
    if let Some(re) = &e.regex {
        v.push(format!("{name} matching /{re}/"));
    }
    v
}

fn expect(e: &Expect) -> String {
    let mut parts = vec![match &e.ending {
        EndingExpect::Success => "it must exit 0".to_string(),
        EndingExpect::Code(c) => format!("it must exit {c}"),
        EndingExpect::Any => "any exit is fine".to_string(),
        EndingExpect::Nonzero => "it must fail (nonzero exit)".to_string(),
        EndingExpect::Refusal => "it must refuse (a nonzero exit, not a signal, with a message on stderr)".to_string(),
        EndingExpect::SuccessOrRefusal => {
            "it must exit 0 or refuse (a nonzero exit with a message on stderr)".to_string()
        }
        EndingExpect::Signal(s) => format!("it must be killed by {}", s.as_str()),
    }];
    parts.extend(stream("stdout", &e.stdout));
    parts.extend(stream("stderr", &e.stderr));
    parts.join(", ")
}

fn segment(e: &SegmentExpect) -> String {
    if e.absent {
        return format!("no segment with key {}", e.key);
    }
    let mut fields = Vec::new();
    if let Some(v) = e.size {
        fields.push(format!("size {v}"));
    }
    if let Some(v) = e.mode {
        fields.push(format!("mode {v:04o}"));
    }
    if let Some(v) = e.nattch {
        fields.push(format!("{v} attached"));
    }
    if let Some(v) = e.dest {
        fields.push(
            if v {
                "marked for destruction"
            } else {
                "not marked for destruction"
            }
            .into(),
        );
    }
    if let Some(v) = &e.content {
        fields.push(format!("text {}", text(v)));
    }
    if let Some(v) = &e.prefix {
        fields.push(format!("starting with {}", text(v)));
    }
    if let Some(v) = e.count {
        fields.push(format!("{v} of them"));
    }
    if let Some(v) = &e.save_id {
        fields.push(format!("its id remembered as {v}"));
    }
    if fields.is_empty() {
        format!("a segment with key {}", e.key)
    } else {
        format!("a segment with key {} ({})", e.key, fields.join(", "))
    }
}

fn action(a: &Action) -> String {
    match a {
        Action::Schedule(s) => format!(
            "step the traced runs {} from one system call to the next{}",
            s.runs.join(", "),
            if s.prefix.is_empty() {
                String::new()
            } else {
                format!(
                    ", first in the order {}",
                    s.prefix.iter().map(|c| c.label()).collect::<Vec<_>>().join(",")
                )
            }
        ),
        Action::Spawn(sp) => spawn(sp),
        Action::Feed { proc, data, close } => format!(
            "give {proc} the input {}{}",
            text(data),
            if *close { " and close it" } else { "" }
        ),
        Action::Wait { proc, until } => match until {
            WaitFor::Exit(e) => format!("wait for {proc} to exit; {}", expect(e)),
            WaitFor::Stdout(t) => format!("wait until {proc} prints {}", text(t)),
            WaitFor::Attached(k) => {
                format!("wait until the kernel shows a segment with key {k} attached ({proc} runs)")
            }
            WaitFor::ReadingStdin => format!("wait until {proc} blocks reading its input"),
        },
        Action::Kill {
            proc,
            signal,
            expect: e,
        } => {
            format!("send {} to {proc} and wait for its end; {}", signal.as_str(), expect(e))
        }
        Action::Segments(c) => {
            let mut s = String::from("check the kernel's segment table: ");
            let listed: Vec<String> = c.expect.iter().map(segment).collect();
            s.push_str(&if listed.is_empty() {
                "no segments".to_string()
            } else {
                listed.join("; ")
            });
            if c.partial {
                s.push_str("; others may exist");
            } else if !c.expect.is_empty() {
                s.push_str("; nothing else");
            }
            if let Some(n) = c.count {
                s.push_str(&format!("; {n} in all"));
            }
            s
        }
        Action::File(op) => match op {
            FileOp::Create(f) => format!("create the empty file {f}"),
            FileOp::Remove(f) => format!("remove the file {f}"),
            FileOp::Recreate(f) => format!("replace {f} by a new file (new inode, new key)"),
            FileOp::Link { from, to } => format!("hard-link {to} to {from} (same inode, same key)"),
        },
        Action::CollideFiles { a, b } => {
            format!("make files {a} and {b} whose inodes are equal modulo 65536 (their ftok keys collide)")
        }
        Action::Sysctl { sysctl, value } => format!("set {} = {value} in this IPC namespace", sysctl.name()),
        Action::Stop { ns } => format!("remove the container of namespace {ns}"),
        Action::DropNs { ns } => format!("let go of namespace {ns} (it lives on only through its processes)"),
        Action::ShmemMark { mark } => format!("note the machine's shared memory (Shmem) as {mark}"),
        Action::ShmemFreed { since, at_least_kib } => {
            format!("wait until Shmem is at least {at_least_kib} KiB below {since}")
        }
        Action::Observe => "record every segment with its content".to_string(),
    }
}

fn exploration(ex: &Exploration) -> String {
    let syscall = ex.granularity == crate::scenario::Granularity::Syscall;
    let mut out = if syscall {
        String::from(
            "explore the orders of these runs one system call at a time (each run traced, unmodified; \
             each order in fresh namespaces), the segment table held against the SysV semantics of the calls \
             made after every step, and judged by properties:\n",
        )
    } else {
        String::from("explore the orders of these runs, each order in fresh namespaces, judged against the model:\n")
    };
    for r in &ex.runs {
        let mut s = format!("  {}: the {}", r.name, r.role.role().as_str());
        if r.pieces.len() > 1 {
            let pieces: Vec<String> = r.pieces.iter().map(|p| text(p)).collect();
            s.push_str(&format!(
                " with input in pieces {}, each fed as an event",
                pieces.join(", ")
            ));
        } else if !r.stdin.is_empty() {
            s.push_str(&format!(" with input {}", text(&r.stdin)));
        }
        if r.pause {
            s.push_str(", paused after attaching (attach and input are two events)");
        }
        if r.keep {
            s.push_str(", keeping the segment");
        }
        if r.key_file.as_str() != "shmfile" || r.proj_id != 65 {
            s.push_str(&format!(", key ftok:{}:{}", r.key_file, r.proj_id));
        }
        out.push_str(&s);
        out.push('\n');
    }
    for e in &ex.events {
        let (op, path) = e.op.describe();
        out.push_str(&format!("  {}: {op} {path}\n", e.name));
    }
    if syscall {
        out.push_str("no run may be killed by a signal (an error exit is allowed)\n");
        for p in &ex.properties {
            out.push_str(&match p {
                crate::scenario::Property::WholeLines => {
                    "property whole-lines: no reader prints part of a writer's line\n".to_string()
                }
                crate::scenario::Property::DetachAttached => {
                    "property detach-attached: a run detaches each of its attachments once\n".to_string()
                }
            });
        }
        out.push_str(if ex.reduction {
            "every order, one per class of equivalent interleavings (partial-order reduction)\n"
        } else {
            "every order\n"
        });
        return out;
    }
    out.push_str(&match ex.orders {
        Orders::All => "every order\n".to_string(),
        Orders::Sample { n, seed } => format!("{n} orders sampled with seed {seed}\n"),
    });
    out
}
