"""Isolated engine environments: one virtual environment per folder under ``external/``.

An environment is defined by files in ``external/<name>/``:

* ``requirements.txt``: exact pins, resolved together (required);
* ``requirements-nodeps.txt``: exact pins installed afterwards with ``--no-deps``, for packages whose
  declared dependencies cannot be met or must not be followed (audiocraft 1.3.0 asks for ``av==11.0.0``,
  which has no wheel). Their real needs are pinned in ``requirements.txt``;
* ``constraints.txt``: caps applied to both installs;
* ``index.txt``: package-index overrides, one pip option per line (``--index-url URL``,
  ``--extra-index-url URL``, ``--find-links PATH``), e.g. PyTorch's cu118 index for torch 2.0.1 on Hopper
  GPUs. They apply to both installs, before this machine's pip configuration;
* ``.python-version``: the Python to use (default: the Python running Podforge);
* ``TEST_FIXTURE``: marks an environment that exists for the test suite only; it is hidden from
  ``envs list``, ``envs doctor`` and ``envs build --all`` but can be built by name.

It is built into ``PODFORGE_HOME/envs/<name>-<hash16>``, where the hash covers the Python version and those
files, so changing a pin or an index builds a new environment beside the old one (``prune`` removes the
old one).

Builds are atomic: the environment counts as built only once its marker file (written last) exists, and a
lock file keeps two builds of the same environment from racing. A folder without the marker is a build
that was interrupted; :func:`python_for` refuses it and :func:`build` starts it again from scratch.

Builds use ``uv`` when it is available (on PATH, or the ``uv`` package's binary) and ``venv`` + pip
otherwise. Both honour this machine's pip configuration (indexes, find-links, constraints), so local wheel
folders and caps apply to uv as they do to pip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from podforge.config import REPO_ROOT, podforge_home
from podforge.errors import EngineError
from podforge.io import write_text_atomic

EXTERNAL_DIR = REPO_ROOT / "external"
COMMON_DIR = EXTERNAL_DIR / "_common"
MARKER_NAME = "podforge-env.json"
Installer = Literal["uv", "pip"]
Log = Callable[[str], None]

PIP_MULTI_VALUED = ("extra-index-url", "find-links")
"""pip config keys whose value is a whitespace-separated list."""
INDEX_OPTIONS = ("--index-url", "--extra-index-url", "--find-links")
"""The options an ``index.txt`` may hold."""
IDENTITY_FILES = ("requirements.txt", "requirements-nodeps.txt", "constraints.txt", "index.txt")
"""The files of an environment folder whose content is part of the environment's hash, in this order."""
FIXTURE_MARKER = "TEST_FIXTURE"


class EnvSpec(BaseModel):
    """What defines an environment: its folder, its pins and the Python it runs on (``3.11``)."""

    name: str
    folder: Path
    requirements: Path
    requirements_nodeps: Path | None = None
    constraints: Path | None = None
    index: Path | None = None
    python_version: str
    fixture: bool = False

    @property
    def runner(self) -> Path:
        return self.folder / "runner.py"

    def index_args(self) -> list[str]:
        """The options of ``index.txt`` as command-line arguments (``[]`` without the file)."""
        return read_index_options(self.index) if self.index else []


class EnvMarker(BaseModel):
    """Written last into a finished environment; its presence is what "built" means."""

    name: str
    hash: str
    python_version: str
    installer: Installer
    built_at: datetime
    build_seconds: float
    size_bytes: int


class EnvStatus(BaseModel):
    """One row of ``podforge envs list``: a defined environment, or a leftover build in the cache."""

    name: str
    state: Literal["built", "not built", "incomplete", "stale"]
    path: Path
    hash: str
    marker: EnvMarker | None = None


def _env_folders() -> list[Path]:
    if not EXTERNAL_DIR.is_dir():
        return []
    return sorted(p for p in EXTERNAL_DIR.iterdir() if p.is_dir() and p.name[0] not in "._" and (p / "requirements.txt").is_file())


