"""What an engine environment really has: Python, torch, CUDA, and the imports old engines trip on.

Runs inside an environment (standard library only; torch, torchvision and numpy are optional) and writes
one JSON object to the path given as its first argument (stdout when none). ``podforge envs doctor`` reads
it; the diagnosis lives in ``podforge.doctor`` so it can be tested on recorded outputs.

A second argument names a JSON file ``{"imports": [[module, [names...]], ...]}``: the modules (and names)
the environment's runner imports, each imported here the way the runner does.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

DISTRIBUTIONS = ("torch", "torchvision", "torchaudio", "numpy", "basicsr", "facexlib", "gfpgan", "transformers", "audiocraft", "coqui-tts")


def installed_versions() -> dict[str, str]:
    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:500]


def probe_cuda_op(torch: Any) -> dict[str, Any]:
    """Multiply two small matrices on the device and check the answer: listing a GPU is not using it."""
    try:
        ones = torch.ones((64, 64), device="cuda")
        total = float((ones @ ones).sum().item())
        torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - the failure is the finding
        return {"cuda_op_ok": False, "cuda_op_error": error_text(exc)}
    expected = 64.0 * 64 * 64
    if total != expected:
        return {"cuda_op_ok": False, "cuda_op_error": f"a 64x64 matmul summed to {total}, not {expected}"}
    return {"cuda_op_ok": True}


def probe_torch() -> dict[str, Any]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import torch
        except Exception as exc:  # noqa: BLE001
            return {"importable": False, "import_error": error_text(exc)}
        report: dict[str, Any] = {
            "importable": True,
            "version": torch.__version__,
            "cuda_build": torch.version.cuda,
            "cuda_available": bool(torch.cuda.is_available()),
        }
        if report["cuda_available"]:
            report["device_count"] = torch.cuda.device_count()
            report["device_name"] = torch.cuda.get_device_name(0)
            report["capability"] = ".".join(str(part) for part in torch.cuda.get_device_capability(0))
            report["arch_list"] = list(torch.cuda.get_arch_list())
            report.update(probe_cuda_op(torch))
    report["warnings"] = [str(w.message)[:500] for w in caught]
    return report


def probe_torchvision() -> dict[str, Any]:
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return {"importable": False, "import_error": error_text(exc)}
    try:
        present = importlib.util.find_spec("torchvision.transforms.functional_tensor") is not None
    except Exception:  # noqa: BLE001 - a broken parent package also means it is missing
        present = False
    return {"importable": True, "functional_tensor": present}


def probe_numpy() -> dict[str, Any]:
    try:
        import numpy
    except Exception as exc:  # noqa: BLE001
        return {"importable": False, "import_error": error_text(exc)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        has_float = hasattr(numpy, "float")
    return {"importable": True, "version": numpy.__version__, "has_np_float": has_float}


def probe_imports(imports: list[list]) -> list[dict[str, Any]]:
    """Import each ``[module, names]`` as ``from module import names`` (``import module`` when no names)."""
    results = []
    for module, names in imports:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = importlib.import_module(module)
                for name in names:
                    if not hasattr(loaded, name):
                        importlib.import_module(f"{module}.{name}")
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a broken package is a finding too
            results.append({"module": module, "names": names, "ok": False, "error": error_text(exc)})
        else:
            results.append({"module": module, "names": names, "ok": True})
    return results


def probe(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    versions = installed_versions()
    report: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable, "packages": versions}
    if spec:
        report["imports"] = probe_imports(spec.get("imports", []))
    if "torch" in versions:
        report["torch"] = probe_torch()
    if "torchvision" in versions:
        report["torchvision"] = probe_torchvision()
    if "numpy" in versions:
        report["numpy"] = probe_numpy()
    return report


def main() -> None:
    spec = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")) if len(sys.argv) > 2 else None
    text = json.dumps(probe(spec), indent=2)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
