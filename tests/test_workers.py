"""Warm engine workers against a real isolated environment (external/isolation-check): one process per
spec, restart once, nothing orphaned (scope exit, interpreter exit, parent killed -9), batching, the
memory guard, and each request's log lines in its own Prefect task log.

Workers are counted by the pid each runner process reports, never by timing.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from podforge import envs
from podforge.errors import EngineError
from podforge.runner import run_in_env
from podforge.workers import engine_workers

ENV = "isolation-check"
DEADLINE_S = 60


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("podforge-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PODFORGE_HOME", str(home))
        envs.build(ENV, log=lambda line: None)
        yield home


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition, what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def pids_in(workdir: Path) -> list[int]:
    return [int(line) for line in (workdir / "requests.log").read_text().split()]


def test_twelve_requests_of_one_spec_are_served_by_one_worker(home, tmp_path):
    with engine_workers() as pool:
        responses = [run_in_env(ENV, "iso", {"mode": "versions"}, {"say": f"line {n}"}, tmp_path / "lines") for n in range(12)]
        other = run_in_env(ENV, "iso", {"mode": "versions", "voice": "b"}, {}, tmp_path / "other")
        assert all(not gone(pid) for _, pid in pool.started)
    pids = {response.worker_pid for response in responses}
    assert len(pids) == 1 and pids_in(tmp_path / "lines") == [*pids] * 12
    assert [spec.settings for spec, _ in pool.started] == ['{"mode": "versions"}', '{"mode": "versions", "voice": "b"}']
    assert other.worker_pid not in pids  # other settings: another worker
    assert [r.load_s > 0 for r in responses] == [True] + [False] * 11
    assert all(gone(pid) for _, pid in pool.started)


def test_a_worker_that_dies_mid_request_is_restarted_once_and_the_request_served(home, tmp_path):
    settings = {"mode": "crash-on", "crash_on": 2}
    with engine_workers() as pool:
        first = run_in_env(ENV, "iso", settings, {}, tmp_path / "a")
        second = run_in_env(ENV, "iso", settings, {"text": "the second line"}, tmp_path / "b")  # crashes its worker, then succeeds
    assert second.worker_pid != first.worker_pid
    assert [pid for _, pid in pool.started] == [first.worker_pid, second.worker_pid]
    assert pids_in(tmp_path / "b") == [first.worker_pid, second.worker_pid]  # the request was sent twice
    assert second.load_s > 0  # it waited for the restarted worker's load


def test_a_timed_out_request_is_not_retried(home, tmp_path):
    with engine_workers(), pytest.raises(EngineError, match="timed out after 2 s; its process group was killed"):
        run_in_env(ENV, "iso", {"mode": "hang"}, {}, tmp_path, timeout_s=2)
    assert len(pids_in(tmp_path)) == 1
    assert gone(int((tmp_path / "grandchild.pid").read_text()))


def test_leaving_the_scope_kills_a_busy_worker_with_its_group(home, tmp_path):
    errors: list[EngineError] = []

    def waiting_task() -> None:  # a task thread (with the flow's context, as Prefect copies it) still waiting
        try:
            run_in_env(ENV, "iso", {"mode": "hang"}, {"text": "a line still speaking"}, tmp_path)
        except EngineError as exc:
            errors.append(exc)

    with engine_workers():
        context = contextvars.copy_context()
        task = threading.Thread(target=context.run, args=(waiting_task,))
        task.start()
        grandchild_file = tmp_path / "grandchild.pid"
        wait_until(lambda: grandchild_file.is_file() and grandchild_file.read_text(), "the runner's grandchild")
    task.join(timeout=DEADLINE_S)
    worker, grandchild = int((tmp_path / "runner.pid").read_text()), int(grandchild_file.read_text())
    assert gone(worker) and gone(grandchild)
    assert len(errors) == 1 and "was stopped (its flow run ended or was cancelled)" in errors[0].message
    assert "a line still speaking" in errors[0].message
    with pytest.raises(EngineError, match="workers were already stopped"):
        context.run(run_in_env, ENV, "iso", {"mode": "versions"}, {}, tmp_path)


ORPHAN = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from podforge.runner import run_in_env

    workdir, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "idle":
        response = run_in_env("isolation-check", "iso", {"mode": "versions"}, {}, workdir)
        (workdir / "runner.pid").write_text(str(response.worker_pid))
    else:
        threading.Thread(target=run_in_env, args=("isolation-check", "iso", {"mode": "hang"}, {}, workdir), daemon=True).start()
    time.sleep(600)
    """
)


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_a_worker_whose_parent_is_killed_exits_by_itself(home, tmp_path, state):
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN, str(tmp_path), state])
    try:
        wait_until(lambda: (tmp_path / "runner.pid").is_file() and (tmp_path / "runner.pid").read_text(), "the worker")
        if state == "busy":
            wait_until(lambda: (tmp_path / "grandchild.pid").is_file() and (tmp_path / "grandchild.pid").read_text(), "the grandchild")
        worker = int((tmp_path / "runner.pid").read_text())
        assert not gone(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: gone(worker), f"the {state} worker {worker} to exit after its parent was killed")
        if state == "busy":
            grandchild = int((tmp_path / "grandchild.pid").read_text())
            wait_until(lambda: gone(grandchild), "the worker's grandchild to exit")
    finally:
        parent.kill()


