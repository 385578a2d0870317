"""``python -m podforge.lifeline PARENT_PID -- COMMAND [ARG...]``: run COMMAND, which dies with PARENT_PID.

The Prefect server and worker that Podforge starts must not outlive the process that started them: an
OOM-killed ``podforge run`` (SIGKILL, so no ``atexit``, no ``finally``) would otherwise leave its server
listening. This wrapper asks the kernel to send SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``),
then replaces itself with COMMAND: the request survives ``execve``, so COMMAND is the process that gets it.

Two details of ``PR_SET_PDEATHSIG``: the parent that counts is the *thread* that forked the child (start
servers from a thread that lives as long as the process, e.g. the main thread), and a parent that died
before the request was made is caught by comparing ``getppid()`` afterwards. Other systems have no such
request; there COMMAND runs unguarded.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Have the kernel send ``signum`` to this process when ``parent_pid`` (its parent) dies."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the request: nobody would ever signal us
        os.kill(os.getpid(), signum)


def lifeline_command(command: list[str], parent_pid: int | None = None) -> list[str]:
    """``command`` wrapped so that it dies with ``parent_pid`` (default: this process)."""
    return [sys.executable, "-m", "podforge.lifeline", str(parent_pid or os.getpid()), "--", *command]


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m podforge.lifeline PARENT_PID -- COMMAND [ARG...]")
    die_with_parent(int(argv[0]))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
