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
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from podforge.config import PodforgeConfig, deep_merge, load_config
from podforge.engines.base import DoctorFinding as Finding
from podforge.engines.base import Engine, EngineSettings, Resources, validate_settings
from podforge.engines.registry import engine_class
from podforge.envs import COMMON_DIR, env_spec, list_envs, python_for
from podforge.errors import ConfigError, EngineError
from podforge.gpu import GIB, GpuInfo, nvml_report
from podforge.media.encoders import choose_h264_encoder
from podforge.media.ffmpeg import ffmpeg_exe


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


def doctor(*, config: PodforgeConfig | None = None, ffmpeg: str | None = None) -> DoctorReport:
    """Check the host (NVML, free VRAM, ffmpeg, NVENC) and every defined environment (built? torch? CUDA
    really works? the runner's imports? the engine's own checks?).

    What this config does not use (``use:`` and the default voices' engines) cannot be wrong for it: its
    missing pieces are reported as ``info`` with their fix, never as ``warn``. Broken builds stay errors.
    """
    config = config or load_config()
    ffmpeg = ffmpeg or config.ffmpeg
    nvml = nvml_report()
    encoder = _encoder_choice(ffmpeg)
    candidates = engine_candidates(config)
    used = engines_in_use(config)
    host = HostDiagnosis(
        gpus=[f"GPU {g.index}: {g.name}, {g.vram_gb} GiB" for g in nvml.gpus],
        driver_version=nvml.driver_version,
        cuda_driver_version=nvml.cuda_driver_version,
        nvml_error=nvml.error,
        video_encoder=encoder[0] if encoder else None,
        findings=[
            *diagnose_host(nvml.error, nvml.gpus, nvml.driver_version, nvml.cuda_driver_version, encoder, cuda_in_use=cuda_engines_without_fallback(candidates, used, config)),
            ffmpeg_finding(ffmpeg),
            *vram_findings(vram_needs(candidates, used), nvml.gpus, config.gpu.gpu_index),
        ],
    )
    used_envs = {candidate.resources.env for candidate in candidates if candidate.name in used and candidate.resources}
    diagnoses = []
    for row in list_envs():
        if row.state == "stale":
            continue
        in_use = row.name in used_envs
        if row.state != "built":
            how = "a build was interrupted" if row.state == "incomplete" else "not built"
            findings = [Finding(level="warn", message=how + ("" if in_use else " (this config does not use it)"), fix=f"run `podforge envs build {row.name}`")]
            findings += engine_findings(row.name, candidates)
            diagnoses.append(EnvDiagnosis(name=row.name, state=row.state, path=row.path, findings=as_needed(findings, in_use)))
            continue
        try:
            probe = run_probe(row.name)
        except EngineError as exc:
            fix = f"run `podforge envs build {row.name}` again (delete {row.path} first if it keeps failing)"
            diagnoses.append(EnvDiagnosis(name=row.name, state=row.state, path=row.path, findings=[Finding(level="error", message=exc.message, fix=fix)]))
            continue
        findings = diagnose_probe(probe, has_gpu=bool(nvml.gpus), cuda_driver_version=nvml.cuda_driver_version, driver_version=nvml.driver_version, env=row.name)
        findings += arch_findings(probe.get("torch"), row.name) + import_findings(probe, row.name)
        findings += engine_findings(row.name, candidates)
        diagnoses.append(EnvDiagnosis(name=row.name, state=row.state, path=row.path, probe=probe, findings=as_needed(findings, in_use)))
    return DoctorReport(host=host, envs=diagnoses)


def as_needed(findings: list[Finding], in_use: bool) -> list[Finding]:
    """``findings`` as they are for what the config uses; else warnings become ``info`` (errors stay)."""
    if in_use:
        return findings
    return [finding.model_copy(update={"level": "info"}) if finding.level == "warn" else finding for finding in findings]


@dataclass(frozen=True)
class EngineCandidate:
    """One way the config can run an engine: its registry entry, or a voice preset merged over it."""

    name: str
    field: str
    engine: type[Engine]
    settings: EngineSettings | None = None
    error: ConfigError | None = None

    @property
    def resources(self) -> Resources | None:
        return self.engine.resources_for(self.settings) if self.settings is not None else None


