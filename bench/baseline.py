"""Side-by-side benchmarks against another git revision: export it, run a worker on it, collect JSON.

A bench script that supports ``--baseline REF`` runs its measured part twice in one invocation: once on
``REF``'s code (exported with ``git archive`` into a temporary folder and put first on ``sys.path`` of a
worker process) and once on the working tree, so the table compares the two under the same load.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def export_tree(ref: str, into: Path) -> Path:
    """``ref``'s files (committed content only) under ``into``; returns that folder."""
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), ref], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    archive.unlink()
    return into / "tree"


def worker_tree(argv: list[str]) -> Path:
    """The code tree a script should import: ``--worker-tree PATH`` when given, else this checkout."""
    if "--worker-tree" in argv:
        return Path(argv[argv.index("--worker-tree") + 1])
    return REPO


def run_worker(script: Path, tree: Path, args: list[str]) -> Any:
    """Run ``script --worker-tree tree ARGS`` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, str(script), "--worker-tree", str(tree), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} on {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def temporary_folder(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)