def test_requests_that_queue_while_the_worker_is_busy_are_served_as_one_batch(home, tmp_path):
    gate = tmp_path / "gate"
    results: dict[str, object] = {}

    def submit(name: str, request: dict) -> None:
        try:
            results[name] = run_in_env(ENV, "iso", {"mode": "versions"}, request, tmp_path / name)
        except EngineError as exc:
            results[name] = exc

    with engine_workers() as pool:

        def start(name: str, request: dict) -> threading.Thread:  # like a task thread: a copy of the flow's context
            thread = threading.Thread(target=contextvars.copy_context().run, args=(submit, name, request))
            thread.start()
            return thread

        first = start("first", {"wait_for": str(gate)})
        wait_until(lambda: (tmp_path / "first" / "requests.log").is_file(), "the first request to be computing")
        queued = [start(f"q{n}", {"say": f"queued {n}"}) for n in range(4)]
        wait_until(lambda: pool.pending() == 4, "four queued requests")
        gate.touch()
        for thread in [first, *queued]:
            thread.join(timeout=DEADLINE_S)

        gate.unlink()
        blocker = start("blocker", {"wait_for": str(gate)})
        wait_until(lambda: (tmp_path / "blocker" / "requests.log").is_file(), "the blocker to be computing")
        mixed = [start("good1", {}), start("bad", {"fail": True, "reason": "a bad line"}), start("good2", {})]
        wait_until(lambda: pool.pending() == 3, "three queued requests")
        gate.touch()
        for thread in [blocker, *mixed]:
            thread.join(timeout=DEADLINE_S)

    assert results["first"].batch_size == 1
    assert [results[f"q{n}"].batch_size for n in range(4)] == [4, 4, 4, 4]
    assert len({results[name].worker_pid for name in ["first", "q0", "q1", "q2", "q3"]}) == 1
    assert all(results[f"q{n}"].compute_s > 0 for n in range(4))
    # a failed batch is served again request by request: only the bad line fails
    assert isinstance(results["bad"], EngineError) and "asked to fail: a bad line" in results["bad"].message
    assert results["good1"].result["six"] == "1.15.0" and results["good2"].result["six"] == "1.15.0"
    assert len(pids_in(tmp_path / "bad")) == 2  # once in the failed batch, once alone


def test_a_request_over_the_memory_limit_fails_alone_and_the_worker_serves_on(home, tmp_path):
    settings = {"mode": "versions", "device": "cpu"}
    with engine_workers():
        with pytest.raises(EngineError, match="MemoryError") as caught:
            run_in_env(ENV, "iso", settings, {"hog_mb": 1024}, tmp_path / "hog", memory_gb=0.25)
        after = run_in_env(ENV, "iso", settings, {"hog_mb": 16}, tmp_path / "after", memory_gb=0.25)
    assert 'request: {"hog_mb": 1024}' in caught.value.message
    assert pids_in(tmp_path / "hog") == [after.worker_pid]  # the same worker: it was not killed


def test_each_request_logs_into_its_own_prefect_task_run(home, prefect_api, tmp_path):
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.runtime import task_run

    @task
    def speak(word: str) -> tuple[str, int | None]:
        response = run_in_env(ENV, "iso", {"mode": "versions", "max_batch": 1}, {"say": word}, tmp_path / word)
        return task_run.id, response.worker_pid

    @flow
    def two_lines():
        from prefect.runtime import flow_run

        with engine_workers():
            futures = [speak.submit(word) for word in ("alpha", "bravo", "charlie")]
            return [future.result() for future in futures], flow_run.id

    ran, flow_run_id = two_lines()
    assert len({pid for _, pid in ran}) == 1  # one worker served all three tasks
    task_of = {word: task_id for word, (task_id, _) in zip(("alpha", "bravo", "charlie"), ran, strict=True)}

    def said_by_task() -> dict[str, set[str]]:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        said: dict[str, set[str]] = {}
        for log in logs:
            if "isolation-check says" in log.message:
                said.setdefault(str(log.task_run_id), set()).add(log.message.split("says ")[1])
        return said

    expected = {str(task_of[word]): {f"{word} ({n})" for n in range(3)} for word in task_of}
    wait_until(lambda: said_by_task() == expected, "the runner's lines in the task logs (logs reach the API in batches)")


def test_workers_of_a_forked_child_are_its_own(home, tmp_path):
    """A forked process (multiprocessing's fork start) does not stop or use its parent's workers."""
    with engine_workers() as pool:
        parent_response = run_in_env(ENV, "iso", {"mode": "versions"}, {}, tmp_path / "parent")
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                child_response = run_in_env(ENV, "iso", {"mode": "versions"}, {}, tmp_path / "child")
                code = 0 if child_response.worker_pid != parent_response.worker_pid else 1
            except BaseException:  # noqa: BLE001
                code = 2
            finally:
                from podforge.workers import stop_all_workers

                stop_all_workers()
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not gone(parent_response.worker_pid)  # the child's exit left the parent's worker alone
        assert run_in_env(ENV, "iso", {"mode": "versions"}, {}, tmp_path / "again").worker_pid == parent_response.worker_pid
    assert len(pool.started) == 1


