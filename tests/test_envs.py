"""Engine environments: real builds (uv and pip) of external/isolation-check, caching, atomicity, locks,
prune, the pip-config bridge to uv, and the doctor on this machine and on recorded probe outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import six
from typer.testing import CliRunner

from podforge import doctor, envs
from podforge.config import load_config
from podforge.engines.base import DoctorFinding as Finding
from podforge.errors import EngineError
from podforge.gpu import GpuInfo, list_gpus

REPO = Path(__file__).resolve().parent.parent
DOCTOR_DATA = Path(__file__).parent / "data" / "doctor"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PODFORGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def external(tmp_path, monkeypatch) -> Path:
    """An external/ folder of our own, with the real _common helpers."""
    folder = tmp_path / "external"
    shutil.copytree(REPO / "external" / "_common", folder / "_common")
    monkeypatch.setattr(envs, "EXTERNAL_DIR", folder)
    monkeypatch.setattr(envs, "COMMON_DIR", folder / "_common")
    return folder


def define_env(external: Path, name: str, requirements: str) -> Path:
    folder = external / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements.txt").write_text(requirements)
    return folder


def test_hash_covers_python_version_requirements_and_constraints(home, external):
    folder = define_env(external, "demo", "six==1.15.0\n")
    first = envs.env_hash("demo")
    assert envs.env_dir("demo") == home.resolve() / "envs" / f"demo-{first[:16]}"
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    second = envs.env_hash("demo")
    (folder / "constraints.txt").write_text("idna<3\n")
    third = envs.env_hash("demo")
    (folder / ".python-version").write_text("3.10\n")
    fourth = envs.env_hash("demo")
    assert len({first, second, third, fourth}) == 4
    assert envs.env_spec("demo").python_version == "3.10"


def test_nodeps_requirements_and_index_overrides_are_part_of_the_identity(home, external):
    folder = define_env(external, "demo", "six==1.15.0\n")
    plain = envs.env_hash("demo")
    (folder / "requirements-nodeps.txt").write_text("python-dateutil==2.9.0.post0\n")
    with_nodeps = envs.env_hash("demo")
    (folder / "index.txt").write_text("# PyTorch's CUDA 11.8 builds for Hopper GPUs\n--extra-index-url https://download.pytorch.org/whl/cu118\n")
    with_index = envs.env_hash("demo")
    assert len({plain, with_nodeps, with_index}) == 3
    spec = envs.env_spec("demo")
    assert spec.index_args() == ["--extra-index-url", "https://download.pytorch.org/whl/cu118"]
    steps = envs.install_steps(spec)
    assert [(path.name, extra) for path, extra in steps] == [("requirements.txt", []), ("requirements-nodeps.txt", ["--no-deps"])]


def test_an_index_file_comes_before_the_configured_indexes():
    settings = {"index-url": ["https://pypi.org/simple"], "extra-index-url": ["file:///opt/pypi/simple"], "find-links": ["/opt/wheels"]}
    uv_args = envs.uv_pip_args(settings, ["--index-url", "https://download.pytorch.org/whl/cu118"])
    assert uv_args[:4] == ["--index-strategy", "unsafe-best-match", "--index-url", "https://download.pytorch.org/whl/cu118"]
    assert "https://pypi.org/simple" not in uv_args  # replaced, not added
    assert uv_args[uv_args.index("--extra-index-url") + 1] == "file:///opt/pypi/simple"
    # on pip's command line the configured extras would be dropped, so they are repeated
    pip_args = envs.pip_index_args(settings, ["--extra-index-url", "https://download.pytorch.org/whl/cu118"])
    assert pip_args == ["--extra-index-url", "https://download.pytorch.org/whl/cu118", "--extra-index-url", "file:///opt/pypi/simple", "--find-links", "/opt/wheels"]
    assert envs.pip_index_args(settings, []) == []


def test_a_bad_index_line_names_the_file_and_line(tmp_path):
    index = tmp_path / "index.txt"
    index.write_text("--index-url https://example.invalid/simple\ntorch==2.0.1\n")
    with pytest.raises(EngineError, match=r"index.txt:2: expected one of --index-url"):
        envs.read_index_options(index)


def test_a_nodeps_requirements_file_is_installed_without_dependencies(home, external):
    define_env(external, "demo", "idna==2.10\n")
    (external / "demo" / "requirements-nodeps.txt").write_text("python-dateutil==2.9.0.post0\n")
    python = envs.build("demo", log=lambda line: None) / "bin" / "python"
    code = "import importlib.util as u, dateutil; print(dateutil.__version__, u.find_spec('six') is None)"
    completed = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.split() == ["2.9.0.post0", "True"]  # python-dateutil needs six; --no-deps left it out


def test_test_fixtures_are_hidden_from_users_but_build_by_name(home):
    assert "isolation-check" not in envs.defined_envs()
    assert "isolation-check" in envs.defined_envs(include_fixtures=True) and envs.env_spec("isolation-check").fixture
    envs.build("isolation-check", log=lambda line: None)
    assert "isolation-check" not in [row.name for row in envs.list_envs()]  # not listed, not even as "stale"


def test_unknown_and_unbuilt_environments_say_what_to_do(home):
    with pytest.raises(EngineError, match="unknown environment 'nope'.*known environments: .*sadtalker"):
        envs.env_hash("nope")
    with pytest.raises(EngineError, match=r"environment 'isolation-check' is not built; run `podforge envs build isolation-check`"):
        envs.python_for("isolation-check")


def versions_seen_by(python: Path) -> dict:
    code = "import json, six, sys; print(json.dumps({'six': six.__version__, 'prefix': sys.prefix}))"
    completed = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout)


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_build_isolation_check_then_cache_hit(home, installer):
    if installer == "uv" and envs.uv_binary() is None:
        pytest.skip("uv is not installed")
    lines: list[str] = []
    started = time.monotonic()
    target = envs.build("isolation-check", log=lines.append, installer=installer)
    first_build_s = time.monotonic() - started
    marker = envs.read_marker(target)
    assert marker is not None and marker.installer == installer and marker.size_bytes > 0
    python = envs.python_for("isolation-check")
    seen = versions_seen_by(python)
    assert seen["six"] == "1.15.0"
    assert Path(seen["prefix"]).resolve() == target.resolve()
    assert six.__version__ != "1.15.0"  # the main environment keeps its own six

    started = time.monotonic()
    again = envs.build("isolation-check", log=lines.append, installer=installer)
    assert again == target
    assert time.monotonic() - started < 1.0
    assert envs.read_marker(target) == marker  # not rebuilt
    assert any("already built" in line for line in lines)
    print(f"{installer} build of isolation-check: {first_build_s:.1f} s")


def test_a_killed_build_is_never_used_and_is_rebuilt(home):
    # A child process starts the build and kills itself (SIGKILL) the moment installation begins.
    script = textwrap.dedent(
        """
        import os, signal
        from podforge import envs
        def log(line):
            if "installing" in line:
                os.kill(os.getpid(), signal.SIGKILL)
        envs.build("isolation-check", log=log)
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == -9
    target = envs.env_dir("isolation-check")
    assert (target / "bin" / "python").exists()  # the venv was created ...
    assert envs.read_marker(target) is None  # ... but never finished
    with pytest.raises(EngineError, match="only partly built.*podforge envs build isolation-check"):
        envs.python_for("isolation-check")
    assert [row.state for row in envs.list_envs(include_fixtures=True) if row.name == "isolation-check"] == ["incomplete"]

    lines: list[str] = []
    assert envs.build("isolation-check", log=lines.append) == target
    assert any("removing an interrupted build" in line for line in lines)
    assert versions_seen_by(envs.python_for("isolation-check"))["six"] == "1.15.0"


