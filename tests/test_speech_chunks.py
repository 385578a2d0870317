"""Long lines are spoken in pieces, a line that would need more memory than is left fails alone and in one
line, and ONNX Runtime keeps its files in PODFORGE_HOME: with the real Piper voice, a real address-space
limit and a real home folder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile

from conftest import REPO
from podforge.engines.base import SpeechRequest
from podforge.textnorm import split_sentences

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def unpunctuated(words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


def silent_runs(audio: np.ndarray, rate: int, at_least_s: float) -> int:
    """Runs of exact digital silence at least ``at_least_s`` long (the pauses Piper's pieces are joined with)."""
    silent = np.concatenate([[False], audio == 0, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    return sum(1 for start, end in zip(edges[::2], edges[1::2]) if end - start >= at_least_s * rate)


def test_pieces_are_cut_at_sentences_then_clauses_then_words():
    text = "First sentence here. Then " + "a long clause, " * 12 + "and " + unpunctuated(40)
    pieces = split_sentences(text, 60)
    assert pieces[0] == "First sentence here."
    assert all(len(piece) <= 60 for piece in pieces)
    assert " ".join(pieces).split() == text.split(), "no word is lost or cut"
    assert any(piece.endswith(",") for piece in pieces), "a clause end is preferred to a space"
    assert split_sentences("x" * 130, 60) == ["x" * 60, "x" * 60, "x" * 10], "a word longer than a piece is cut too"


def test_an_unpunctuated_line_is_spoken_in_pieces_and_every_word_is_timed(tmp_path):
    from podforge.engines.piper import SENTENCE_PAUSE_S, PiperEngine

    text = unpunctuated(60)  # about 370 characters, not one full stop
    engine = PiperEngine({"max_chunk_chars": 100, "noise_scale": 0.0, "noise_w_scale": 0.0})
    result = engine.run(SpeechRequest(text=text), tmp_path)
    audio, rate = soundfile.read(result.wav, dtype="float32")
    assert silent_runs(audio, rate, SENTENCE_PAUSE_S * 0.9) >= len(split_sentences(text, 100)) - 1
    assert [word.text for word in result.alignment.words] == text.split()
    starts = [word.start_s for word in result.alignment.words]
    assert starts == sorted(starts) and result.alignment.words[-1].end_s <= result.duration_s + 1e-6
    assert 15 < result.duration_s < 60


GUARDED_LINE = textwrap.dedent(
    """
    import os, resource, sys
    import psutil
    from podforge.config import load_config
    from podforge.engines.registry import load_engine, resolve_engine
    from podforge.errors import PodforgeError
    from tasks.speech import speech

    voice = resolve_engine(load_config(), "piper", "speech", settings={"max_chunk_chars": 2000})
    load_engine(voice)  # the voice loads first; then the address space is capped 150 MB above what is mapped
    cap = psutil.Process().memory_info().vms + 150 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        speech.fn(text=" ".join(["word"] * 400), speaker="ALEX", voice=voice, language="en", gpu=load_config().gpu, line=12, source="show.md")
    except PodforgeError as exc:
        print(exc.one_line())
        sys.exit(3)
    """
)


def test_a_line_that_needs_more_memory_than_is_left_fails_alone_naming_line_and_speaker(tmp_path):
    env = {**os.environ, "PODFORGE_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", GUARDED_LINE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-3000:]
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("show.md: line 12: ALEX's line could not be spoken by 'piper': not enough memory for Piper to speak a 1999-character piece")
    assert "MB is free" in line


def test_onnx_runtime_writes_nothing_under_home(tmp_path):
    home, podforge_home = tmp_path / "home", tmp_path / "podforge-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "CI")}  # with CI set, ONNX Runtime writes no device id at all
    env.update(HOME=str(home), PODFORGE_HOME=str(podforge_home))
    check = "import os; from podforge.engines.piper import PiperEngine; PiperEngine({}); assert 'XDG_CACHE_HOME' not in os.environ"
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(home.rglob("*")) == [], "nothing may be written under the home folder"
    assert [path.name for path in podforge_home.rglob("deviceid")] == ["deviceid"], "ONNX Runtime's device id is kept in PODFORGE_HOME"
    assert Path(podforge_home / "cache").is_dir()
