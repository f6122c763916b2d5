"""A Python program of more than one thread, around any Python pair's program.

    python3 threaded.py MODE SCRIPT [ARGS...]

runs SCRIPT (e.g. the zoo's writer_hardened.py) as its __main__ with ARGS, in
one of two shapes a real program takes:

* ``worker``: the program's work runs on a worker thread that main joins, so
  every shared-memory call is made by a thread other than the one that
  started, as a Python service that does its I/O off the main thread.
* ``helper``: a helper thread starts first and waits (on a lock: futex, no
  traced call) for the whole run, while main does the work, as a program with
  a watchdog or a logging thread beside it.

Either way the calls are one at a time, so the explorer must judge the pair
exactly as the single-threaded one: the same orders, the same verdicts.
"""
import os
import runpy
import sys
import threading


def run_script(script, args, outcome):
    """Run the script as __main__; keep its exit status as sys.exit gives it."""
    sys.argv = [script] + args
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
        outcome.append(0)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            outcome.append(e.code or 0)
        else:
            print(e.code, file=sys.stderr)
            outcome.append(1)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("worker", "helper"):
        print("usage: threaded.py worker|helper SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    mode, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    outcome = []
    if mode == "worker":
        worker = threading.Thread(target=run_script, args=(script, args, outcome), name="worker")
        worker.start()
        worker.join()
    else:
        done = threading.Event()
        helper = threading.Thread(target=done.wait, name="helper", daemon=True)
        helper.start()
        try:
            run_script(script, args, outcome)
        finally:
            done.set()
            helper.join()
    sys.stdout.flush()
    return outcome[0] if outcome else 1


if __name__ == "__main__":
    sys.exit(main())