def test_a_failed_build_leaves_nothing_and_reports_the_tail(home, external):
    define_env(external, "broken", "podforge-no-such-package-xyz==0.0.1\n")
    with pytest.raises(EngineError) as caught:
        envs.build("broken", log=lambda line: None)
    assert "installing broken's requirements.txt failed" in caught.value.message
    assert "podforge-no-such-package-xyz" in caught.value.message
    assert not envs.env_dir("broken").exists()
    with pytest.raises(EngineError, match="not built"):
        envs.python_for("broken")


def test_concurrent_builds_of_one_environment_build_it_once(home):
    script = "from podforge import envs; envs.build('isolation-check')"
    builders = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [builder.communicate(timeout=120)[0] for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0]
    assert sum("creating a Python" in out for out in outputs) == 1
    assert sum("already built" in out for out in outputs) == 1


def test_prune_removes_builds_whose_pins_changed(home, external):
    folder = define_env(external, "demo", "six==1.15.0\n")
    old = envs.build("demo", log=lambda line: None)
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    new = envs.build("demo", log=lambda line: None)
    assert old != new
    states = {row.path: row.state for row in envs.list_envs()}
    assert states == {new: "built", old: "stale"}
    assert envs.prune(log=lambda line: None) == [old]
    assert not old.exists() and new.exists()
    assert versions_seen_by(envs.python_for("demo"))["six"] == "1.16.0"


