"""Helper processes that must not outlive the process that started them.

The server runs two helpers: the committer (validates events and commits them to the inbox)
and the loader (moves the inbox into the event log). Each is a fresh Python interpreter that
reads its Settings as one JSON line on stdin (not argv: a database URL may hold a password)
and dies with its parent, even when the parent is killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from omniweave.settings import Settings


def spawn(
    code: str, settings: Settings, args: Sequence[str] = (), pass_fds: Sequence[int] = (), stdout: int | None = None
) -> subprocess.Popen[bytes]:
    """Start `python -c code args… <parent pid>` and send it `settings` on stdin (kept open)."""
    fields = settings.to_dict()
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args, str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=stdout,
        pass_fds=tuple(pass_fds),
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(fields).encode() + b"\n")
    process.stdin.flush()
    return process


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies, even by `kill -9` (Linux).

    The parent's pid is the last command-line argument (`spawn` puts it there).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def read_line(fd: int) -> tuple[bytes, bytes]:
    """One line from a file descriptor, unbuffered (so that select() on it stays truthful);
    returns the line and whatever was read after it. Exits if the parent closed the pipe."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 65536)
        if not chunk:
            os._exit(1)  # the parent is gone already
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def settings_from_stdin() -> tuple[Settings, bytes]:
    """In a helper: die with the parent, then read the Settings the parent sent."""
    die_with_parent(int(sys.argv[-1]))
    line, rest = read_line(0)
    return Settings.from_dict(json.loads(line)), rest
