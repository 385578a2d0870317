"""A speech engine for the QA tests: real Piper speech, played backwards for one line.

It is registered through config like any engine (``impl: garbled_engine:ReversedPiperEngine``). A line
whose text contains ``garble`` comes out reversed for its first ``garbled_takes`` takes: a recogniser
hears nonsense in those, and the real speech from the take after.
"""

from __future__ import annotations

from pathlib import Path

import soundfile

from podforge.engines.base import SpeechRequest, SpeechResult
from podforge.engines.piper import PiperEngine, PiperSettings


class ReversedPiperSettings(PiperSettings):
    garble: str
    garbled_takes: int = 1


class ReversedPiperEngine(PiperEngine):
    name = "reversed-piper"
    Settings = ReversedPiperSettings
    settings: ReversedPiperSettings

    def run(self, request: SpeechRequest, workdir: Path) -> SpeechResult:
        result = super().run(request, workdir)
        if self.settings.garble in request.text and request.take < self.settings.garbled_takes:
            audio, rate = soundfile.read(result.wav, dtype="int16")
            soundfile.write(result.wav, audio[::-1], rate, subtype="PCM_16")
        return result