def test_uv_gets_the_indexes_and_caps_of_the_pip_configuration(tmp_path, monkeypatch):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nextra-index-url = file:///srv/a/simple file:///srv/b/simple\nfind-links = {tmp_path}\nconstraint = {constraints}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    settings = envs.pip_config()
    assert settings["extra-index-url"][:2] == ["file:///srv/a/simple", "file:///srv/b/simple"]
    assert str(tmp_path) in settings["find-links"]
    args = envs.uv_pip_args(settings)
    assert args[:2] == ["--index-strategy", "unsafe-best-match"]
    for flag, value in (("--extra-index-url", "file:///srv/a/simple"), ("--extra-index-url", "file:///srv/b/simple"), ("--find-links", str(tmp_path)), ("--constraint", str(constraints))):
        assert any(args[i] == flag and args[i + 1] == value for i in range(len(args) - 1)), (flag, value)


# --- doctor ---------------------------------------------------------------------------------------------


def load_probe(name: str) -> dict:
    return json.loads((DOCTOR_DATA / name).read_text())


def messages(findings, level: str) -> str:
    """The findings of one level, each as ``message → fix``."""
    return " | ".join(f.line() for f in findings if f.level == level)


def test_doctor_reads_a_probe_without_torch():
    findings = doctor.diagnose_probe(load_probe("isolation_check.json"), has_gpu=False, cuda_driver_version=None)
    assert "Python 3.11.7" in messages(findings, "info")
    assert "torch is not installed" in messages(findings, "info")
    assert not messages(findings, "error")


def test_doctor_names_a_cpu_only_torch():
    probe = load_probe("torch_cpu_only.json")
    here = doctor.diagnose_probe(probe, has_gpu=False, cuda_driver_version=None)
    assert "CPU-only torch 2.13.0+cpu" in messages(here, "info") and not messages(here, "error")
    on_a_gpu_machine = doctor.diagnose_probe(probe, has_gpu=True, cuda_driver_version="12.4", driver_version="550.54")
    assert "CPU-only torch installed" in messages(on_a_gpu_machine, "error")
    assert "torch.version.cuda is None" in messages(on_a_gpu_machine, "error")
    assert "no `np.float`" in messages(on_a_gpu_machine, "info")  # numpy 2.3.5, nothing here needs it


def test_doctor_names_a_torchvision_that_does_not_match_torch():
    findings = doctor.diagnose_probe(load_probe("torchvision_mismatch.json"), has_gpu=False, cuda_driver_version=None)
    error = messages(findings, "error")
    assert "torchvision 0.28.0 does not import with torch 2.13.0+cpu" in error
    assert "torchvision::nms" in error and "same CUDA or CPU variant" in error


def test_doctor_names_torch_built_for_a_newer_cuda_than_the_driver():
    findings = doctor.diagnose_probe(load_probe("cuda_driver_too_old.json"), has_gpu=True, cuda_driver_version="12.2", driver_version="535.183")
    error = messages(findings, "error")
    assert "torch built for another CUDA" in error
    assert "needs CUDA 12.8" in error and "supports CUDA up to 12.2" in error


def test_doctor_says_when_cuda_works():
    findings = doctor.diagnose_probe(load_probe("cuda_ok_h100.json"), has_gpu=True, cuda_driver_version="12.8", driver_version="570.86")
    assert "CUDA works: a test operation ran on NVIDIA H100 80GB HBM3" in messages(findings, "ok")
    assert not messages(findings, "error")