def test_an_idle_worker_is_stopped_and_started_again_on_demand(home, tmp_path):
    """A process's default pool (Ray or Dask worker processes, direct engine calls) stops idle workers."""
    with engine_workers(idle_s=0.5):
        first = run_in_env(ENV, "iso", {"mode": "versions"}, {}, tmp_path / "a")
        wait_until(lambda: gone(first.worker_pid), "the idle worker to be stopped")
        second = run_in_env(ENV, "iso", {"mode": "versions"}, {}, tmp_path / "b")
    assert second.worker_pid != first.worker_pid and second.load_s > 0
    assert gone(second.worker_pid)


def test_a_cuda_step_holds_its_gpu_slots_only_while_a_request_computes(home, prefect_api, tmp_path):
    """The slots are taken around each compute on the warm worker, not for the whole step, the queue or the load."""
    from prefect.client.orchestration import get_client

    from podforge import gpu
    from podforge.config import GpuSettings
    from podforge.runner import observe_runners

    gpu.ensure_gpu_limits([gpu.GpuInfo(index=4, name="test", uuid="GPU-4", memory_total_bytes=8 * 1024**3, driver_version="-")])

    def active_slots() -> int:
        with get_client(sync_client=True) as client:
            return client.read_global_concurrency_limit_by_name(gpu.limit_name(4)).active_slots

    class SlotsSeen:
        """Stacked inside the step's own observer: sees what the step holds while a request computes."""

        def __init__(self) -> None:
            self.during: list[int] = []

        def runner_env(self) -> dict[str, str]:
            return {}

        @contextlib.contextmanager
        def computing(self, pid: int):
            self.during.append(active_slots())
            yield

        def runner_finished(self, response) -> None:
            pass

    seen, between = SlotsSeen(), []
    with engine_workers(), gpu.gpu_step("iso", "cuda", 3, GpuSettings(gpu_index=4, guard="off")) as step, observe_runners(seen):
        for name in ("a", "b"):
            run_in_env(ENV, "iso", {"mode": "versions"}, {}, tmp_path / name)
            between.append(active_slots())
    assert seen.during == [3, 3] and between == [0, 0]
    assert step.load_s > 0 and step.compute_s > 0 and step.reported_device == "cpu"


def test_cpu_workers_compute_one_at_a_time_when_the_machine_has_one_cpu_slot(home, tmp_path):
    gate = tmp_path / "gate"
    done: list[str] = []

    def speak(name: str, settings: dict, request: dict) -> None:
        run_in_env(ENV, "iso", settings, request, tmp_path / name)
        done.append(name)

    with engine_workers(cpu_slots=1) as pool:
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(speak, "a", {"mode": "versions", "device": "cpu"}, {"wait_for": str(gate)}))]
        threads[0].start()
        wait_until(lambda: (tmp_path / "a" / "requests.log").is_file(), "the first CPU worker to compute")
        threads.append(threading.Thread(target=contextvars.copy_context().run, args=(speak, "b", {"mode": "versions", "device": "cpu", "voice": "b"}, {})))
        threads[1].start()
        wait_until(lambda: pool.waiting_for_cpu() == 1, "the second CPU worker to wait for the slot")
        assert not (tmp_path / "b" / "requests.log").exists() and len(pool.started) == 2  # loaded, not computing
        gate.touch()
        for thread in threads:
            thread.join(timeout=DEADLINE_S)
    assert sorted(done) == ["a", "b"]


def test_a_flow_under_with_engine_workers_stops_its_workers_when_it_ends_or_fails(home, prefect_api, tmp_path):
    from prefect import flow, task

    from podforge.workers import with_engine_workers

    @task
    def speak(word: str) -> int | None:
        return run_in_env(ENV, "iso", {"mode": "versions", "max_batch": 1}, {"say": word}, tmp_path / word).worker_pid

    @flow
    @with_engine_workers
    def lines(words: list[str], fail: bool = False) -> list[int | None]:
        """Speak every word."""
        pids = [future.result() for future in [speak.submit(word) for word in words]]
        if fail:
            raise RuntimeError(f"failed after {pids}")
        return pids

    assert lines.description == "Speak every word." and list(lines.parameters.properties) == ["words", "fail"]
    pids = set(lines(["alpha", "bravo"]))
    assert len(pids) == 1 and all(gone(pid) for pid in pids)  # one worker for the run, stopped when it returned
    with pytest.raises(RuntimeError, match="failed after") as failure:
        lines(["charlie"], fail=True)
    failed_pid = int(str(failure.value).split("[")[1].rstrip("]"))
    assert failed_pid not in pids and gone(failed_pid)
