"""``podforge train-music`` and ``podforge adapters list``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from podforge.errors import PodforgeError
from podforge.prefect_env import configure_prefect_environment, ensure_prefect_home

adapters_app = typer.Typer(add_completion=False, no_args_is_help=True, help="LoRA adapters made by `podforge train-music`.")
console = Console(stderr=True)


def _fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def check_training_inputs(dataset_dir: Path, name: str, base: str | None, config: list[Path], i_have_the_rights: bool) -> str | None:
    """Everything that can be checked before Prefect starts; the licence warning, if any."""
    from podforge.config import load_config
    from podforge.envs import python_for
    from podforge.training.dataset import check_style_name, read_dataset_spec
    from podforge.training.pipeline import licence_gate
    from podforge.training.prepare import AUDIO_SUFFIXES

    check_style_name(name)
    if not dataset_dir.is_dir():
        raise PodforgeError("dataset folder not found", file=dataset_dir, field="DATASET_DIR")
    load_config(config, {"train_music": {"base": base}} if base else None)
    warning = licence_gate(read_dataset_spec(dataset_dir), dataset_dir, i_have_the_rights)
    if not any(p.suffix.lower() in AUDIO_SUFFIXES for p in dataset_dir.rglob("*") if p.is_file()):
        raise PodforgeError(f"no {', '.join(AUDIO_SUFFIXES)} files in it (searched recursively)", file=dataset_dir, field="DATASET_DIR")
    python_for("musicgen")  # "environment 'musicgen' is not built; run `podforge envs build musicgen`"
    return warning


def train_music_command(
    dataset_dir: Annotated[Path, typer.Argument(help="folder of mp3/wav/flac files (searched recursively) with a dataset.yaml")],
    name: Annotated[str, typer.Option("--name", help="the style's name: the adapter is published as adapters/NAME")],
    base: Annotated[str | None, typer.Option(help="base model (default: train_music.base, facebook/musicgen-small)")] = None,
    config: Annotated[list[Path], typer.Option("--config", "-c", help="extra YAML config (its train_music: and gpu: sections), merged over the defaults")] = [],  # noqa: B006
    i_have_the_rights: Annotated[bool, typer.Option("--i-have-the-rights", help="train on a dataset declared `licence: copyrighted`")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Fine-tune MusicGen with a LoRA on a folder of music; use it with `--music musicgen:NAME`."""
    configure_prefect_environment(quiet=not verbose)
    logging.getLogger("podforge").setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        warning = check_training_inputs(dataset_dir, name, base, config, i_have_the_rights)
    except PodforgeError as exc:
        _fail(exc.one_line(), code=2)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    ensure_prefect_home()
    from flows.train_music import train_music

    console.print(f"training {name} on {dataset_dir} (progress, loss curve and report: the Prefect UI's artifacts)", highlight=False)
    try:
        summary = train_music(dataset_dir=str(dataset_dir), name=name, base=base, config=[str(p) for p in config], i_have_the_rights=i_have_the_rights)
    except PodforgeError as exc:
        _fail(exc.one_line(), code=2)
    except Exception as exc:  # noqa: BLE001 - details are in the Prefect logs; a re-run resumes from the last checkpoint
        first = str(exc).splitlines()[0] if str(exc) else ""
        _fail(f"training failed: {type(exc).__name__}: {first} (re-run the same command to resume from the last checkpoint)", code=1)
    result, info = summary.training, summary.adapter
    out = Console()
    table = Table("epoch", "step", "training loss", "validation loss", title=f"{name}: {result.steps}/{result.total_steps} steps on {result.device}")
    for row in result.history:
        table.add_row(str(row["epoch"]), str(row["step"]), f"{row['train_loss']:.4f}", f"{row['val_loss']:.4f}" if row.get("val_loss") is not None else "")
    out.print(table)
    out.print(f"{result.train_seconds:.1f} s training, {result.gpu.gpu_seconds:.1f} GPU-seconds (priced in the report: {info.path / 'REPORT.md'})")
    out.print(f"[bold green]adapter[/] {info.name} sha256 {info.sha256[:16]} in {info.path}; use it with `podforge run EPISODE --music musicgen:{info.name}`")


@adapters_app.command("list")
def list_command() -> None:
    """Every adapter: base model, dataset, licence, steps and hash."""
    from podforge.training.card import list_adapters

    table = Table("name", "base", "licence", "clips", "minutes", "steps", "best val loss", "sha256", "created", "path")
    for info in list_adapters():
        best = f"{info.best_val:.4f}" if info.best_val is not None else ""
        table.add_row(info.name, info.base, info.licence, str(info.clips), f"{info.hours * 60:.1f}", str(info.steps), best, info.sha256[:16], info.created, str(info.path))
    Console(width=200).print(table)
