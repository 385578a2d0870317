"""``podforge envs doctor``: what works on this machine, what does not, and what to do about it.

It checks the host (NVML, the driver, NVENC), runs ``external/_common/doctor_probe.py`` inside every built
environment (torch, CUDA, a real CUDA operation, the GPU's architecture against torch's kernels, every
import the environment's runner makes, the imports old engines trip on) and asks each configured engine for
its own checks (:meth:`podforge.engines.base.Engine.doctor_checks`: checkouts, weights, its CLI). The
diagnosis is plain functions of recorded probe output, so it is tested without a GPU.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel

from podforge.config import PodforgeConfig, deep_merge, load_config
from podforge.engines.base import DoctorFinding as Finding
from podforge.engines.base import validate_settings
from podforge.engines.registry import engine_class
from podforge.envs import COMMON_DIR, env_spec, list_envs, python_for
from podforge.errors import ConfigError, EngineError
from podforge.gpu import nvml_report
from podforge.media.encoders import choose_h264_encoder


PROBE_TIMEOUT_S = 300.0
NEEDS_NP_FLOAT = ("basicsr", "facexlib", "gfpgan")
"""Packages of the SadTalker era that still call ``np.float`` (removed in numpy 1.24)."""


class EnvDiagnosis(BaseModel):
    name: str
    state: str
    path: Path
    probe: dict | None = None
    findings: list[Finding]


class HostDiagnosis(BaseModel):
    gpus: list[str]
    driver_version: str | None
    cuda_driver_version: str | None
    nvml_error: str | None
    video_encoder: str | None
    findings: list[Finding]


class DoctorReport(BaseModel):
    host: HostDiagnosis
    envs: list[EnvDiagnosis]


def doctor(*, ffmpeg: str | None = None) -> DoctorReport:
    """Check the host (NVML, NVENC) and every defined environment (built? torch? CUDA really works?)."""
    nvml = nvml_report()
    encoder = _encoder_choice(ffmpeg)
    host = HostDiagnosis(
        gpus=[f"GPU {g.index}: {g.name}, {g.vram_gb} GiB" for g in nvml.gpus],
        driver_version=nvml.driver_version,
        cuda_driver_version=nvml.cuda_driver_version,
        nvml_error=nvml.error,
        video_encoder=encoder[0] if encoder else None,
        findings=diagnose_host(nvml.error, nvml.gpus, nvml.driver_version, nvml.cuda_driver_version, encoder),
    )
    diagnoses = []
    for row in list_envs():
        if row.state == "stale":
            continue
        if row.state != "built":
            how = "a build was interrupted" if row.state == "incomplete" else "not built"
            findings = [Finding(level="warn", message=f"{how}; run `podforge envs build {row.name}`"), *engine_findings(row.name)]
            diagnoses.append(EnvDiagnosis(name=row.name, state=row.state, path=row.path, findings=findings))
            continue
        try:
            probe = run_probe(row.name)
        except EngineError as exc:
            diagnoses.append(EnvDiagnosis(name=row.name, state=row.state, path=row.path, findings=[Finding(level="error", message=exc.message)]))
            continue
        findings = diagnose_probe(probe, has_gpu=bool(nvml.gpus), cuda_driver_version=nvml.cuda_driver_version, driver_version=nvml.driver_version)
        findings += arch_findings(probe.get("torch"), row.name) + import_findings(probe, row.name)
        findings += engine_findings(row.name)
        diagnoses.append(EnvDiagnosis(name=row.name, state=row.state, path=row.path, probe=probe, findings=findings))
    return DoctorReport(host=host, envs=diagnoses)


def engine_findings(env: str, config: PodforgeConfig | None = None) -> list[Finding]:
    """What the engines that run in ``env`` need beyond its pins (checkouts, weights), for the registry's
    settings and for every voice preset that uses them; a preset with a bad setting is named with its fix."""
    config = config or load_config()
    findings: list[Finding] = []
    for name, entry in config.engines.items():
        cls = engine_class(entry.impl, where=f"engines.{name}.impl")
        candidates = [(f"engines.{name}.settings", entry.settings)]
        candidates += [(f"voices.{voice}.settings", deep_merge(entry.settings, preset.settings)) for voice, preset in config.voices.items() if preset.engine == name]
        valid, invalid = [], []
        for field, settings in candidates:
            try:
                valid.append(validate_settings(cls, settings, field))
            except ConfigError as exc:
                if field.startswith("voices.") or cls.kind != "speech":  # a speech engine's own entry is completed by its voices
                    invalid.append(Finding(level="warn", message=exc.one_line(), fix=f"correct {field}, or remove what you do not use"))
        if env not in {cls.resources_for(settings).env for settings in valid}:
            continue
        findings += invalid
        for settings in valid:
            findings += [finding for finding in cls.doctor_checks(settings) if finding not in findings]
    return findings


def _encoder_choice(ffmpeg: str | None) -> tuple[str, str] | None:
    """(encoder, reason) from the media helpers' NVENC probe, or None when they are not installed."""
    try:
        choice = choose_h264_encoder("auto", ffmpeg)
    except EngineError as exc:
        return ("none", exc.message)
    return (choice.name, choice.reason)


