"""Benchmark: Piper on one long line without punctuation, spoken whole vs in pieces (max_chunk_chars).

Each measurement runs in a fresh process (peak RSS is that process's ru_maxrss, the loaded voice included).
Whole and in pieces run side by side for each length, so their ratio is measured under the same load.

    .venv/bin/python bench/bench_chunks.py [--chars 600 1200] [--piece 300]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def line_of(chars: int) -> str:
    words, length = [], 0
    while length < chars:
        words.append(WORDS[len(words) % len(WORDS)])
        length += len(words[-1]) + 1
    return " ".join(words)


def child(chars: int, piece: int) -> None:
    from podforge.engines.base import SpeechRequest
    from podforge.engines.piper import PiperEngine

    engine = PiperEngine({"max_chunk_chars": piece})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        result = engine.run(SpeechRequest(text=line_of(chars)), Path(workdir))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": time.perf_counter() - started, "audio_s": result.duration_s, "peak_mb": peak_mb}))


def measure(chars: int, piece: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(chars), str(piece)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chars", type=int, nargs="+", default=[600, 1200])
    parser.add_argument("--piece", type=int, default=300, help="max_chunk_chars of the pieces")
    parser.add_argument("--child", type=int, nargs=2, metavar=("CHARS", "PIECE"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"\nPiper, one unpunctuated line, whole vs in pieces of at most {args.piece} characters (a fresh process each)\n")
    print("| characters | spoken | seconds | audio s | peak RSS MB |")
    print("|---:|---|---:|---:|---:|")
    for chars in args.chars:
        for label, piece in (("whole", 2000), (f"pieces of {args.piece}", args.piece)):
            row = measure(chars, piece)
            print(f"| {chars:,} | {label} | {row['seconds']:.1f} | {row['audio_s']:.1f} | {row['peak_mb']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