def engine_candidates(config: PodforgeConfig) -> list[EngineCandidate]:
    """Every engine entry's settings and every voice preset's, validated (an invalid one keeps its error).

    A speech engine's own entry is completed by its voices, so it is left out when it is invalid alone.
    """
    candidates = []
    for name, entry in config.engines.items():
        cls = engine_class(entry.impl, where=f"engines.{name}.impl")
        fields = [(f"engines.{name}.settings", entry.settings)]
        fields += [(f"voices.{voice}.settings", deep_merge(entry.settings, preset.settings)) for voice, preset in config.voices.items() if preset.engine == name]
        for field, settings in fields:
            try:
                candidates.append(EngineCandidate(name=name, field=field, engine=cls, settings=validate_settings(cls, settings, field)))
            except ConfigError as exc:
                if field.startswith("voices.") or cls.kind != "speech":
                    candidates.append(EngineCandidate(name=name, field=field, engine=cls, error=exc))
    return candidates


def engines_in_use(config: PodforgeConfig) -> set[str]:
    """The engines a run with this config uses unless told otherwise: ``use:`` and the default voices'."""
    voices = {config.voices[voice].engine for voice in config.default_voices if voice in config.voices}
    return {config.use.music, config.use.video, config.use.avatar, *voices}


def engine_findings(env: str, candidates: list[EngineCandidate]) -> list[Finding]:
    """What the engines that run in ``env`` need beyond its pins (checkouts, weights), for the registry's
    settings and for every voice preset that uses them; a preset with a bad setting is named with its fix."""
    findings: list[Finding] = []
    for name in dict.fromkeys(candidate.name for candidate in candidates):
        own = [candidate for candidate in candidates if candidate.name == name]
        if env not in {candidate.resources.env for candidate in own if candidate.resources}:
            continue
        for candidate in own:
            if candidate.error is not None:
                findings.append(Finding(level="warn", message=candidate.error.one_line(), fix=f"correct {candidate.field}, or remove what you do not use"))
            else:
                findings += [finding for finding in candidate.engine.doctor_checks(candidate.settings) if finding not in findings]
    return findings


def cuda_engines_without_fallback(candidates: list[EngineCandidate], used: set[str], config: PodforgeConfig) -> list[str]:
    """The engines this config uses that need a CUDA GPU and may not fall back to the CPU."""
    if config.gpu.cpu_fallback:
        return []
    needing = []
    for candidate in candidates:
        resources = candidate.resources
        if candidate.name in used and resources and resources.device == "cuda" and not resources.cpu_fallback and candidate.name not in needing:
            needing.append(candidate.name)
    return needing


def vram_needs(candidates: list[EngineCandidate], used: set[str]) -> list[tuple[str, float, bool]]:
    """``(where it is configured, declared VRAM in GiB, used by this config)`` for every CUDA candidate."""
    needs = []
    for candidate in candidates:
        resources = candidate.resources
        if resources and resources.device == "cuda" and resources.vram_gb > 0:
            needs.append((candidate.field.removesuffix(".settings"), resources.vram_gb, candidate.name in used))
    return needs


def vram_findings(needs: list[tuple[str, float, bool]], gpus: list[GpuInfo], gpu_index: int) -> list[Finding]:
    """Each CUDA engine's declared VRAM against the chosen GPU's free memory (NVML), with the fix.

    Nothing without a GPU (the host finding says so). A need above the GPU's total memory can never be
    met; one above what is free now fails or waits while other processes hold the memory. Engines the
    config does not use are ``info``.
    """
    if not gpus or not needs:
        return []
    gpu = next((gpu for gpu in gpus if gpu.index == gpu_index), None)
    if gpu is None:
        listed = ", ".join(str(gpu.index) for gpu in gpus)
        return [Finding(level="error", message=f"gpu.gpu_index is {gpu_index}, but NVML lists GPU(s) {listed}", fix=f"set `gpu: {{gpu_index: N}}` to one of {listed}")]
    total = gpu.memory_total_bytes / GIB
    free = gpu.memory_free_bytes / GIB if gpu.memory_free_bytes is not None else total
    where = f"GPU {gpu.index} ({gpu.name}: {free:.1f} of {total:.1f} GiB free)"
    findings, fitting = [], []
    for field, need, in_use in needs:
        level = "warn" if in_use else "info"
        if need > total:
            findings.append(Finding(level=level, message=f"{field} declares {need:g} GiB of VRAM, more than {where} has", fix=f"choose a smaller model or size in {field}, a GPU with more memory, or `device: cpu`"))
        elif need > free:
            findings.append(Finding(level=level, message=f"{field} declares {need:g} GiB of VRAM, but only {free:.1f} GiB is free on {where}", fix="free GPU memory (`nvidia-smi` lists the processes holding it) or choose another GPU (`gpu: {gpu_index: N}`)"))
        else:
            fitting.append(f"{field} {need:g} GiB")
    if fitting:
        findings.insert(0, Finding(level="ok", message=f"free VRAM on {where} fits " + ", ".join(fitting)))
    return findings


