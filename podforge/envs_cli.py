"""``podforge envs build|list|prune|doctor`` and ``podforge estimate``, printed as rich tables.

Each command imports what it runs (doctor, envs, cost load numpy, PyAV and the engine contracts): every
``podforge`` command imports this module, and ``podforge run`` starts Prefect's server only after its imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from podforge.errors import PodforgeError

if TYPE_CHECKING:
    from podforge.cost import Estimate

envs_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Isolated engine environments (external/<name>).")
console = Console()
LEVEL_STYLE = {"ok": "[green]ok[/]", "info": "[blue]info[/]", "warn": "[yellow]warn[/]", "error": "[red]error[/]"}


def _fail(error: PodforgeError) -> None:
    console.print(f"[red]error:[/] {error.one_line()}", highlight=False)
    raise typer.Exit(1)


@envs_app.command("build")
def build_command(
    name: Annotated[str | None, typer.Argument(help="environment to build (a folder under external/)")] = None,
    all_envs: Annotated[bool, typer.Option("--all", help="build every defined environment")] = False,
) -> None:
    """Build an environment (cached by the hash of its Python version and pins)."""
    from podforge import envs

    if bool(name) == all_envs:
        console.print("give an environment name or --all (defined: " + ", ".join(envs.defined_envs()) + ")")
        raise typer.Exit(2)
    failed = []
    for env in envs.defined_envs() if all_envs else [name]:
        try:
            envs.build(env, log=lambda line: console.print(line, highlight=False, markup=False))
        except PodforgeError as exc:
            if not all_envs:
                _fail(exc)
            console.print(f"[red]{env}: {exc.one_line()}[/]", highlight=False)
            failed.append(env)
    if failed:
        console.print(f"[red]not built:[/] {', '.join(failed)}")
        raise typer.Exit(1)


@envs_app.command("list")
def list_command() -> None:
    """Every environment: state, hash, size and when it was built."""
    from podforge import envs

    table = Table("environment", "state", "hash", "size", "built", "build time", "path")
    for row in envs.list_envs():
        marker = row.marker
        table.add_row(
            row.name,
            row.state,
            row.hash,
            f"{marker.size_bytes / 1e6:,.1f} MB" if marker else "",
            marker.built_at.strftime("%Y-%m-%d %H:%M UTC") if marker else "",
            f"{marker.build_seconds:.1f} s" if marker else "",
            str(row.path),
        )
    console.print(table)


@envs_app.command("prune")
def prune_command() -> None:
    """Delete builds whose pins changed since, and interrupted builds."""
    from podforge import envs

    removed = envs.prune(log=lambda line: console.print(line, highlight=False, markup=False))
    console.print(f"removed {len(removed)} build(s)")


@envs_app.command("doctor")
def doctor_command() -> None:
    """Explain what works, and the fix for what does not: GPU, driver, free VRAM per engine, ffmpeg, NVENC;
    per environment Python, torch, CUDA, the runner's imports and the engine's own checks."""
    from podforge import doctor

    report = doctor.doctor()
    table = Table("", "", "finding", show_lines=True)
    for finding in report.host.findings:
        table.add_row("host", LEVEL_STYLE[finding.level], finding.line())
    for env in report.envs:
        for finding in env.findings:
            table.add_row(f"{env.name}\n({env.state})", LEVEL_STYLE[finding.level], finding.line())
    for level, message in _training_findings():
        table.add_row("train-music", LEVEL_STYLE[level], message)
    console.print(table)
    if any(f.level == "error" for f in [*report.host.findings, *(f for env in report.envs for f in env.findings)]):
        raise typer.Exit(1)


def _training_findings() -> list[tuple[str, str]]:
    """Whether the configured training job (the config's train_music: section) fits this machine's GPUs."""
    from podforge.config import load_config
    from podforge.gpu import list_gpus
    from podforge.training.vram import fit_findings

    try:
        return fit_findings(load_config().train_music, list_gpus())
    except PodforgeError as exc:
        return [("warn", exc.one_line())]


def estimate_command(
    tracks: Annotated[int, typer.Option(help="music tracks to make")] = 0,
    minutes: Annotated[float, typer.Option(help="length of each track or video, in minutes")] = 3.0,
    gpu: Annotated[str | None, typer.Option(help="a GPU from configs/pricing.yaml (t4, a10g, v100, a100, ...) or a price per hour; with --train: rtx3060, a40 or a100")] = None,
    videos: Annotated[int, typer.Option(help="videos to make")] = 0,
    music_rate: Annotated[float | None, typer.Option(help="measured GPU-minutes per minute of music (default: pricing.yaml)")] = None,
    video_rate: Annotated[float | None, typer.Option(help="measured GPU-minutes per minute of video (default: pricing.yaml)")] = None,
    train: Annotated[Path | None, typer.Option("--train", help="a dataset folder: estimate training a LoRA on it (podforge train-music)")] = None,
    steps_per_second: Annotated[float | None, typer.Option(help="with --train: measured optimizer steps per second (the training report shows it)")] = None,
    config: Annotated[list[Path], typer.Option("--config", "-c", help="with --train: extra YAML config (its train_music: section)")] = [],  # noqa: B006
) -> None:
    """Estimate GPU hours and cost, the way the reference notes do (100 tracks x 5 GPU-min = 8.3 h)."""
    from podforge import cost

    if train is not None:
        _estimate_training(train, gpu or "rtx3060", steps_per_second, config)
        return
    gpu = gpu or "t4"
    try:
        rows = [cost.estimate(tracks, minutes, gpu, "music", per_minute_gpu_minutes=music_rate)] if tracks else []
        rows += [cost.estimate(videos, minutes, gpu, "video", per_minute_gpu_minutes=video_rate)] if videos else []
    except PodforgeError as exc:
        _fail(exc)
    if not rows:
        console.print("nothing to estimate: give --tracks and/or --videos")
        raise typer.Exit(2)
    price = rows[0]
    table = Table("work", "engine", "GPU-min per output min", "GPU hours", f"cost on {gpu} (${price.usd_per_hour:.3f}/h)", title=f"{price.gpu_name}")
    for row in rows:
        table.add_row(
            f"{row.tracks} {row.kind} x {row.minutes:g} min",
            row.engine,
            _span(row.gpu_minutes_per_minute.low, row.gpu_minutes_per_minute.high, "{:.2f}"),
            _span(row.gpu_hours.low, row.gpu_hours.high, "{:.2f}"),
            _span(row.cost_usd.low, row.cost_usd.high, "${:,.2f}"),
        )
    if len(rows) > 1:
        hours = (sum(r.gpu_hours.low for r in rows), sum(r.gpu_hours.high for r in rows))
        dollars = (sum(r.cost_usd.low for r in rows), sum(r.cost_usd.high for r in rows))
        table.add_row("total", "", "", _span(*hours, "{:.2f}"), _span(*dollars, "${:,.2f}"), style="bold")
    console.print(table)
    for row in rows:
        console.print(f"[dim]{row.engine}: {row.source}[/]", highlight=False)
    console.print(_compare_gpus(rows))


def _estimate_training(dataset_dir: Path, gpu: str, steps_per_second: float | None, config: list[Path]) -> None:
    """Training hours and cost on ``gpu``, then the same job on every GPU priced for training."""
    from podforge import cost
    from podforge.config import load_config
    from podforge.training.estimate import estimate_dataset

    try:
        settings = load_config(config).train_music
        size, chosen = estimate_dataset(dataset_dir, gpu, settings, steps_per_second)
        others = [cost.estimate_training(size.hours, name, steps=size.steps) for name in (cost.load_pricing().training.gpus if cost.load_pricing().training else {})]
    except PodforgeError as exc:
        _fail(exc)
    console.print(
        f"{dataset_dir}: {size.files} files, {size.hours * 60:.1f} min of audio ({size.hours:.2f} h) -> about {size.clips} clips, "
        f"{size.steps} optimizer steps ({settings.optim.epochs} epochs, batch {settings.optim.batch_size} x {settings.optim.gradient_accumulation})",
        highlight=False,
    )
    table = Table("GPU", "$ per GPU-hour", "GPU hours", "cost", "from", title=f"LoRA training of {settings.base}")
    for row in [chosen, *(other for other in others if other.gpu != chosen.gpu)]:
        table.add_row(
            f"{row.gpu}: {row.gpu_name}",
            f"{row.usd_per_hour:.3f}",
            _span(row.gpu_hours.low, row.gpu_hours.high, "{:.2f}"),
            _span(row.cost_usd.low, row.cost_usd.high, "${:,.2f}"),
            row.source,
            style="bold" if row is chosen else None,
        )
    console.print(table)


def _compare_gpus(rows: list[Estimate]) -> Table:
    """The same GPU hours priced on every GPU of pricing.yaml (the notes' "$1/h" and "$3/h" rows among them)."""
    from podforge import cost

    low_hours = sum(r.gpu_hours.low for r in rows)
    high_hours = sum(r.gpu_hours.high for r in rows)
    table = Table("GPU", "$ per GPU-hour", "cost", title=f"{_span(low_hours, high_hours, '{:.2f}')} GPU hours on each priced GPU")
    for key, price in cost.load_pricing().gpus.items():
        table.add_row(f"{key}: {price.name}", f"{price.usd_per_hour:.3f}", _span(low_hours * price.usd_per_hour, high_hours * price.usd_per_hour, "${:,.2f}"))
    return table


def _span(low: float, high: float, fmt: str) -> str:
    return fmt.format(low) if abs(high - low) < 1e-9 else f"{fmt.format(low)} - {fmt.format(high)}"
