//! The `program` step: SysV operations run in order by one process of ours
//! (`shmconf probe program`, the fuzzer's executor) and judged by the
//! fuzzer's reference model. It is how a divergence `shmconf fuzz` found is
//! written back as a scenario anyone can rerun on any backend.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{
    Arg, ArgPart, EndingExpect, Expect, IpcMode, KeptCapabilities, Lowered, NamespaceDecl, Program, Role, Seen, Spawn,
};
use crate::sysv_ops::{self as program, Op};

/// More than any shrunk divergence needs (they keep at most a handful),
/// few enough that the executor's report stays small.
pub const MAX_PROGRAM_OPS: usize = 64;

/// Lower step `n`'s operations, run in namespace `ns`.
pub(super) fn lower(
    n: usize,
    ops: &[Spanned<String>],
    at: usize,
    ns: &str,
    decl: Option<&NamespaceDecl>,
    seen: &mut Seen,
) -> Lowered<Spawn> {
    let fail = |m: String| (at, format!("step {n}: program: {m}"));
    if ops.is_empty() || ops.len() > MAX_PROGRAM_OPS {
        return Err(fail(format!(
            "expected 1 to {MAX_PROGRAM_OPS} operations, found {}",
            ops.len()
        )));
    }
    // The model starts from an empty table and sees every segment the
    // executor lists: the namespace must hold nothing it did not make.
    if decl.and_then(|d| d.docker.as_ref()).is_some_and(IpcMode::touches_host) {
        return Err(fail(format!(
            "namespace {ns:?} is the harness's or the host's, whose table holds segments the program did not make; run it in a namespace of the scenario's own"
        )));
    }
    if !seen.ran_in.insert(ns.to_string()) {
        return Err(fail(format!(
            "the model starts from an empty table, so a program step comes before any run, exec or program step in namespace {ns:?}"
        )));
    }
    let parsed = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            op.get_ref()
                .parse::<Op>()
                .map_err(|e| (op.span().start, format!("step {n}: program operation {}: {e}", i + 1)))
        })
        .collect::<Lowered<Vec<Op>>>()?;
    let name = format!("program@{n}");
    if !seen.procs.insert(name.clone()) {
        return Err(fail(format!("process name {name:?} is already used")));
    }
    let program = program::Program { seed: 0, ops: parsed };
    let stdin = serde_json::to_string(&program).map_err(|e| fail(e.to_string()))?;
    Ok(Spawn {
        traced: false,
        name,
        program: Program::Role(Role::Probe),
        args: vec![Arg(vec![ArgPart::Text("program".into())])],
        stdin: format!("{stdin}\n").into_bytes(),
        env: BTreeMap::new(),
        uid: None,
        gid: None,
        keep: KeptCapabilities {
            ipc_owner: true,
            set_ids: program.ops.iter().any(|op| matches!(op, Op::Become { .. })),
        },
        background: None,
        expect: Expect {
            ending: EndingExpect::Success,
            program: Some(program),
            ..Expect::default()
        },
    })
}
