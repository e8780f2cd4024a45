"""README's "Using it" block runs as written against the demo home (issue 22 §7).

The block is parsed from README.md, so the test follows the README: every `omniweave` line runs in
process with typer's CliRunner (a subprocess costs ~2 s of start-up each) from a folder whose
`.omniweave` is a copy of the session's demo home, as after README's first command. Two commands
run as real processes because they serve: `serve` (on a free port instead of 8787: tests run in
parallel) and the `curl` line against it, sent with httpx with the secret key the block created.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from omniweave.shells.cli.main import app
from tests.conftest import free_port, omniweave_cmd

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = ("serve",)
"""Commands that must run as real processes (they serve until stopped)."""


def readme_block() -> list[str]:
    """The lines of the first ```bash block after the "## Using it" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Using it\n", 1)[1]
    match = re.search(r"```bash\n(.*?)\n```", section, re.S)
    assert match, "README's 'Using it' section has no ```bash block"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_readme_block_parses() -> None:
    lines = readme_block()
    assert len(lines) >= 30
    for line in lines:
        words = shlex.split(line, comments=True)
        assert words[0] in (".venv/bin/omniweave", "curl"), line


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"`serve` exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("`serve` did not answer /health within 60 s")


@pytest.mark.slow
def test_readme_using_it_runs_as_written(demo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / ".omniweave"
    shutil.copytree(demo_home, home)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNIWEAVE_HOME", str(home))
    runner = CliRunner()
    server: subprocess.Popen[bytes] | None = None
    base_url, secret = "", ""
    ran: list[str] = []
    try:
        for line in readme_block():
            words = shlex.split(line, comments=True)
            if words[0] == "curl":
                assert server is not None and secret, "the curl line needs `serve` and `keys secret` before it"
                url = words[-1].replace("http://localhost:8787", base_url)
                header = words[words.index("-H") + 1].replace("$SECRET", secret)
                name, _, value = header.partition(": ")
                response = httpx.get(url, headers={name: value}, timeout=30)
                assert response.status_code == 200, (line, response.text)
                assert "ann@example.com" in response.text
                ran.append(line)
                continue
            args = words[1:]
            if args[0] in PROCESSES:
                port = free_port()
                args = [a if a != "8787" else str(port) for a in args]
                env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
                server = subprocess.Popen(
                    omniweave_cmd(*args), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
                base_url = f"http://127.0.0.1:{port}"
                _wait_healthy(base_url, server)
                ran.append(line)
                continue
            expanded: list[str] = []
            for arg in args:  # what the shell does with a glob (a quoted SQL query holds spaces)
                is_glob = "*" in arg and " " not in arg
                expanded += (sorted(glob.glob(arg)) or [arg]) if is_glob else [arg]
            result = runner.invoke(app, expanded, catch_exceptions=True)
            assert result.exit_code == 0, (
                f"README command failed (exit {result.exit_code}): {line}\n{result.output[-3000:]}\n{result.exception!r}"
            )
            if args[:2] == ["keys", "secret"]:
                secret = result.stdout.strip().splitlines()[-1]
            ran.append(line)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    assert len(ran) == len(readme_block())
