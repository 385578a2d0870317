"""How much memory this process may still take, and the guard an in-process engine checks before a big job.

An engine that runs in this process (Piper, ONNX models) cannot be given an rlimit of its own: if one
request asks for more than there is, the kernel's OOM killer ends the whole run without a word. So such an
engine estimates a request's peak before it starts (:func:`require_memory`) and refuses it, in one line,
when the estimate exceeds the headroom: the least of the machine's available memory, the cgroup's limit
less its usage (containers, systemd slices), and the address-space rlimit (``ulimit -v``) less what this
process has mapped.
"""

from __future__ import annotations

import resource
from pathlib import Path

import psutil

from podforge.errors import EngineError

MB = 1 << 20
_CGROUP_FILES = (  # (limit, usage): cgroup v2, then v1
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
)


def headroom_mb() -> float:
    """Memory this process can still allocate, in MB (see the module's doc for what bounds it)."""
    limits = [psutil.virtual_memory().available]
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            limit_text, usage = limit_file.read_text().strip(), int(usage_file.read_text())
        except (OSError, ValueError):
            continue
        if limit_text != "max" and int(limit_text) < 1 << 60:
            limits.append(int(limit_text) - usage)
        break
    address_space, _ = resource.getrlimit(resource.RLIMIT_AS)
    if address_space != resource.RLIM_INFINITY:
        limits.append(address_space - psutil.Process().memory_info().vms)
    return max(0.0, min(limits) / MB)


def require_memory(needed_mb: float, what: str, *, field: str) -> None:
    """Refuse ``what`` (e.g. "speaking a 300-character piece") with an :class:`EngineError` when it would need
    more memory than :func:`headroom_mb` leaves."""
    free = headroom_mb()
    if needed_mb > free:
        raise EngineError(f"not enough memory for {what}: it needs about {needed_mb:,.0f} MB and {free:,.0f} MB is free", field=field)
