"""The input checks of the pre-flight (run by :func:`podforge.planning.plan_episode`, before any speech).

What would otherwise fail late or quietly: a script over the configured limits (lines, characters in a
line, estimated length), a portrait outside the folders a script may read, a voice that cannot speak the
script's language. What an episode survives is returned as warnings, printed by the CLI, logged by the
flow and listed in the report: hosts sharing one voice, lines in a writing system their voice cannot read.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

from podforge.config import LimitSettings, PodforgeConfig
from podforge.errors import ScriptError
from podforge.script import SYLLABIC_SCRIPTS, Script, foreign_letters, primary_language, resolve_asset


def check_limits(script: Script, limits: LimitSettings) -> None:
    """Refuse a script over ``limits`` with a :class:`ScriptError` naming the line or the body."""
    lines = script.lines
    if len(lines) > limits.max_lines:
        raise ScriptError(f"{len(lines)} spoken lines; an episode may have at most {limits.max_lines} (limits.max_lines in the config)", file=script.source, field="body")
    for line in lines:
        if len(line.text) > limits.max_line_chars:
            raise ScriptError(
                f"{line.speaker}'s line is {len(line.text):,} characters; at most {limits.max_line_chars:,} (limits.max_line_chars): split it into several lines",
                file=script.source,
                field=f"line {line.source_line}",
            )
    words = sum(spoken_words(line.text) for line in lines)
    minutes = words / limits.words_per_minute
    if minutes > limits.max_episode_minutes:
        raise ScriptError(
            f"about {minutes:,.1f} minutes of speech ({words:,} words at {limits.words_per_minute:g} a minute); "
            f"at most {limits.max_episode_minutes:g} (limits.max_episode_minutes)",
            file=script.source,
            field="body",
        )


def spoken_words(text: str) -> int:
    """Words, counting each Chinese, Japanese or Korean syllable character as one (those scripts use no spaces)."""
    syllables = sum(1 for char in text if not char.isascii() and unicodedata.name(char, "").startswith(SYLLABIC_SCRIPTS))
    return len(text.split()) + syllables


def asset_roots(script: Script, config: PodforgeConfig) -> list[Path]:
    """Where a script's files may be: its own folder (a script file), then the configured ``assets_dir``."""
    return [root for root in (script.folder, config.assets_dir) if root is not None]


def resolve_portraits(script: Script, config: PodforgeConfig) -> dict[str, Path]:
    """Each host's portrait as a real path inside :func:`asset_roots` (or a ScriptError naming ``hosts.NAME.portrait``)."""
    roots = asset_roots(script, config)
    return {name: resolve_asset(written, roots, source=script.source, field=f"hosts.{name}.portrait") for name, written in script.portraits.items()}


def check_voices(script: Script, config: PodforgeConfig, voices: Sequence[tuple[str, str]]) -> list[str]:
    """Refuse a voice that cannot speak the script's language; warn about what an episode survives.

    ``voices`` are the hosts in cast order with the voice preset each got: ``(host, voice)``.
    """
    language = script.meta.language
    warnings = []
    for host, voice in voices:
        spoken = config.voices[voice].languages
        if spoken and primary_language(language) not in spoken:
            able = sorted(name for name, preset in config.voices.items() if primary_language(language) in preset.languages)
            raise ScriptError(
                f"{host}'s voice {voice!r} speaks {', '.join(spoken)}, not {language!r}; "
                + (f"voices that speak it: {', '.join(able)}" if able else f"no configured voice speaks {language!r}"),
                file=script.source,
                field=f"hosts.{host}.voice",
            )
        if not spoken:
            warnings.append(f"voice {voice!r} ({host}) declares no `languages:`; it was not checked that it speaks {language!r}")
    return warnings + shared_voices(voices) + foreign_script_lines(script, config, dict(voices))


def shared_voices(voices: Sequence[tuple[str, str]]) -> list[str]:
    """One warning per voice preset that several hosts share (listeners cannot tell them apart)."""
    hosts_of: dict[str, list[str]] = {}
    for host, voice in voices:
        hosts_of.setdefault(voice, []).append(host)
    total = len({voice for _, voice in voices})
    return [
        f"{len(hosts)} hosts share voice {voice!r}: {', '.join(hosts)} ({len(voices)} hosts, {total} voice{'s' if total != 1 else ''}; give each host its own `voice:`)"
        for voice, hosts in hosts_of.items()
        if len(hosts) > 1
    ]


def foreign_script_lines(script: Script, config: PodforgeConfig, voice_of: dict[str, str]) -> list[str]:
    """Lines with letters their voice's languages are not written in (an English voice reads Chinese as
    letter names): a warning when the voice can still read some of the line, a ScriptError naming the line
    when it can read nothing of it (a voice would make noise or nothing at all)."""
    warnings = []
    for line in script.lines:
        voice = voice_of[line.speaker]
        languages = config.voices[voice].languages or [script.meta.language]
        foreign = foreign_letters(line.text, languages)
        if not foreign:
            continue
        letters = ", ".join(f"{count} {system}" for system, count in sorted(foreign.items()))
        readable = sum(1 for char in line.text if char.isalnum()) - sum(foreign.values())
        if readable == 0:
            raise ScriptError(
                f"{line.speaker}'s line has only {letters} letters, which voice {voice!r} ({', '.join(languages)}) cannot read; "
                "give the line to a voice that speaks its language (`languages:` in configs/voices.yaml) or write it out",
                file=script.source,
                field=f"line {line.source_line}",
            )
        warnings.append(f"line {line.source_line} ({line.speaker}): {letters} letters, which voice {voice!r} ({', '.join(languages)}) cannot read")
    return warnings