def defined_envs(*, include_fixtures: bool = False) -> list[str]:
    """Names of the folders under ``external/`` that hold a ``requirements.txt`` (test fixtures only on request)."""
    return [p.name for p in _env_folders() if include_fixtures or not (p / FIXTURE_MARKER).is_file()]


def fixture_envs() -> list[str]:
    """Environments that exist for the test suite (a ``TEST_FIXTURE`` file in their folder)."""
    return [p.name for p in _env_folders() if (p / FIXTURE_MARKER).is_file()]


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


def env_spec(name: str) -> EnvSpec:
    folder = EXTERNAL_DIR / name
    requirements = folder / "requirements.txt"
    if not requirements.is_file():
        known = ", ".join(defined_envs()) or "none"
        raise EngineError(f"unknown environment {name!r}: {requirements} does not exist; known environments: {known}", field="env")
    version_file = folder / ".python-version"
    python_version = version_file.read_text(encoding="utf-8").strip() if version_file.is_file() else f"{sys.version_info.major}.{sys.version_info.minor}"
    return EnvSpec(
        name=name,
        folder=folder,
        requirements=requirements,
        requirements_nodeps=_optional(folder / "requirements-nodeps.txt"),
        constraints=_optional(folder / "constraints.txt"),
        index=_optional(folder / "index.txt"),
        python_version=python_version,
        fixture=(folder / FIXTURE_MARKER).is_file(),
    )


def read_index_options(path: Path) -> list[str]:
    """``--index-url URL``-style lines of an ``index.txt`` as arguments; anything else is an EngineError.

    ``#`` starts a comment; ``--option=value`` and ``--option value`` are both accepted.
    """
    args: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        option, _, value = line.replace("=", " ", 1).partition(" ")
        value = value.strip()
        if option not in INDEX_OPTIONS or not value:
            raise EngineError(f"{path}:{number}: expected one of {', '.join(INDEX_OPTIONS)} followed by a URL or folder, not {raw.strip()!r}", field="env")
        args += [option, value]
    return args


