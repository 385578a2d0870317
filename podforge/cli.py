"""The ``podforge`` command line.

Input is validated before Prefect starts, so a bad script or config fails in a second with one line that
names the file and the field, and writes nothing.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from podforge.envs_cli import envs_app, estimate_command
from podforge.errors import PodforgeError, squash
from podforge.output import describe_os_error
from podforge.prefect_env import configure_prefect_environment, ensure_prefect_home
from podforge.prefect_server import TemporaryServer, launch_early
from podforge.training_cli import adapters_app, train_music_command

if TYPE_CHECKING:
    from podforge.planning import EpisodePlan

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Podforge: scripts in, publishable podcast episodes out.")
console = Console(stderr=True)
QUIET_CONSOLE = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
"""Prefect's console log handler level; without --verbose only critical records reach the terminal."""


@app.callback()
def _commands() -> None:
    """Podforge: scripts in, publishable podcast episodes out."""


app.add_typer(envs_app, name="envs", help="Isolated engine environments: build, list, prune, doctor.")
app.command("estimate")(estimate_command)
app.command("train-music")(train_music_command)
app.add_typer(adapters_app, name="adapters", help="LoRA adapters made by train-music: list.")


def _engine_overrides(speech: str | None, music: str | None, video: str | None, assets: Path | None = None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if speech:
        overrides["speech"] = speech
    if music or video:
        overrides["use"] = {k: v for k, v in (("music", music), ("video", video)) if v}
    if assets:
        overrides["assets_dir"] = str(assets.resolve())
    return overrides


def check_inputs(script: Path, config_files: list[Path], overrides: dict[str, Any], out_dir: Path) -> tuple[EpisodePlan, int | None]:
    """Everything that can be checked without running anything: the episode's plan and the configured task
    limit; the output folder takes the episode."""
    from podforge.config import load_config
    from podforge.gpu import list_gpus
    from podforge.output import check_destination
    from podforge.planning import plan_episode
    from podforge.script import load_script

    config = load_config(config_files, overrides)
    plan = plan_episode(config, load_script(script), list_gpus())
    check_destination(out_dir, plan.script)
    return plan, config.run.max_workers


@app.command()
def run(
    script: Annotated[Path, typer.Argument(help="episode script (Markdown/text with optional YAML front matter)")],
    config: Annotated[list[Path], typer.Option("--config", "-c", help="extra YAML config, merged over the defaults")] = [],  # noqa: B006
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("output"),
    speech: Annotated[str | None, typer.Option(help="voice preset for every host (e.g. joe, vits-tiny-local)")] = None,
    music: Annotated[str | None, typer.Option(help="music engine (e.g. procedural, musicgen), or musicgen:STYLE for a trained LoRA adapter")] = None,
    video: Annotated[str | None, typer.Option(help="video engine (e.g. audiogram, portrait)")] = None,
    assets: Annotated[Path | None, typer.Option(help="a folder the script's portraits may also come from (besides the script's own folder)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Produce an episode: voices, music bed, mix, captions, video, MP4/MP3 and manifest."""
    if not verbose:  # run logs (a failed step's traceback among them) go to Prefect's API only; errors print as one line
        os.environ.setdefault(QUIET_CONSOLE, "CRITICAL")
    configure_prefect_environment(quiet=not verbose)  # before anything imports Prefect
    early_server = launch_early()  # boots on one core while this process imports and checks on the other
    logging.getLogger("podforge").setLevel(logging.INFO if verbose else logging.ERROR)  # the checks stay one line
    overrides = _engine_overrides(speech, music, video, assets)
    try:
        plan, max_workers = check_inputs(script, config, overrides, out)
    except PodforgeError as exc:
        _fail(exc.one_line(), code=2)
    except OSError as exc:
        _fail(f"{exc.filename or script}: {describe_os_error(exc)}", code=2)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    from podforge.engines.registry import preload

    preload(plan.engines())  # the voices load while Prefect's server starts; the flow's steps find them loaded
    ensure_prefect_home()
    manifest = _run_with_progress(plan.script.slug, script, config, overrides, out, max_workers, early_server)
    _print_summary(manifest)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="UI/API port")] = 4200,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    timezone: Annotated[str, typer.Option(help="time zone of the nightly schedule")] = "UTC",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output folder: served at publish.base_url and the deployments' default out_dir [default: output/ of the checkout]")] = None,
    config: Annotated[list[Path], typer.Option("--config", "-c", help="extra YAML config: publish.base_url, and the deployments' default config")] = [],  # noqa: B006
    database: Annotated[str | None, typer.Option(help="Prefect's database, e.g. postgresql+asyncpg://user:password@host:5432/prefect [default: SQLite in PODFORGE_HOME/prefect]")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="flow runs the work pool runs at once [default: 1 per 4 CPUs]")] = None,
    notify: Annotated[str | None, typer.Option(help="notification block for failed runs, as <block-type-slug>/<name> [default: a log file, PODFORGE_HOME/logs/failures.log]")] = None,
) -> None:
    """Start a Prefect server and UI with Podforge's deployments, a worker and the output folder over HTTP; Ctrl-C stops it all."""
    from podforge.serve import serve as serve_all

    try:
        serve_all(host=host, port=port, timezone=timezone, out=out, config=config, database=database, concurrency=concurrency, notify=notify)
    except PodforgeError as exc:
        _fail(exc.one_line(), code=2)


