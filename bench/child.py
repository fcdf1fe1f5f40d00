"""The benchmarks' fresh-process protocol: each measured run is a child process, so its peak RSS
is its own, and it hands its figures back as one `RESULT <json>` line on stdout."""
from __future__ import annotations

import json
import os
import subprocess
import sys

PREFIX = "RESULT "
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def report(result: dict) -> None:
    print(PREFIX + json.dumps(result), flush=True)


def run(module_args: list[str], what: str) -> dict:
    """`python -m <module_args>` from the repository root; its last RESULT line, or an error with
    the end of its stderr."""
    proc = subprocess.run([sys.executable, "-m", *module_args], capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PREFIX)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(PREFIX):])
