"""The dataset: its ``dataset.yaml`` (licence, labels), a JSON per clip in the seed's schema, and the manifest
(hashes, durations, labels, the split).

Labels come from three places; for each field the first that has it wins:

1. the user's JSON beside a source file (``song.mp3`` → ``song.json``), in the seed's schema;
2. ``dataset.yaml``'s ``labels`` (defaults for every clip);
3. estimates made in the training environment (librosa: tempo, key; loudness is always measured).

A clip without a ``description`` gets one from ``description_template``.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podforge.config import read_yaml_mapping
from podforge.errors import ConfigError
from podforge.io import write_text_atomic
from podforge.training.prepare import Clip, Dropped, Prepared, PreparedSource, SourceFile

DATASET_FILE = "dataset.yaml"
LABEL_FIELDS = ("description", "genre", "mood", "bpm", "key", "instruments")
ESTIMATED_FIELDS = ("bpm", "key")
STYLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Licence = Literal["own", "cc", "purchased", "copyrighted"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClipLabels(Strict):
    """A clip's description in the seed's schema (every field optional where the user gives none)."""

    description: str | None = None
    genre: str | None = None
    mood: str | None = None
    bpm: float | None = Field(default=None, gt=0)
    key: str | None = None
    instruments: list[str] | None = None


class DatasetSpec(Strict):
    """``dataset.yaml`` in the dataset folder: the licence declaration and labels for every clip."""

    licence: Licence = Field(description="own | cc | purchased | copyrighted")
    licence_note: str = Field(default="", description="e.g. which CC licence, or where the music was bought")
    labels: ClipLabels = Field(default_factory=ClipLabels, description="defaults for every clip; a file's own JSON wins")
    description_template: str = Field(
        default="{mood}, {genre}, {bpm} BPM, {key}, with {instruments}",
        description="filled from the labels where a clip has no description: fields genre, mood, bpm, key, instruments; "
        "a comma-separated part whose fields are unknown is left out",
    )


def read_dataset_spec(dataset_dir: Path) -> DatasetSpec:
    path = Path(dataset_dir) / DATASET_FILE
    if not path.is_file():
        raise ConfigError(
            "missing: a dataset declares its licence in dataset.yaml (`licence: own | cc | purchased | copyrighted`)", file=path, field="licence"
        )
    try:
        return DatasetSpec.model_validate(read_yaml_mapping(path))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(error["msg"].removeprefix("Value error, "), file=path, field=".".join(str(part) for part in error["loc"])) from None


def check_style_name(name: str) -> str:
    """A style name is an adapter folder's name: letters, digits, ``.``, ``_`` and ``-``."""
    if not STYLE_NAME.match(name):
        raise ConfigError(f"style name {name!r} must be 1-64 letters, digits, '.', '_' or '-' (it names the adapter folder)", field="--name")
    return name


class ClipEntry(BaseModel):
    id: str
    wav: Path
    labels_json: Path
    sha256: str
    source: str
    start_s: float
    duration_s: float
    split: str = Field(description="train | validation")
    labels: ClipLabels
    label_sources: dict[str, str] = Field(description="field -> user | dataset | estimated | template")
    loudness_dbfs: float | None = None

    def description(self) -> str:
        return self.labels.description or ""


class DatasetManifest(BaseModel):
    """``dataset.json``: what the adapter was trained on."""

    name: str
    source_dir: str
    licence: Licence
    licence_note: str = ""
    dataset_sha256: str = Field(description="over every clip's audio hash, labels and split")
    hours: float
    clips: list[ClipEntry]
    dropped: list[Dropped]
    sources: list[PreparedSource]

    def split(self, name: str) -> list[ClipEntry]:
        return [clip for clip in self.clips if clip.split == name]


def user_labels(source: Path) -> ClipLabels | None:
    """The user's JSON beside an audio file (same name, ``.json``), or None."""
    path = Path(source).with_suffix(".json")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"not valid JSON ({exc})", file=path) from None
    if not isinstance(data, dict):
        raise ConfigError("must be a JSON object with description, genre, mood, bpm, key, instruments", file=path)
    try:
        return ClipLabels.model_validate({k: v for k, v in data.items() if k in LABEL_FIELDS})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(error["msg"], file=path, field=".".join(str(p) for p in error["loc"])) from None


def needs_estimate(spec: DatasetSpec, user: ClipLabels | None) -> bool:
    """True when neither the user's JSON nor dataset.yaml gives a field that the estimates could fill."""
    given = [user, spec.labels]
    return any(all(getattr(layer, name) is None for layer in given if layer is not None) for name in ESTIMATED_FIELDS)


def user_labels_by_source(sources: list[SourceFile]) -> dict[str, ClipLabels | None]:
    """Each source file (relative path) and its user JSON's labels, if it has one."""
    return {source.relative: user_labels(source.path) for source in sources}


def estimates_needed(spec: DatasetSpec, user: dict[str, ClipLabels | None]) -> dict[str, bool]:
    """Each source file: do its clips need tempo/key estimates?"""
    return {relative: needs_estimate(spec, labels) for relative, labels in user.items()}