def runner_imports(runner: Path) -> list[list]:
    """What a runner imports beyond the standard library and ``_common``: ``[module, [names]]`` in order.

    Read from the runner's source (every ``import``, also those inside functions, which run when it
    serves), so the doctor's probe imports exactly what the runner will.
    """
    local = {path.stem for path in COMMON_DIR.glob("*.py")}
    found: list[list] = []
    for node in ast.walk(ast.parse(runner.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            entries = [[alias.name, []] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            entries = [[node.module, [alias.name for alias in node.names]]]
        else:
            continue
        for module, names in entries:
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in local or top == "__future__" or [module, names] in found:
                continue
            found.append([module, names])
    return found


def run_probe(name: str) -> dict:
    """Run ``_common/doctor_probe.py`` inside environment ``name``: its JSON report, with the result of
    importing what the environment's runner imports."""
    python = python_for(name)
    runner = env_spec(name).runner
    with tempfile.TemporaryDirectory(prefix="podforge-probe-") as folder:
        output = Path(folder) / "probe.json"
        probe_spec = Path(folder) / "spec.json"
        probe_spec.write_text(json.dumps({"imports": runner_imports(runner) if runner.is_file() else []}), encoding="utf-8")
        environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        environment["PYTHONNOUSERSITE"] = "1"
        environment["PYTHONPATH"] = str(COMMON_DIR)  # as for the runner itself
        try:
            completed = subprocess.run(
                [str(python), str(COMMON_DIR / "doctor_probe.py"), str(output), str(probe_spec)],
                capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=environment, check=False,
            )
        except subprocess.TimeoutExpired:
            raise EngineError(f"the doctor probe did not finish within {PROBE_TIMEOUT_S:g} s in environment {name!r}", field="env") from None
        if completed.returncode != 0 or not output.is_file():
            tail = "\n".join(completed.stderr.strip().splitlines()[-10:])
            raise EngineError(f"the doctor probe failed in environment {name!r} (exit {completed.returncode}):\n{tail}", field="env")
        return json.loads(output.read_text(encoding="utf-8"))


def import_findings(probe: dict, env: str) -> list[Finding]:
    """One finding per runner import that fails, with the fix; one ok line when they all import."""
    results = probe.get("imports")
    if results is None:
        return []
    failed = [result for result in results if not result["ok"]]
    if not failed:
        return [Finding(level="ok", message=f"the runner's imports all work: {', '.join(result['module'] for result in results) or 'none'}")]
    return [
        Finding(
            level="error",
            message=f"the runner cannot import {result['module']}" + (f" ({', '.join(result['names'])})" if result["names"] else "") + f": {result['error']}",
            fix=f"correct the pin in external/{env}/requirements.txt and run `podforge envs build {env}`",
        )
        for result in failed
    ]


MIN_CUDA_FOR_CAPABILITY = {(8, 9): "11.8", (9, 0): "11.8", (10, 0): "12.8", (12, 0): "12.8"}
"""The first CUDA toolkit with kernels for a compute capability (older ones run on CUDA 11.x builds)."""


def arch_findings(torch_probe: dict | None, env: str) -> list[Finding]:
    """Does this torch carry kernels for the GPU's compute capability? If not, exactly which build to use."""
    if not torch_probe or not torch_probe.get("capability") or not torch_probe.get("arch_list"):
        return []
    major, minor = (int(part) for part in str(torch_probe["capability"]).split("."))
    archs = torch_probe["arch_list"]
    sm = f"sm_{major}{minor}"
    lower_same_major = [a for a in archs if a.startswith(f"sm_{major}") and a <= sm]
    ptx = [a for a in archs if a.startswith("compute_") and int(a.split("_")[1]) <= major * 10 + minor]
    if sm in archs or lower_same_major or ptx:
        return [Finding(level="ok", message=f"torch {torch_probe.get('version')} has kernels for this GPU ({sm}; built for {', '.join(archs)})")]
    version = str(torch_probe.get("version", "?")).split("+")[0]
    cuda = MIN_CUDA_FOR_CAPABILITY.get((major, minor), "a newer CUDA")
    tag = "cu" + cuda.replace(".", "") if cuda[0].isdigit() else "cuXXX"
    return [Finding(
        level="error",
        message=(
            f"torch {torch_probe.get('version')} has no kernels for this GPU ({torch_probe.get('device_name')}, {sm}; it has {', '.join(archs)}), "
            f"so CUDA work fails with \"no kernel image\""
        ),
        fix=(
            f"use torch {version}+{tag}: put `--index-url https://download.pytorch.org/whl/{tag}` and `--extra-index-url https://pypi.org/simple` "
            f"in external/{env}/index.txt and run `podforge envs build {env}`"
        ),
    )]


def diagnose_host(nvml_error: str | None, gpus: list, driver_version: str | None, cuda_driver_version: str | None, encoder: tuple[str, str] | None) -> list[Finding]:
    findings: list[Finding] = []
    if nvml_error or not gpus:
        findings.append(Finding(level="warn", message=(
            f"no NVIDIA GPU: NVML is not usable ({nvml_error or 'it lists no GPU'}). CUDA engines fail here unless "
            "CPU fallback is allowed (`gpu: {cpu_fallback: true}` in the config, or an engine that allows it)")))
    else:
        names = "; ".join(f"GPU {g.index}: {g.name} ({g.vram_gb} GiB)" for g in gpus)
        findings.append(Finding(level="ok", message=f"{names}; driver {driver_version}, supports CUDA up to {cuda_driver_version}"))
        findings.append(Finding(level="info", message=(
            "a model left on the CPU cannot be seen before it runs: each CUDA step is sampled with NVML and "
            "flagged when its process never appears on the GPU or utilisation stays near 0% (`gpu.guard: warn|fail`)")))
    if encoder is None:
        findings.append(Finding(level="info", message="ffmpeg NVENC: not checked (podforge.media.encoders is not available)"))
    elif encoder[0] == "h264_nvenc":
        findings.append(Finding(level="ok", message=f"ffmpeg NVENC encodes: {encoder[1]}"))
    else:
        findings.append(Finding(level="warn" if gpus else "info", message=f"ffmpeg NVENC does not encode here, videos use {encoder[0]}: {encoder[1]}"))
    return findings


def _version_tuple(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "").split("+")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def diagnose_probe(probe: dict, *, has_gpu: bool, cuda_driver_version: str | None, driver_version: str | None = None) -> list[Finding]:
    """Plain-words findings from a doctor probe report and what NVML says about the host."""
    findings = [Finding(level="info", message=f"Python {probe.get('python')} ({probe.get('executable')})")]
    packages: dict[str, str] = probe.get("packages", {})
    findings += _torch_findings(probe.get("torch"), has_gpu, cuda_driver_version, driver_version)
    vision = probe.get("torchvision") or {}
    if vision and not vision.get("importable"):
        error = vision.get("import_error", "")
        hint = " (its compiled operators do not match this torch build: install the torchvision made for the installed torch, the same CUDA or CPU variant)" if "does not exist" in error else ""
        findings.append(Finding(level="error", message=f"torchvision {packages.get('torchvision', '?')} does not import with torch {packages.get('torch', '?')}: {error}{hint}"))
    elif vision.get("importable") and not vision.get("functional_tensor"):
        tv = packages.get("torchvision", "?")
        if "basicsr" in packages:
            findings.append(Finding(level="error", message=(
                f"`torchvision.transforms.functional_tensor` is missing (torchvision {tv}; removed in 0.17) but basicsr "
                f"{packages['basicsr']} imports it: pin torchvision<0.17 (0.15.2 goes with torch 2.0.1)")))
        else:
            findings.append(Finding(level="info", message=f"torchvision {tv} has no `transforms.functional_tensor` (removed in 0.17); only basicsr-era code needs it"))
    numpy = probe.get("numpy") or {}
    if numpy.get("importable") and not numpy.get("has_np_float"):
        users = [name for name in NEEDS_NP_FLOAT if name in packages]
        if users:
            findings.append(Finding(level="error", message=(
                f"`np.float` is removed in numpy {numpy.get('version')} (since 1.24) and {', '.join(users)} still use it: "
                "pin numpy<1.24 (1.23.5)")))
        else:
            findings.append(Finding(level="info", message=f"numpy {numpy.get('version')} has no `np.float` (removed in 1.24); code written for older numpy fails on it"))
    return findings


def _torch_findings(torch: dict | None, has_gpu: bool, cuda_driver_version: str | None, driver_version: str | None) -> list[Finding]:
    if torch is None:
        return [Finding(level="info", message="torch is not installed in this environment (nothing on the GPU to check)")]
    if not torch.get("importable"):
        return [Finding(level="error", message=f"torch is installed but does not import: {torch.get('import_error')}")]
    version, build = torch.get("version"), torch.get("cuda_build")
    if build is None:
        if has_gpu:
            return [Finding(level="error", message=(
                f"CPU-only torch installed (torch {version}: torch.version.cuda is None), so it can never use the GPU: "
                "install a CUDA build of torch (a +cuXXX wheel) in this environment"))]
        return [Finding(level="info", message=f"CPU-only torch {version} (torch.version.cuda is None): it runs on the CPU; fine on a machine without a GPU")]
    warnings_text = "; ".join(torch.get("warnings", []))
    if not torch.get("cuda_available"):
        if not has_gpu:
            return [Finding(level="warn", message=f"torch {version} is built for CUDA {build}, but this machine has no usable NVIDIA GPU: CUDA is not available, so it runs on the CPU")]
        if cuda_driver_version and _version_tuple(build) > _version_tuple(cuda_driver_version):
            return [Finding(level="error", message=(
                f"torch built for another CUDA: torch {version} needs CUDA {build}, but driver {driver_version} supports CUDA "
                f"up to {cuda_driver_version}: update the NVIDIA driver, or install a torch built for CUDA {cuda_driver_version} or older"))]
        return [Finding(level="error", message=f"torch {version} (CUDA {build}) says CUDA is not available although NVML sees a GPU: {warnings_text or 'check CUDA_VISIBLE_DEVICES and the container GPU flags'}")]
    device = f"{torch.get('device_name')} (compute capability {torch.get('capability')})"
    if not torch.get("cuda_op_ok"):
        error = torch.get("cuda_op_error", "")
        hint = ""
        if "no kernel image" in error:
            hint = f": this torch has no kernels for capability {torch.get('capability')} (it has {', '.join(torch.get('arch_list', []))}); install a newer torch"
        return [Finding(level="error", message=f"torch says CUDA is available, but a small CUDA operation failed on {device}: {error}{hint}")]
    return [Finding(level="ok", message=f"CUDA works: a test operation ran on {device}; torch {version} built for CUDA {build}, driver {driver_version or '?'}")]
