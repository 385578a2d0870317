"""``podforge serve``: a Prefect server with Podforge's deployments, a worker and the output folder over HTTP.

In order: the Prefect server on loopback (SQLite under ``PODFORGE_HOME/prefect``, or PostgreSQL with
``--database``); the ``process`` work pool with a concurrency limit (default from the CPU count) and the
GPU concurrency limits; the failure automation (flow run failed or crashed → a notification block, a log
file by default); the ``episode``, ``nightly`` and ``train-music`` deployments of ``prefect.yaml``; the output folder over
HTTP with byte ranges at ``publish.base_url``; a worker. Runs left "Running" by a serve that was killed are
marked Crashed before the worker starts.

Ctrl-C (or SIGTERM) stops the worker and every flow run it started while the server still listens (a
flow run that gets SIGTERM reports itself Crashed), marks whatever is still unfinished in the pool
Crashed, so the UI's Retry works, then stops the server. The server and the worker run behind
:mod:`podforge.lifeline`, so they stop even when serve itself is killed. Logs go to ``PODFORGE_HOME/logs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import psutil

from podforge.config import REPO_ROOT, load_config, podforge_home
from podforge.errors import PodforgeError
from podforge.lifeline import lifeline_command
from podforge.prefect_server import prefect_home, server_command, server_environment, wait_until_healthy

DEFAULT_POOL = "podforge-local"
STOP_GRACE_S = 15.0
FAILURE_AUTOMATION = "podforge: flow run failed"
FAILURE_LOG_BLOCK = "podforge-failures"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
UNFINISHED = ("RUNNING", "PENDING", "CANCELLING")  # not PAUSED: a suspended run waits for input, with no process


class ServeError(PodforgeError):
    """The local server, its deployments or its worker could not be brought up."""


def default_concurrency(cpus: int | None = None) -> int:
    """Flow runs the pool runs at once by default: one per 4 CPUs (an episode keeps several cores busy)."""
    return max(1, (cpus or os.cpu_count() or 1) // 4)


def serve(
    host: str = "127.0.0.1",
    port: int = 4200,
    pool: str = DEFAULT_POOL,
    timezone: str = "UTC",
    out: Path | None = None,
    config: list[Path] | None = None,
    database: str | None = None,
    concurrency: int | None = None,
    notify: str | None = None,
) -> None:
    """Bring everything up, wait for Ctrl-C (or a child that dies), stop everything."""
    os.environ.setdefault("PREFECT_HOME", str(prefect_home()))  # this process's own Prefect client, before it loads
    os.environ.setdefault("DO_NOT_TRACK", "1")
    api_url = f"http://{host}:{port}/api"
    ensure_port_free(host, port, field="port")
    files_dir = (out or REPO_ROOT / "output").resolve()
    files_at = file_server_address(load_config(list(config or [])).publish.base_url)
    if files_at:
        ensure_port_free(files_at[0], files_at[1], field="publish.base_url")
    env = worker_environment(api_url)
    logs = podforge_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    group = ProcessGroup()
    files = None
    stop_on_signals()
    try:
        where = "PostgreSQL" if database else f"SQLite in {prefect_home()}"
        say(f"starting the Prefect server on {host}:{port}, database: {where} (log: {logs / 'server.log'})")
        server = group.start("server", server_command(host, port), server_environment(ephemeral=False, database_url=database, address=(host, port)), logs / "server.log")
        wait_until_healthy(api_url, server, logs / "server.log")
        with prefect_api_at(api_url):
            crashed = crash_unfinished_runs(pool, reason="found unfinished when podforge serve started (the earlier serve was killed)")
            if crashed:
                say(f"marked {crashed} runs left unfinished by an earlier serve as Crashed")
            create_work_pool_and_limits(pool, concurrency or default_concurrency())
            create_failure_automation(notify or failure_log_block(logs / "failures.log"))
        for name, options in deployments(out, config, timezone):
            say(f"deploying {name}")
            run_prefect(["--no-prompt", "deploy", "--name", name, "--pool", pool, *options], env, what=f"deploying {name}")
        files = start_file_server(files_dir, files_at, logs / "files.log")
        say(f"starting a worker for pool {pool} (log: {logs / 'worker.log'})")
        worker = prefect_command("worker", "start", "--pool", pool, "--work-queue", "default", "--type", "process")  # other queues: other workers
        group.start("worker", lifeline_command(worker), env, logs / "worker.log")
        say(f"Prefect UI: http://{host}:{port}  (deployments: episode, nightly, train-music; Ctrl-C stops everything)")
        group.wait_for_any_exit()
        raise ServeError(f"the Prefect {group.exited_name()} stopped unexpectedly; see {logs}")
    except Stopped:
        say("stopping")
    finally:
        stop_all(group, api_url, pool, files)


def start_file_server(folder: Path, address: tuple[str, int, str] | None, log: Path):
    """Serve ``folder`` at ``address`` (from ``publish.base_url``); None when the base URL is elsewhere."""
    if address is None:
        say(f"publish.base_url is not on this machine: serve {folder} there with your web server")
        return None
    from podforge.publishing.fileserver import FileServer

    host, port, prefix = address
    folder.mkdir(parents=True, exist_ok=True)
    files = FileServer(folder, host, port, prefix=prefix, log=log).start()
    say(f"serving {folder} at http://{host}:{port}{prefix} (publish.base_url; log: {log})")
    return files


def stop_all(group: ProcessGroup, api_url: str, pool: str, files) -> None:
    """Worker and flow runs first, while the server can still record how they ended; then the server."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    group.stop("worker")  # its flow runs get SIGTERM too
    if group.running("server"):
        with prefect_api_at(api_url), contextlib.suppress(Exception):  # best effort: the server may be failing
            crash_unfinished_runs(pool, reason="podforge serve stopped while this run was unfinished")
    group.stop("server")
    if files:
        files.stop()