def ffmpeg_finding(configured: str | None) -> Finding:
    """Is there an ffmpeg (the config's ``ffmpeg:``, else imageio-ffmpeg's) and does it run? Its version."""
    source = f"`ffmpeg: {configured}` in the config" if configured else "imageio-ffmpeg's build"
    fix = "correct `ffmpeg:` in the config, or remove it to use imageio-ffmpeg's build" if configured else "reinstall Podforge (`pip install -e .` brings imageio-ffmpeg), or set `ffmpeg:` in the config to an ffmpeg binary"
    try:
        binary = ffmpeg_exe(configured)
    except EngineError as exc:
        return Finding(level="error", message=f"ffmpeg ({source}): {exc.message}", fix=fix)
    except (ImportError, RuntimeError) as exc:
        return Finding(level="error", message=f"ffmpeg ({source}) is missing: {exc}", fix=fix)
    try:
        done = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding(level="error", message=f"ffmpeg ({source}) at {binary} does not run: {exc}", fix=fix)
    first_line = (done.stdout.strip().splitlines() or [""])[0]
    if done.returncode != 0 or not first_line.startswith("ffmpeg version"):
        return Finding(level="error", message=f"ffmpeg ({source}) at {binary} does not run (`-version` exited {done.returncode})", fix=fix)
    return Finding(level="ok", message=f"ffmpeg ({source}): {' '.join(first_line.split()[:3])}, {binary}")


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


def diagnose_host(nvml_error: str | None, gpus: list, driver_version: str | None, cuda_driver_version: str | None, encoder: tuple[str, str] | None, *, cuda_in_use: list[str] | None = None) -> list[Finding]:
    """NVML, the GPUs and NVENC. ``cuda_in_use``: the engines the config uses that need CUDA and may not
    fall back to the CPU; without a GPU they are what is wrong, and nothing is when there are none."""
    findings: list[Finding] = []
    if nvml_error or not gpus:
        why = f"no NVIDIA GPU: NVML is not usable ({nvml_error or 'it lists no GPU'})"
        fallback = "set `gpu: {cpu_fallback: true}` in the config (slow), or choose CPU engines"
        if cuda_in_use:
            findings.append(Finding(level="warn", message=f"{why}, and this config uses CUDA engines that may not fall back to the CPU: {', '.join(cuda_in_use)}", fix=fallback))
        else:
            findings.append(Finding(level="info", message=f"{why}; this config's engines run on the CPU. CUDA engines fail here unless they may fall back to the CPU", fix="to run one here anyway, set `gpu: {cpu_fallback: true}` in the config (slow)"))
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
    elif gpus:
        findings.append(Finding(level="warn", message=f"ffmpeg NVENC does not encode here, videos use {encoder[0]}: {encoder[1]}", fix="use an ffmpeg built with NVENC (`ffmpeg:` in the config) and an NVIDIA driver that supports it; libx264 works meanwhile"))
    else:
        findings.append(Finding(level="info", message=f"videos are encoded with {encoder[0]} (NVENC needs an NVIDIA GPU): {encoder[1]}"))
    return findings