def _run_with_progress(slug: str, script: Path, config: list[Path], overrides: dict[str, Any], out: Path, max_workers: int | None, early_server: TemporaryServer | None):
    from flows.episode import episode
    from podforge.prefect_env import episode_task_runner
    from podforge.prefect_server import PrefectServerError, prefect_api
    from podforge.progress import add_listener

    if max_workers:
        episode = episode.with_options(task_runner=episode_task_runner(max_workers))

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"{slug}: starting Prefect", total=None)
        remove = add_listener(lambda step, done, total: progress.update(bar, description=f"{slug}: {step} done", completed=done, total=total))
        try:
            with prefect_api(early_server):  # PREFECT_API_URL's server, else a temporary one that dies with this process
                return episode(script=str(script), config=[str(p) for p in config], overrides=overrides or None, out_dir=str(out))
        except PrefectServerError as exc:
            _fail(exc.one_line(), code=1)
        except PodforgeError as exc:
            _fail(exc.one_line(), code=2)
        except Exception as exc:  # noqa: BLE001 - a failed step is reported in one line; details are in the Prefect logs
            _fail(f"episode failed: {everyday_error(exc)} (re-run to resume; cached steps are reused)", code=1)
        finally:
            remove()


def everyday_error(exc: BaseException) -> str:
    """An unexpected exception in one line: what it means where it is a known everyday problem, else its type and first line."""
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)):
        return "out of memory: the operating system refused memory or a new thread (a memory limit such as `ulimit -v`, or too many tasks at once: lower run.max_workers)"
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{describe_os_error(exc)}"
    return f"{type(exc).__name__}: {squash(str(exc))}"


def _print_summary(manifest) -> None:
    table = Table(title=f"{manifest.title} — {manifest.duration_s / 60:.1f} min")
    for column in ("step", "engine", "device", "seconds", "cached"):
        table.add_column(column)
    for step in manifest.steps:
        table.add_row(step.step, step.engine, step.device, f"{step.seconds:.2f}", "yes" if step.cached else "")
    out = Console()
    out.print(table)
    out.print(f"loudness {manifest.loudness.integrated_lufs:.1f} LUFS, true peak {manifest.loudness.true_peak_dbtp:.1f} dBTP; video encoder {manifest.video_encoder}")
    out.print(f"[bold green]published[/] {manifest.out_dir}")


def _fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def main() -> None:
    try:
        app(prog_name="podforge")
    except (MemoryError, RuntimeError, OSError) as exc:  # outside a run's own handling: still one line, never a traceback
        console.print(f"[bold red]error:[/] {everyday_error(exc)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    finally:
        # The process ends here. Its final garbage collection would walk every object Prefect and pydantic
        # made (0.2-0.5 s after an episode) to free memory the OS takes back anyway; exit handlers still run.
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