def worker_environment(api_url: str) -> dict[str, str]:
    """The environment of the worker and ``prefect deploy``: Podforge's Prefect home, this server, no analytics."""
    env = dict(os.environ)
    env.update(
        {
            "PREFECT_HOME": str(prefect_home()),
            "PODFORGE_HOME": str(podforge_home()),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
    )
    return env


def deployments(out: Path | None, config: list[Path] | None, timezone: str) -> list[tuple[str, list[str]]]:
    """``prefect deploy`` options per deployment: the chosen output folder and config files as defaults."""
    params: dict[str, object] = {}
    if out is not None:
        params["out_dir"] = str(out.resolve())
    if config:
        params["config"] = [str(Path(path).resolve()) for path in config]
    extra = ["--params", json.dumps(params)] if params else []
    training = ["--params", json.dumps({"config": params["config"]})] if "config" in params else []  # it writes no episodes
    return [("episode", extra), ("nightly", ["--timezone", timezone, *extra]), ("train-music", training)]


def file_server_address(base_url: str) -> tuple[str, int, str] | None:
    """``(host, port, path)`` to serve the output folder at, when ``base_url`` is plain HTTP on this machine."""
    url = urlsplit(base_url)
    if url.scheme != "http" or url.hostname not in LOOPBACK_HOSTS:
        return None
    return url.hostname, url.port or 80, url.path or "/"


def prefect_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def run_prefect(args: list[str], env: dict[str, str], *, what: str) -> None:
    completed = subprocess.run(prefect_command(*args), env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-10:])
        raise ServeError(f"failed while {what} (exit {completed.returncode}):\n{tail}")


def ensure_port_free(host: str, port: int, *, field: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex((host, port)) == 0:
            raise ServeError(f"{host}:{port} is already in use; pick another port", field=field)


@contextlib.contextmanager
def prefect_api_at(api_url: str):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def create_work_pool_and_limits(pool: str, concurrency: int) -> None:
    """The ``process`` work pool (the worker's default job template, ``concurrency`` runs at once) and one limit per GPU."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from podforge.gpu import ensure_gpu_limits, list_gpus

    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template(), concurrency_limit=concurrency),
            overwrite=True,
        )
    limits = ensure_gpu_limits(list_gpus())
    gpus = ", ".join(f"{name}={slots}" for name, slots in limits.items()) or "none (no NVIDIA GPU seen)"
    say(f"work pool {pool} ready: {concurrency} flow runs at once (--concurrency); GPU limits: {gpus}")


def failure_log_block(path: Path) -> str:
    """Save the default notification block (a :class:`~podforge.notifications.FailureLog` at ``path``); its reference."""
    from podforge.notifications import FailureLog

    FailureLog(path=str(path)).save(FAILURE_LOG_BLOCK, overwrite=True)
    return f"{FailureLog.get_block_type_slug()}/{FAILURE_LOG_BLOCK}"


def create_failure_automation(block: str) -> None:
    """(Re)create the automation: a flow run failed or crashed → notify through ``block`` ("<type-slug>/<name>")."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification
    from prefect.client.orchestration import get_client

    type_slug, _, name = block.partition("/")
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name=name, block_type_slug=type_slug)
        except Exception as exc:  # noqa: BLE001 - Prefect raises ObjectNotFound or an HTTP error
            raise ServeError(f"notification block {block!r} not found ({type(exc).__name__}); create it in the UI first", field="notify") from None
        for existing in client.read_automations_by_name(FAILURE_AUTOMATION):
            client.delete_automation(existing.id)
    Automation(
        name=FAILURE_AUTOMATION,
        description="Created by podforge serve: every failed or crashed flow run is reported through a notification block.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=document.id,
                subject="Podforge: flow run {{ flow_run.name }} {{ flow_run.state.name }}",
                body=(
                    "Flow run {{ flow.name }}/{{ flow_run.name }} ended {{ flow_run.state.name }}: {{ flow_run.state.message }}\n"
                    "Flow run id: {{ flow_run.id }}\nFlow run: {{ flow_run|ui_url }}"
                ),
            )
        ],
    ).create()
    say(f"failure automation ready: failed or crashed flow runs notify {block}")


