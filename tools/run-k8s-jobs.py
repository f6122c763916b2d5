#!/usr/bin/env python3
"""Run the Kubernetes Jobs of deploy/kubernetes as a node would, with Docker.

Each Job's container runs our image with the Job's args; `hostIPC: false`
becomes `--ipc private` (a pod's own IPC namespace) and `hostIPC: true`
becomes `--ipc host` (the node's). Each Job prints its target report as its
log; the logs go, one JSON document a line, to OUT for `shmconf matrix
--from`. Exit 1 if a Job fails (as `kubectl wait --for=condition=complete`
would), 2 on bad input.

usage: run-k8s-jobs.py MANIFEST IMAGE OUT
"""
import json
import subprocess
import sys

import yaml


def why_failed(log: str) -> list[str]:
    """The scenarios a Job's report says did not pass, so a red Job says why."""
    lines = []
    for doc in log.splitlines():
        try:
            report = json.loads(doc)
        except json.JSONDecodeError:
            continue
        for r in report.get("results", []):
            if r.get("status") in ("fail", "broken", "timeout", "xpass"):
                lines.append(f"{r['status'].upper()} {r['scenario']}: {r.get('message', '')}")
    return lines or ["no failing scenario in its report (see its stderr above)"]


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    manifest, image, out = sys.argv[1:]
    with open(manifest, encoding="utf-8") as f:
        jobs = [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "Job"]
    if not jobs:
        print(f"{manifest}: no Job", file=sys.stderr)
        return 2
    status = 0
    with open(out, "w", encoding="utf-8") as logs:
        for job in jobs:
            name = job["metadata"]["name"]
            spec = job["spec"]["template"]["spec"]
            (container,) = spec["containers"]
            ipc = "host" if spec.get("hostIPC", False) else "private"
            argv = ["docker", "run", "--rm", "--ipc", ipc, image, *container["args"]]
            print(f"job {name}: {' '.join(argv)}", flush=True)
            run = subprocess.run(argv, stdout=subprocess.PIPE, check=False, timeout=900)
            logs.write(run.stdout.decode())
            if run.returncode != 0:
                print(f"job {name}: failed (exit {run.returncode})", file=sys.stderr)
                for line in why_failed(run.stdout.decode()):
                    print(f"job {name}: {line}", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
