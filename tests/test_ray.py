"""The Ray scale-out path: Podforge's real tasks on a local Ray instance through ``prefect-ray``.

Ray is an optional extra (``pip install -e '.[ray]'``, about 300 MB), so this module is skipped where it
is not installed. The Ray instance is started here (2 CPUs, no dashboard); ``RayTaskRunner`` finds it
already initialised and submits every task to it. Ray's own task timeline proves where the work ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray extra is not installed: pip install -e '.[ray]'")
prefect_ray = pytest.importorskip("prefect_ray", reason="the Ray extra is not installed: pip install -e '.[ray]'")

FAST = "mix: {intro_s: 0.5, outro_s: 0.5}\nvideo: {width: 320, height: 180, fps: 10}\n"
GPU_SLOT = "gpu_slot"  # a custom Ray resource standing in for `num_gpus` on this GPU-less machine


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, resources={GPU_SLOT: 1}, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def ray_task_executions() -> int:
    """How many Prefect tasks Ray workers have executed so far (from Ray's task timeline)."""
    return sum(1 for event in ray.timeline() if event.get("ph") == "X" and event.get("name") == "prefect_ray.task_runners._run_prefect_task")


def test_an_episode_runs_its_tasks_on_ray(prefect_api, local_ray, tmp_path: Path):
    from flows.episode import episode

    fast = tmp_path / "fast.yaml"
    fast.write_text(FAST, encoding="utf-8")
    before = ray_task_executions()

    on_ray = episode.with_options(task_runner=prefect_ray.RayTaskRunner())
    manifest = on_ray(script_text="---\ntitle: Ray episode\n---\nALEX: Hello from a Ray worker.\nSAM: Hi.\n", config=[str(fast)], out_dir=str(tmp_path / "out"))

    assert (manifest.out_dir / "episode.mp4").stat().st_size > 0
    submitted_steps = [s for s in manifest.steps if s.step not in {"publish"}]
    # music bed + one speech task per line + dialogue, mix, captions, video, audio, mux
    assert len(submitted_steps) == 1 + 2 + 2 + 6  # ... and one speech QA task per line
    assert ray_task_executions() - before == len(submitted_steps)


def test_per_task_resources_route_a_step_to_a_ray_worker(prefect_api, local_ray):
    from prefect import flow
    from prefect_ray.context import remote_options

    from podforge.config import load_config
    from podforge.engines.registry import resolve_engine
    from podforge.engines.base import MusicRequest
    from tasks.music import music

    config = load_config()
    spec = resolve_engine(config, config.use.music, "music")
    before = ray_task_executions()

    @flow(task_runner=prefect_ray.RayTaskRunner())
    def bed_on_a_gpu_slot():
        # On a GPU cluster this would read `remote_options(num_gpus=1)`.
        with remote_options(num_cpus=1, resources={GPU_SLOT: 1}):
            return music.submit(request=MusicRequest(prompt="calm lofi, 80 bpm", bars=2, seed=11), engine=spec, gpu=config.gpu).result()

    bed = bed_on_a_gpu_slot()
    assert bed.result.wav.stat().st_size > 0
    assert bed.record.step == "music"
    assert ray_task_executions() - before == 1