def crash_unfinished_runs(pool: str, *, reason: str) -> int:
    """Mark Crashed every unfinished flow run and task run that belongs to ``pool`` (subflows included).

    Called when no worker of ``pool`` runs on this machine (before serve's worker starts, after it
    stopped), so nothing can still be executing them: without this they would show "Running" for good,
    and the UI offers Retry only for a run that ended. Returns how many runs it marked.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = [StateType(name) for name in UNFINISHED]
    with get_client(sync_client=True) as client:
        in_pool: dict[object, bool] = {}

        def belongs(flow_run_id) -> bool:
            """The run, or the run it is a subflow of (subflows carry no pool), was submitted to ``pool``."""
            if flow_run_id not in in_pool:
                run = client.read_flow_run(flow_run_id)
                if run.work_pool_name is not None or run.parent_task_run_id is None:
                    in_pool[flow_run_id] = run.work_pool_name == pool
                else:
                    in_pool[flow_run_id] = belongs(client.read_task_run(run.parent_task_run_id).flow_run_id)
            return in_pool[flow_run_id]

        flow_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)))
        task_filter = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=unfinished)))
        flow_runs = _all(lambda offset, limit: client.read_flow_runs(flow_run_filter=flow_filter, offset=offset, limit=limit))
        task_runs = _all(lambda offset, limit: client.read_task_runs(task_run_filter=task_filter, offset=offset, limit=limit))
        marked = 0
        for task_run in task_runs:
            if task_run.flow_run_id is not None and belongs(task_run.flow_run_id):
                client.set_task_run_state(task_run.id, Crashed(message=reason), force=True)
                marked += 1
        for flow_run in flow_runs:
            if belongs(flow_run.id):
                client.set_flow_run_state(flow_run.id, Crashed(message=reason), force=True)
                marked += 1
    return marked


def _all(read_page, page_size: int = 200) -> list:
    """Every item of a paged Prefect read: ``read_page(offset, limit)`` until a page comes back short."""
    items: list = []
    while True:
        page = read_page(len(items), page_size)
        items += page
        if len(page) < page_size:
            return items


class Stopped(Exception):
    """Raised in the main thread by SIGINT/SIGTERM."""


def stop_on_signals() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class ProcessGroup:
    """Child processes, each the leader of its own process group, stopped one by one with their descendants."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as log_file:
            process = subprocess.Popen(
                command, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = process
        return process

    def running(self, name: str) -> bool:
        return name in self.processes and self.processes[name].poll() is None

    def wait_for_any_exit(self, poll_s: float = 0.5) -> None:
        while all(process.poll() is None for process in self.processes.values()):
            time.sleep(poll_s)

    def exited_name(self) -> str:
        return next((name for name, process in self.processes.items() if process.poll() is not None), "?")

    def stop(self, name: str) -> None:
        """SIGTERM to the process's group and every descendant (flow runs may have their own sessions), then SIGKILL."""
        process = self.processes.get(name)
        if process is None:
            return
        if process.poll() is None:
            leader = psutil.Process(process.pid)
            descendants = _children(leader)
            _signal_group(leader.pid, signal.SIGTERM)
            for child in descendants:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.terminate()
            _, alive = psutil.wait_procs([leader, *descendants], timeout=STOP_GRACE_S)
            for survivor in alive:
                _signal_group(survivor.pid, signal.SIGKILL)
                with contextlib.suppress(psutil.NoSuchProcess):
                    survivor.kill()
            psutil.wait_procs(alive, timeout=5)
        process.wait(timeout=5)


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    """Signal a process group led by one of our children (no-op once it is gone or is not a group leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pgid) == pgid:
            os.killpg(pgid, signum)


def say(message: str) -> None:
    print(f"podforge serve: {message}", flush=True)