def test_doctor_names_a_gpu_too_new_for_the_torch_kernels():
    findings = doctor.diagnose_probe(load_probe("no_kernel_image.json"), has_gpu=True, cuda_driver_version="12.8", driver_version="570.86")
    error = messages(findings, "error")
    assert "a small CUDA operation failed on NVIDIA GeForce RTX 5090" in error
    assert "no kernels for capability 12.0" in error
    assert "np.float" not in error and "functional_tensor" not in error  # numpy 1.23.5, torchvision 0.15.2


def test_doctor_names_functional_tensor_and_np_float_for_basicsr():
    findings = doctor.diagnose_probe(load_probe("sadtalker_new_stack.json"), has_gpu=True, cuda_driver_version="12.4")
    error = messages(findings, "error")
    assert "`torchvision.transforms.functional_tensor` is missing (torchvision 0.20.1+cu124" in error
    assert "basicsr 1.4.2 imports it" in error
    assert "`np.float` is removed in numpy 1.26.4" in error and "basicsr, facexlib, gfpgan" in error


def test_doctor_on_this_machine_says_plainly_what_is_missing(home):
    if list_gpus():
        pytest.skip("this machine has a GPU")
    envs.build("isolation-check", log=lambda line: None)
    report = doctor.doctor()
    host = messages(report.host.findings, "info")
    assert "no NVIDIA GPU" in host and "NVMLError" in host and "cpu_fallback" in host  # the default config uses no CUDA engine: nothing is wrong
    assert not messages(report.host.findings, "warn") and not messages(report.host.findings, "error")
    assert "ffmpeg (imageio-ffmpeg's build): ffmpeg version" in messages(report.host.findings, "ok")
    by_name = {env.name: env for env in report.envs}
    assert "isolation-check" not in by_name  # a test fixture, never shown to users
    audiocraft = by_name["audiocraft"].findings[0]
    assert (audiocraft.level, audiocraft.line()) == ("info", "not built (this config does not use it) → run `podforge envs build audiocraft`")
    assert not [f.line() for env in report.envs for f in env.findings if f.level in ("warn", "error")]

    from podforge.envs_cli import envs_app

    result = CliRunner().invoke(envs_app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no NVIDIA GPU" in result.output and "podforge envs build audiocraft" in result.output
    listing = CliRunner().invoke(envs_app, ["list"], env={"COLUMNS": "200"})
    assert "isolation-check" not in listing.output and "not built" in listing.output


def test_without_a_gpu_the_cuda_engines_a_config_uses_are_named_with_the_fix():
    findings = doctor.diagnose_host("NVMLError_LibraryNotFound", [], None, None, ("libx264", "no GPU"), cuda_in_use=["sadtalker"])
    assert "uses CUDA engines that may not fall back to the CPU: sadtalker" in messages(findings, "warn")
    assert "gpu: {cpu_fallback: true}" in messages(findings, "warn")
    config = load_config(overrides={"use": {"avatar": "sadtalker"}})
    candidates = doctor.engine_candidates(config)
    assert doctor.cuda_engines_without_fallback(candidates, doctor.engines_in_use(config), config) == ["sadtalker"]
    allowed = load_config(overrides={"use": {"avatar": "sadtalker"}, "gpu": {"cpu_fallback": True}})
    assert doctor.cuda_engines_without_fallback(candidates, doctor.engines_in_use(allowed), allowed) == []
    assert doctor.engines_in_use(load_config()) == {"procedural", "audiogram", "portrait", "piper", "hibari"}


def test_free_vram_is_compared_with_each_engines_declared_need():
    # constructed NVML readings (GpuInfo as nvml_report builds it): a 16 GiB T4 with 5 GiB free, and an H200
    t4 = GpuInfo(index=0, name="Tesla T4", uuid="GPU-1", memory_total_bytes=16 * 1024**3, memory_free_bytes=5 * 1024**3, driver_version="550.54")
    needs = [("engines.musicgen", 3.0, True), ("engines.sadtalker", 7.0, True), ("voices.xtts-ana", 4.0, False), ("engines.musicgen-large", 24.0, True)]
    findings = doctor.vram_findings(needs, [t4], 0)
    assert "free VRAM on GPU 0 (Tesla T4: 5.0 of 16.0 GiB free) fits engines.musicgen 3 GiB" in messages(findings, "ok")
    warn = messages(findings, "warn")
    assert "engines.sadtalker declares 7 GiB of VRAM, but only 5.0 GiB is free" in warn and "nvidia-smi" in warn
    assert "engines.musicgen-large declares 24 GiB of VRAM, more than GPU 0" in warn and "a GPU with more memory" in warn
    assert "voices.xtts-ana declares 4 GiB" not in warn  # fits; and an engine the config does not use is never a warning
    assert "voices.xtts-ana 4 GiB" in messages(findings, "ok")
    unused_too_big = doctor.vram_findings([("engines.musicgen-large", 24.0, False)], [t4], 0)
    assert [f.level for f in unused_too_big] == ["info"] and unused_too_big[0].fix
    assert "gpu.gpu_index is 3" in messages(doctor.vram_findings(needs, [t4], 3), "error")
    assert doctor.vram_findings(needs, [], 0) == []  # no GPU: the host finding says so


def test_the_ffmpeg_finding_names_the_binary_its_version_and_the_fix(tmp_path):
    import imageio_ffmpeg

    found = doctor.ffmpeg_finding(None)
    assert found.level == "ok" and found.message.startswith("ffmpeg (imageio-ffmpeg's build): ffmpeg version ")
    assert found.message.endswith(imageio_ffmpeg.get_ffmpeg_exe())
    missing = doctor.ffmpeg_finding(str(tmp_path / "no-ffmpeg"))
    assert missing.level == "error" and "ffmpeg binary not found" in missing.message and "correct `ffmpeg:` in the config" in missing.fix
    not_ffmpeg = tmp_path / "not-ffmpeg"
    not_ffmpeg.write_text("#!/bin/sh\necho hello\n")
    not_ffmpeg.chmod(0o755)
    assert doctor.ffmpeg_finding(str(not_ffmpeg)).level == "error"


@pytest.mark.parametrize("probe_file", sorted(path.name for path in DOCTOR_DATA.glob("*.json")))
@pytest.mark.parametrize("has_gpu", [False, True])
def test_every_problem_the_doctor_finds_states_its_fix(probe_file, has_gpu):
    findings = doctor.diagnose_probe(load_probe(probe_file), has_gpu=has_gpu, cuda_driver_version="12.2" if has_gpu else None, driver_version="535.183", env="sadtalker")
    problems = [f for f in findings if f.level in ("warn", "error")]
    assert all(f.fix for f in problems), [f.message for f in problems if not f.fix]
    assert all("external/sadtalker/requirements.txt" in f.fix or "driver" in f.fix or "container" in f.fix or "torch built for this GPU" in f.fix for f in problems)


def test_what_a_config_does_not_use_is_information_not_a_warning():
    warn = Finding(level="warn", message="SadTalker checkout: not configured", fix="set SADTALKER_HOME")
    error = Finding(level="error", message="the runner cannot import librosa", fix="pin")
    assert [f.level for f in doctor.as_needed([warn, error], in_use=False)] == ["info", "error"]
    assert doctor.as_needed([warn, error], in_use=True) == [warn, error]


def test_doctor_checks_the_sadtalker_checkout_and_weights(tmp_path, monkeypatch):
    uses_sadtalker = load_config(overrides={"use": {"avatar": "sadtalker"}})
    monkeypatch.delenv("SADTALKER_HOME", raising=False)
    sadtalker = next(d for d in doctor.doctor(config=uses_sadtalker).envs if d.name == "sadtalker")
    assert any("SadTalker checkout" in f.message and "SADTALKER_HOME" in f.fix and f.level == "warn" for f in sadtalker.findings)
    by_default = next(d for d in doctor.doctor().envs if d.name == "sadtalker")
    assert any("SadTalker checkout" in f.message and f.level == "info" for f in by_default.findings)  # the default config does not use it

    checkout = tmp_path / "SadTalker"
    (checkout / "src" / "config").mkdir(parents=True)
    (checkout / "inference.py").write_text("# a checkout's entry point\n")
    monkeypatch.setenv("SADTALKER_HOME", str(checkout))
    sadtalker = next(d for d in doctor.doctor(config=uses_sadtalker).envs if d.name == "sadtalker")
    levels = {f.message.split(":")[0].split(" in ")[0]: f.level for f in sadtalker.findings}
    assert levels["SadTalker checkout"] == "ok"
    assert levels["SadTalker checkpoints"] == "warn"


def test_the_probe_imports_exactly_what_a_runner_imports():
    imports = doctor.runner_imports(REPO / "external" / "musicgen" / "runner.py")
    assert imports == [
        ["numpy", []],
        ["torch", []],
        ["transformers", ["AutoConfig", "AutoProcessor", "MusicgenForConditionalGeneration", "MusicgenMelodyForConditionalGeneration"]],
        ["huggingface_hub", ["constants"]],
        ["peft", ["PeftModel"]],
    ]  # os, pathlib (standard library) and music_windows, podforge_runner (_common) are not probed
    assert ["audiocraft.models", ["MusicGen"]] in doctor.runner_imports(REPO / "external" / "audiocraft" / "runner.py")
    assert ["imageio_ffmpeg", []] in doctor.runner_imports(REPO / "external" / "sadtalker" / "runner.py")


def test_the_probe_imports_what_the_runner_imports_and_commands_run_in_an_environment(home):
    from podforge.runner import run_env_python

    envs.build("isolation-check", log=lambda line: None)
    probe = doctor.run_probe("isolation-check")
    assert [(r["module"], r["ok"]) for r in probe["imports"]] == [("idna", True), ("six", True)]
    assert "the runner's imports all work: idna, six" in messages(doctor.import_findings(probe, "isolation-check"), "ok")
    version = run_env_python("isolation-check", ["-c", "import six, sys; print(six.__version__, sys.prefix)"])
    assert version.ok and version.returncode == 0
    assert version.tail.split()[0] != six.__version__ and "isolation-check-" in version.tail  # the environment's six, not ours
    failing = run_env_python("isolation-check", ["-c", "raise SystemExit(3)"])
    assert (failing.ok, failing.returncode) == (False, 3)


def test_a_failed_runner_import_says_which_and_how_to_fix_it():
    probe = {"imports": [{"module": "librosa", "names": [], "ok": False, "error": "ModuleNotFoundError: No module named 'pkg_resources'"}]}
    error = messages(doctor.import_findings(probe, "sadtalker"), "error")
    assert "the runner cannot import librosa: ModuleNotFoundError: No module named 'pkg_resources'" in error
    assert "external/sadtalker/requirements.txt" in error and "podforge envs build sadtalker" in error


def test_a_gpu_newer_than_the_torch_kernels_gets_the_exact_build_to_use():
    # constructed from torch 2.0.1's CUDA 11.7 wheel (torch.cuda.get_arch_list()) on an H200 (capability 9.0)
    hopper = {"version": "2.0.1+cu117", "capability": "9.0", "device_name": "NVIDIA H200", "arch_list": ["sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86"]}
    error = messages(doctor.arch_findings(hopper, "sadtalker"), "error")
    assert "torch 2.0.1+cu117 has no kernels for this GPU (NVIDIA H200, sm_90" in error
    assert "use torch 2.0.1+cu118" in error and "https://download.pytorch.org/whl/cu118" in error and "external/sadtalker/index.txt" in error
    ada = dict(hopper, capability="8.6", device_name="NVIDIA RTX A6000")
    assert "has kernels for this GPU (sm_86" in messages(doctor.arch_findings(ada, "sadtalker"), "ok")
    ampere_minor = dict(hopper, capability="8.7", device_name="Jetson Orin")  # sm_80/sm_86 cubins run on 8.7
    assert not messages(doctor.arch_findings(ampere_minor, "sadtalker"), "error")
    assert doctor.arch_findings({"version": "2.13.0+cpu"}, "musicgen") == []  # no GPU: nothing to compare


def test_podforge_envs_dir_moves_every_environment_out_of_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PODFORGE_ENVS_DIR", str(tmp_path / "shared-envs"))
    assert envs.envs_root() == (tmp_path / "shared-envs").resolve()
    assert envs.env_dir("isolation-check").parent == (tmp_path / "shared-envs").resolve()
    monkeypatch.delenv("PODFORGE_ENVS_DIR")
    assert envs.envs_root() == envs.podforge_home() / "envs"