def _version_tuple(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "").split("+")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def diagnose_probe(probe: dict, *, has_gpu: bool, cuda_driver_version: str | None, driver_version: str | None = None, env: str | None = None) -> list[Finding]:
    """Plain-words findings from a doctor probe report and what NVML says about the host, each problem with its fix."""
    pins = f"external/{env}/requirements.txt" if env else "the environment's requirements.txt"
    rebuild = f"`podforge envs build {env}`" if env else "`podforge envs build <env>`"
    findings = [Finding(level="info", message=f"Python {probe.get('python')} ({probe.get('executable')})")]
    packages: dict[str, str] = probe.get("packages", {})
    findings += _torch_findings(probe.get("torch"), has_gpu, cuda_driver_version, driver_version, pins, rebuild)
    vision = probe.get("torchvision") or {}
    if vision and not vision.get("importable"):
        error = vision.get("import_error", "")
        mismatch = " (its compiled operators do not match this torch build)" if "does not exist" in error else ""
        findings.append(Finding(
            level="error",
            message=f"torchvision {packages.get('torchvision', '?')} does not import with torch {packages.get('torch', '?')}: {error}{mismatch}",
            fix=f"pin the torchvision made for the installed torch, the same CUDA or CPU variant, in {pins}, then {rebuild}",
        ))
    elif vision.get("importable") and not vision.get("functional_tensor"):
        tv = packages.get("torchvision", "?")
        if "basicsr" in packages:
            findings.append(Finding(
                level="error",
                message=f"`torchvision.transforms.functional_tensor` is missing (torchvision {tv}; removed in 0.17) but basicsr {packages['basicsr']} imports it",
                fix=f"pin torchvision<0.17 (0.15.2 goes with torch 2.0.1) in {pins}, then {rebuild}",
            ))
        else:
            findings.append(Finding(level="info", message=f"torchvision {tv} has no `transforms.functional_tensor` (removed in 0.17); only basicsr-era code needs it"))
    numpy = probe.get("numpy") or {}
    if numpy.get("importable") and not numpy.get("has_np_float"):
        users = [name for name in NEEDS_NP_FLOAT if name in packages]
        if users:
            findings.append(Finding(
                level="error",
                message=f"`np.float` is removed in numpy {numpy.get('version')} (since 1.24) and {', '.join(users)} still use it",
                fix=f"pin numpy<1.24 (1.23.5) in {pins}, then {rebuild}",
            ))
        else:
            findings.append(Finding(level="info", message=f"numpy {numpy.get('version')} has no `np.float` (removed in 1.24); code written for older numpy fails on it"))
    return findings


def _torch_findings(torch: dict | None, has_gpu: bool, cuda_driver_version: str | None, driver_version: str | None, pins: str, rebuild: str) -> list[Finding]:
    if torch is None:
        return [Finding(level="info", message="torch is not installed in this environment (nothing on the GPU to check)")]
    if not torch.get("importable"):
        return [Finding(level="error", message=f"torch is installed but does not import: {torch.get('import_error')}", fix=f"correct the torch pin in {pins}, then {rebuild}")]
    version, build = torch.get("version"), torch.get("cuda_build")
    if build is None:
        if has_gpu:
            return [Finding(
                level="error",
                message=f"CPU-only torch installed (torch {version}: torch.version.cuda is None), so it can never use the GPU",
                fix=f"install a CUDA build of torch (a +cuXXX wheel): pin it in {pins} (its index in index.txt beside it), then {rebuild}",
            )]
        return [Finding(level="info", message=f"CPU-only torch {version} (torch.version.cuda is None): it runs on the CPU; fine on a machine without a GPU")]
    warnings_text = "; ".join(torch.get("warnings", []))
    if not torch.get("cuda_available"):
        if not has_gpu:
            return [Finding(level="info", message=f"torch {version} is built for CUDA {build}; this machine has no NVIDIA GPU, so it runs on the CPU here (nothing to fix)")]
        if cuda_driver_version and _version_tuple(build) > _version_tuple(cuda_driver_version):
            return [Finding(
                level="error",
                message=f"torch built for another CUDA: torch {version} needs CUDA {build}, but driver {driver_version} supports CUDA up to {cuda_driver_version}",
                fix=f"update the NVIDIA driver, or pin a torch built for CUDA {cuda_driver_version} or older in {pins}, then {rebuild}",
            )]
        return [Finding(
            level="error",
            message=f"torch {version} (CUDA {build}) says CUDA is not available although NVML sees a GPU: {warnings_text or 'no warning from torch'}",
            fix="check CUDA_VISIBLE_DEVICES and the container's GPU flags (`--gpus all`, the NVIDIA container runtime)",
        )]
    device = f"{torch.get('device_name')} (compute capability {torch.get('capability')})"
    if not torch.get("cuda_op_ok"):
        error = torch.get("cuda_op_error", "")
        if "no kernel image" in error:
            return [Finding(
                level="error",
                message=f"torch says CUDA is available, but a small CUDA operation failed on {device}: {error}: this torch has no kernels for capability {torch.get('capability')} (it has {', '.join(torch.get('arch_list', []))})",
                fix=f"install a torch built for this GPU (see the architecture finding below), then {rebuild}",
            )]
        return [Finding(level="error", message=f"torch says CUDA is available, but a small CUDA operation failed on {device}: {error}", fix="check the driver (`nvidia-smi`) and that no other process holds the whole GPU, then run `podforge envs doctor` again")]
    return [Finding(level="ok", message=f"CUDA works: a test operation ran on {device}; torch {version} built for CUDA {build}, driver {driver_version or '?'}")]