def env_hash(name: str) -> str:
    """sha256 of the Python version and the pins, caps and indexes: the environment's identity."""
    spec = env_spec(name)
    digest = hashlib.sha256(f"python {spec.python_version}\n".encode())
    for filename in IDENTITY_FILES:
        path = spec.folder / filename
        if path.is_file():
            digest.update(f"{path.name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


ENVS_DIR_VARIABLE = "PODFORGE_ENVS_DIR"


def envs_root() -> Path:
    """Where engine environments are built: ``PODFORGE_ENVS_DIR`` when set (environments shared between
    homes, e.g. by ``make test-heavy`` runs or a CI cache), else ``PODFORGE_HOME/envs``."""
    shared = os.environ.get(ENVS_DIR_VARIABLE)
    return Path(shared).expanduser().resolve() if shared else podforge_home() / "envs"


def env_dir(name: str) -> Path:
    return _build_dir(name, env_hash(name))


def _build_dir(name: str, identity: str) -> Path:
    return envs_root() / f"{name}-{identity[:16]}"


def read_marker(path: Path) -> EnvMarker | None:
    """The marker of a finished build at ``path``, or None (not built, interrupted, or unreadable)."""
    try:
        return EnvMarker.model_validate_json((path / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def python_for(name: str) -> Path:
    """The interpreter of environment ``name``; an EngineError that says how to build it when missing."""
    target = env_dir(name)
    python = target / "bin" / "python"
    if read_marker(target) is None or not python.exists():
        state = "only partly built (a build was interrupted)" if target.exists() else "not built"
        raise EngineError(f"environment {name!r} is {state}; run `podforge envs build {name}`", field="env")
    return python


@contextlib.contextmanager
def _build_lock(target: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold ``<target>.lock`` (flock); yields False when ``blocking`` is off and someone else holds it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(name: str, *, log: Log = print, installer: Installer | None = None) -> Path:
    """Build environment ``name`` (a no-op when it is already built); return its folder.

    ``installer`` forces uv or pip; by default uv is used when available.
    """
    spec = env_spec(name)
    identity = env_hash(name)
    target = _build_dir(name, identity)
    with _build_lock(target):
        if read_marker(target) is not None:
            log(f"{name}: already built at {target}")
            return target
        if target.exists():
            log(f"{name}: removing an interrupted build at {target}")
            shutil.rmtree(target)
        tool = installer or ("uv" if uv_binary() else "pip")
        started = time.monotonic()
        try:
            interpreter = find_interpreter(spec.python_version)
            log(f"{name}: creating a Python {spec.python_version} environment with {tool} at {target}")
            _create_venv(tool, interpreter, target, log)
            log(f"{name}: installing {spec.requirements}")
            _install(tool, spec, target / "bin" / "python", log)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        marker = EnvMarker(
            name=name,
            hash=identity,
            python_version=spec.python_version,
            installer=tool,
            built_at=datetime.now(UTC),
            build_seconds=round(time.monotonic() - started, 2),
            size_bytes=folder_size(target),
        )
        write_text_atomic(target / MARKER_NAME, marker.model_dump_json(indent=2))
        log(f"{name}: built in {marker.build_seconds:.1f} s, {marker.size_bytes / 1e6:.1f} MB")
        return target


def uv_binary() -> str | None:
    """``uv`` on PATH, else the binary of the ``uv`` PyPI package, else None."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv
    except ImportError:
        return None
    try:
        return uv.find_uv_bin()
    except FileNotFoundError:
        return None


def find_interpreter(version: str) -> str:
    """A Python ``version`` (``3.11``) interpreter: the one running Podforge, else ``pythonX.Y`` on PATH."""
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return getattr(sys, "_base_executable", sys.executable)
    found = shutil.which(f"python{version}")
    uv = uv_binary()
    if not found and uv:
        completed = subprocess.run([uv, "python", "find", "--no-python-downloads", version], capture_output=True, text=True, check=False)
        found = completed.stdout.strip() if completed.returncode == 0 else None
    if not found:
        raise EngineError(f"this environment needs Python {version}, which was not found (no python{version} on PATH); install it (e.g. `uv python install {version}` or your package manager) and build again", field="env")
    return found


def pip_config() -> dict[str, list[str]]:
    """This machine's pip settings (``pip config list``: files and PIP_* variables), key -> values."""
    completed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    settings: dict[str, list[str]] = {}
    for line in completed.stdout.splitlines():
        scoped_key, sep, raw_value = line.partition("=")
        if not sep:
            continue
        key = scoped_key.rsplit(".", 1)[-1]
        value = raw_value.strip().strip("'\"")
        values = value.split() if key in PIP_MULTI_VALUED else [value]
        settings[key] = list(dict.fromkeys([*settings.get(key, []), *values]))
    return settings


def uv_pip_args(settings: dict[str, list[str]], index_args: list[str] | None = None) -> list[str]:
    """uv options that give ``uv pip install`` the indexes, wheel folders and caps pip would use.

    uv stops at the first index that has a package; pip takes the best version across all of them, so
    the same pins resolve the same way only with ``--index-strategy unsafe-best-match``. An environment's
    ``index.txt`` (``index_args``) comes first: its ``--index-url`` replaces the configured one.
    """
    args = ["--index-strategy", "unsafe-best-match", *(index_args or [])]
    if "--index-url" not in (index_args or []):
        for url in settings.get("index-url", [])[-1:]:
            args += ["--index-url", url]
    for url in settings.get("extra-index-url", []):
        args += ["--extra-index-url", url]
    for location in settings.get("find-links", []):
        args += ["--find-links", location]
    for constraint in settings.get("constraint", []):
        if Path(constraint).is_file():
            args += ["--constraint", constraint]
    return args


def _create_venv(tool: Installer, interpreter: str, target: Path, log: Log) -> None:
    if tool == "uv":
        _run_logged([uv_binary() or "uv", "venv", "--python", interpreter, str(target)], log, what="creating the environment")
    else:
        _run_logged([interpreter, "-m", "venv", str(target)], log, what="creating the environment")


def pip_index_args(settings: dict[str, list[str]], index_args: list[str]) -> list[str]:
    """pip options for an ``index.txt``: its own, plus the configured extra indexes and wheel folders.

    On pip's command line ``--extra-index-url`` and ``--find-links`` replace the configured values
    instead of adding to them, so the configured ones are repeated.
    """
    if not index_args:
        return []
    args = list(index_args)
    for url in settings.get("extra-index-url", []):
        args += ["--extra-index-url", url]
    for location in settings.get("find-links", []):
        args += ["--find-links", location]
    return args


def install_steps(spec: EnvSpec) -> list[tuple[Path, list[str]]]:
    """The installs that make an environment: ``(requirements file, extra pip options)``, in order."""
    extra = ["--constraint", str(spec.constraints)] if spec.constraints else []
    steps = [(spec.requirements, extra)]
    if spec.requirements_nodeps is not None:
        steps.append((spec.requirements_nodeps, [*extra, "--no-deps"]))
    return steps


def _install(tool: Installer, spec: EnvSpec, python: Path, log: Log) -> None:
    index_args = spec.index_args()
    settings = pip_config() if tool == "uv" or index_args else {}
    environment = dict(os.environ)
    if settings.get("cert") and "SSL_CERT_FILE" not in environment:
        environment["SSL_CERT_FILE"] = settings["cert"][-1]
    for requirements, extra in install_steps(spec):
        if tool == "uv":
            command = [uv_binary() or "uv", "pip", "install", "--python", str(python), "-r", str(requirements), *extra, *uv_pip_args(settings, index_args)]
        else:
            command = [str(python), "-m", "pip", "install", "--no-input", "-r", str(requirements), *extra, *pip_index_args(settings, index_args)]
        _run_logged(command, log, what=f"installing {spec.name}'s {requirements.name}", env=environment)


def _run_logged(command: list[str], log: Log, *, what: str, env: dict[str, str] | None = None) -> None:
    """Run ``command``, passing each output line to ``log``; an EngineError with the tail on failure."""
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace", env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            tail.append(line)
            log(line)
    if process.returncode != 0:
        lines = "\n".join(tail)
        raise EngineError(f"{what} failed (exit {process.returncode}): {shlex.join(command[:4])} …\n{lines}", field="env")


def folder_size(path: Path) -> int:
    """Bytes under ``path``, counting each hard-linked file once (uv links files from its cache)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for filename in files:
            try:
                stat = os.lstat(os.path.join(root, filename))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def list_envs(*, include_fixtures: bool = False) -> list[EnvStatus]:
    """Every defined environment (built, not built or interrupted) and every leftover build in the cache.

    Test fixtures and their builds are left out unless ``include_fixtures``.
    """
    rows: list[EnvStatus] = []
    current: set[Path] = set()
    if not include_fixtures:
        for name in fixture_envs():
            current.update(_cached_builds(name))
    for name in defined_envs(include_fixtures=include_fixtures):
        target = env_dir(name)
        current.add(target)
        marker = read_marker(target)
        state = "built" if marker else ("incomplete" if target.exists() else "not built")
        rows.append(EnvStatus(name=name, state=state, path=target, hash=target.name.rsplit("-", 1)[-1], marker=marker))
    for leftover in _cached_builds():
        if leftover not in current:
            name, _, short_hash = leftover.name.rpartition("-")
            rows.append(EnvStatus(name=name, state="stale", path=leftover, hash=short_hash, marker=read_marker(leftover)))
    return rows


def _cached_builds(name: str | None = None) -> list[Path]:
    """Build folders in the cache (of environment ``name`` only, when given)."""
    root = envs_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and "-" in p.name and (name is None or p.name.rpartition("-")[0] == name))


def prune(*, log: Log = print) -> list[Path]:
    """Delete builds that no longer match their requirements, and interrupted builds nobody is running."""
    removed: list[Path] = []
    for row in list_envs():
        if row.state not in ("stale", "incomplete"):
            continue
        with _build_lock(row.path, blocking=False) as acquired:
            if not acquired:
                log(f"{row.name}: a build is running at {row.path}; left alone")
                continue
            shutil.rmtree(row.path, ignore_errors=True)
        if row.state == "stale":
            (row.path.parent / f"{row.path.name}.lock").unlink(missing_ok=True)
        log(f"{row.name}: removed {row.state} build {row.path}")
        removed.append(row.path)
    return removed