def merge_labels(spec: DatasetSpec, user: ClipLabels | None, estimated: dict[str, Any] | None) -> tuple[ClipLabels, dict[str, str]]:
    """Field by field: user JSON, then dataset.yaml, then the estimate; a description from the template last."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = [("user", user.model_dump() if user else {}), ("dataset", spec.labels.model_dump()), ("estimated", {k: (estimated or {}).get(k) for k in ESTIMATED_FIELDS})]
    for name in LABEL_FIELDS:
        for origin, layer in layers:
            if layer.get(name) is not None:
                values[name], sources[name] = layer[name], origin
                break
    if values.get("bpm") is not None and sources.get("bpm") == "estimated":
        values["bpm"] = round(float(values["bpm"]), 1)
    if not values.get("description"):
        values["description"] = fill_template(spec.description_template, values)
        sources["description"] = "template"
    return ClipLabels.model_validate(values), sources


def fill_template(template: str, values: dict[str, Any]) -> str:
    """The template with each comma-separated part kept only when all of its fields are known."""
    shown = {
        "genre": values.get("genre"),
        "mood": values.get("mood"),
        "bpm": f"{float(values['bpm']):.0f}" if values.get("bpm") is not None else None,
        "key": values.get("key"),
        "instruments": " and ".join(values["instruments"]) if values.get("instruments") else None,
    }
    parts = []
    for part in template.split(","):
        fields = [name for _, name, _, _ in string.Formatter().parse(part) if name]
        unknown = [name for name in fields if name not in shown]
        if unknown:
            raise ConfigError(f"unknown field {{{unknown[0]}}}; use genre, mood, bpm, key, instruments", file="dataset.yaml", field="description_template")
        if all(shown[name] for name in fields):
            parts.append(part.format(**shown).strip())
    return re.sub(r"\s+", " ", ", ".join(p for p in parts if p)) or "music"


def assign_splits(clips: list[Clip], fraction: float) -> dict[str, str]:
    """clip id -> train | validation: whole source files held out (by hash order) until ``fraction`` is met.

    With one source file the clips themselves are split. At least one clip is held out when there are two
    or more, and at least one is kept for training.
    """
    if fraction <= 0 or len(clips) < 2:
        return {clip.id: "train" for clip in clips}
    wanted = max(1, round(fraction * len(clips)))
    by_source: dict[str, list[Clip]] = {}
    for clip in clips:
        by_source.setdefault(clip.source_sha256, []).append(clip)
    groups = [by_source[key] for key in sorted(by_source)] if len(by_source) > 1 else [[clip] for clip in sorted(clips, key=lambda c: c.sha256)]
    held: set[str] = set()
    for group in groups:
        if len(held) >= wanted or len(held) + len(group) >= len(clips):
            continue
        held.update(clip.id for clip in group)
    if not held:  # every source file is bigger than what may be held out: hold out single clips instead
        held = {clip.id for clip in sorted(clips, key=lambda c: c.sha256)[:wanted]}
    return {clip.id: "validation" if clip.id in held else "train" for clip in clips}


def build_manifest(
    name: str,
    dataset_dir: Path,
    spec: DatasetSpec,
    prepared: Prepared,
    user: dict[str, ClipLabels | None],
    estimates: dict[str, dict[str, Any]],
    validation_fraction: float,
    out_dir: Path,
) -> DatasetManifest:
    """Labels per clip (``out_dir/labels/<clip>.json``), the split, and the dataset's hash.

    ``user`` maps each source file (relative path) to its user JSON's labels; ``estimates`` maps clip hashes
    to what the training environment measured.
    """
    splits = assign_splits(prepared.clips, validation_fraction)
    entries = []
    for clip in prepared.clips:
        estimated = estimates.get(clip.sha256)
        labels, label_sources = merge_labels(spec, user.get(clip.source), estimated)
        labels_json = Path(out_dir) / "labels" / f"{clip.id}.json"
        write_text_atomic(labels_json, json.dumps(labels.model_dump(exclude_none=True), indent=2) + "\n")
        entries.append(
            ClipEntry(
                id=clip.id,
                wav=clip.wav,
                labels_json=labels_json,
                sha256=clip.sha256,
                source=clip.source,
                start_s=clip.start_s,
                duration_s=clip.duration_s,
                split=splits[clip.id],
                labels=labels,
                label_sources=label_sources,
                loudness_dbfs=(estimated or {}).get("loudness_dbfs", clip.rms_dbfs),
            )
        )
    identity = [[e.sha256, e.split, e.labels.model_dump()] for e in sorted(entries, key=lambda e: e.sha256)]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()
    return DatasetManifest(
        name=name,
        source_dir=str(Path(dataset_dir).resolve()),
        licence=spec.licence,
        licence_note=spec.licence_note,
        dataset_sha256=digest,
        hours=round(sum(e.duration_s for e in entries) / 3600, 4),
        clips=entries,
        dropped=prepared.dropped,
        sources=prepared.sources,
    )
