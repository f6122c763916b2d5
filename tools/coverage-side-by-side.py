#!/usr/bin/env python3
"""Which of the man pages' answers the hand-written catalogue reaches, beside the fuzzer's.

The fuzzer counts what each of its calls answered (`shmconf fuzz --coverage`).
The catalogue's programs are not ours to count inside, so they are watched
from outside: the whole catalogue runs under `strace -f` (every process the
harness starts, confined as usual), and every shmget, shmat, shmdt and shmctl
made by a started program (a process that called execve: the writers, the
readers and the probe, not the harness's own threads, which read the table)
is classified into the fuzzer's rows (the call and its answer: an id, an
errno, ...). Rows that are not system calls (stores and loads through an
attachment; seteuid, where the catalogue starts a program as another uid instead) are the fuzzer's alone ("n/a"). Calls the
fuzzer does not make (SHM_STAT, IPC_INFO, ...) are listed below the table.

The system-call scenarios (orders/syscall-*) are left out: they trace their
programs themselves, and a process has one tracer.

usage: coverage-side-by-side.py SHMCONF PROGRAMS OPS
  e.g. coverage-side-by-side.py target/release/shmconf 300 30
Exit 2 on bad input, 1 if a run failed.
"""
import collections
import os
import re
import subprocess
import sys
import tempfile

# strace's names for the answers that are not errnos, as the fuzzer writes them.
SHMCTL_ROWS = {"IPC_STAT": "IPC_STAT", "IPC_RMID": "IPC_RMID", "IPC_SET": "IPC_SET"}
LINE = re.compile(r"^(\d+) +(.*)$")
CALL = re.compile(r"^(shmget|shmat|shmdt|shmctl)\((.*)\) += (-?\w+)(?: (E[A-Z]+))?")
SHM_DEST = 0o1000


def fuzzer_table(shmconf, programs, ops):
    """Rows (call, answer) in the fuzzer's order, and how often it reached each."""
    out = subprocess.run(
        [shmconf, "fuzz", "--programs", programs, "--ops", ops, "--coverage"],
        capture_output=True, text=True, check=False,
    )
    if out.returncode not in (0, 1):
        sys.exit(f"shmconf fuzz failed ({out.returncode}): {out.stderr.strip()}")
    rows = []
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("call", "---"):
            rows.append((cells[0], cells[1], 0 if cells[2] == "never" else int(cells[2])))
    if not rows:
        sys.exit("shmconf fuzz --coverage printed no table")
    return rows


def joined_calls(trace):
    """Each traced call as one line (strace splits a call that another process
    interrupted into '<unfinished ...>' and '<... resumed>'), with its pid, and
    the pids that called execve."""
    pending, programs, calls = {}, set(), []
    for raw in trace:
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, rest = m.groups()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")]
            continue
        resumed = re.match(r"^<\.\.\. \w+ resumed>(.*)$", rest)
        if resumed:
            rest = pending.pop(pid, "") + resumed.group(1)
        if rest.startswith("execve(") and " = 0" in rest:
            programs.add(pid)
        calls.append((pid, rest))
    return calls, programs


def catalogue_counts(shmconf):
    """(call, answer) -> count, and the other shmctl commands seen."""
    with tempfile.TemporaryDirectory() as tmp:
        trace_file = os.path.join(tmp, "trace")
        run = subprocess.run(
            ["strace", "-f", "-qq", "-e", "trace=shmget,shmat,shmdt,shmctl,execve", "-e", "signal=none",
             "-o", trace_file, shmconf, "run", "--jobs", "2", "--skip", "orders/syscall-*"],
            capture_output=True, text=True, check=False,
        )
        summary = [l for l in run.stdout.splitlines() if l.startswith("shmconf:")]
        if run.returncode != 0:
            sys.exit(f"the catalogue did not pass under strace ({run.returncode}): {run.stdout[-2000:]}{run.stderr[-500:]}")
        with open(trace_file, encoding="utf-8", errors="replace") as f:
            calls, programs = joined_calls(f)
    counts, others = collections.Counter(), collections.Counter()
    for pid, rest in calls:
        m = CALL.match(rest)
        if not m or pid not in programs:
            continue
        name, args, ret, errno = m.groups()
        failed = ret == "-1"
        if name == "shmget":
            counts[("shmget", errno if failed else "id")] += 1
        elif name == "shmat":
            counts[("shmat", errno if failed else "attached")] += 1
        elif name == "shmdt":
            counts[("shmdt", errno if failed else "0")] += 1
        else:
            cmd = args.split(", ")[1] if ", " in args else "?"
            row = SHMCTL_ROWS.get(cmd)
            if row is None:
                others[f"shmctl({cmd}): {errno if failed else 'ok'}"] += 1
            elif failed:
                counts[(row, errno)] += 1
            elif row == "IPC_STAT":
                mode = re.search(r"mode=(0[0-7]*)", args)
                removed = mode is not None and int(mode.group(1), 8) & SHM_DEST
                counts[(row, "stat of a removed segment" if removed else "stat")] += 1
            else:
                counts[(row, "0")] += 1
    return counts, others, summary


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-3], file=sys.stderr)
        return 2
    shmconf, programs, ops = sys.argv[1:]
    rows = fuzzer_table(shmconf, programs, ops)
    counts, others, summary = catalogue_counts(shmconf)
    syscall_rows = {"shmget", "shmat", "shmdt", "IPC_STAT", "IPC_RMID", "IPC_SET"}
    print(f"| call | answer | fuzzer ({programs} programs of {ops}) | catalogue |")
    print("| --- | --- | ---: | ---: |")
    reached = {"fuzzer": 0, "catalogue": 0}
    comparable = 0
    for call, answer, fuzzed in rows:
        if call in syscall_rows:
            comparable += 1
            n = counts.pop((call, answer), 0)
            cat = str(n) if n else "never"
            reached["catalogue"] += bool(n)
        else:
            cat = "n/a"
        reached["fuzzer"] += bool(fuzzed)
        print(f"| {call} | {answer} | {fuzzed or 'never'} | {cat} |")
    for (call, answer), n in sorted(counts.items()):
        print(f"| {call} | {answer} (not in the man pages' list) | never | {n} |")
    print()
    print(f"fuzzer: {reached['fuzzer']} of {len(rows)} answers; catalogue: {reached['catalogue']} of the "
          f"{comparable} that are system calls; catalogue run: {' '.join(summary)}")
    if others:
        print("the catalogue's other shmctl commands: " + ", ".join(f"{k} x{v}" for k, v in sorted(others.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
