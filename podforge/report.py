"""The per-episode report (markdown): steps, durations, cache hits, GPU time, cost, loudness, files, warnings.

Text that comes from the script (title, show, warnings quoting it) is escaped for Markdown and HTML
(:func:`escape_markdown`): the report is shown as a Prefect artifact, where raw HTML would render.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

from podforge.manifest import EpisodeManifest

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def escape_markdown(text: str) -> str:
    """``text`` shown as written in Markdown: HTML escaped (``<``, ``>``, ``&``, quotes), Markdown's
    punctuation backslash-escaped, and line breaks as spaces (a title cannot start a new block)."""
    flat = " ".join(text.split())
    return html.escape(_MARKDOWN_SPECIALS.sub(r"\\\1", flat), quote=False)


def render_report(manifest: EpisodeManifest, base_url: str) -> str:
    """The report; its file links point into the output folder served at ``base_url`` (``publish.base_url``)."""
    cached = sum(step.cached for step in manifest.steps)
    lines = [
        f"# {escape_markdown(manifest.title)}",
        f"*{escape_markdown(manifest.show)}* · `{manifest.slug}` · {manifest.duration_s / 60:.1f} min · podforge {manifest.podforge_version}",
        "",
        "| step | engine | device | seconds | of which loading | cached | GPU-s | GPU $ | peak VRAM MB | flag |",
        "|---|---|---|---:|---:|:---:|---:|---:|---:|---|",
    ]
    for step in manifest.steps:
        lines.append(
            f"| {step.step} | {step.engine} | {step.device} | {step.seconds:.2f} | {step.load_s:.2f} | {'yes' if step.cached else 'no'} "
            f"| {step.gpu.gpu_seconds:.1f} | {step.cost_usd:.4f} | {step.gpu.peak_vram_mb:.0f} | {step.gpu.flagged or ''} |"
        )
    work_s = sum(step.seconds for step in manifest.steps if not step.cached)
    loud = manifest.loudness
    lines += [
        "",
        f"**{len(manifest.steps)} steps**, {cached} reused from the cache, {work_s:.1f} s of work in this run.",
        f"**GPU:** {manifest.gpu_seconds:.1f} GPU-seconds, ${manifest.gpu_cost_usd:.4f} priced on {manifest.gpu_priced_as}.",
        f"**Loudness (MP3):** {loud.integrated_lufs:.1f} LUFS integrated, true peak {loud.true_peak_dbtp:.1f} dBTP, LRA {loud.lra:.1f} LU.",
        f"**Video encoder:** {manifest.video_encoder} ({manifest.video_encoder_reason}).",
        "",
        *quality_table(manifest),
        "| file | bytes | sha256 |",
        "|---|---:|---|",
    ]
    folder_url = f"{base_url.rstrip('/')}/{quote(manifest.out_dir.name)}/"
    lines += [f"| [{name}]({folder_url}{quote(entry.path)}) | {entry.bytes:,} | `{entry.sha256[:16]}…` |" for name, entry in manifest.files.items()]
    if manifest.spoken_as:
        lines += ["", "**Read aloud as** (where the voices say something other than the script's text)", "", "| line | speaker | script | spoken |", "|---:|---|---|---|"]
        lines += [f"| {said.line} | {escape_markdown(said.speaker)} | {escape_markdown(said.written)} | {escape_markdown(said.spoken)} |" for said in manifest.spoken_as]
    if manifest.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {escape_markdown(warning)}" for warning in manifest.warnings]
    return "\n".join(lines) + "\n"


def quality_table(manifest: EpisodeManifest) -> list[str]:
    """The episode's own checks against their targets, one row each (nothing when there are none)."""
    if not manifest.quality:
        return []
    verdict = "all pass" if manifest.quality_passed else f"{sum(not check.passed for check in manifest.quality)} FAIL"
    rows = [f"## Quality ({verdict})", "", "| check | where | value | target | | |", "|---|---|---:|---|:---:|---|"]
    for check in manifest.quality:
        where, detail = escape_markdown(check.scope), escape_markdown(check.detail)  # host names and heard words come from outside
        rows.append(f"| {check.name} | {where} | {check.shown_value()} | {check.target} {check.unit} | {'pass' if check.passed else '**FAIL**'} | {detail} |")
    return [*rows, ""]
