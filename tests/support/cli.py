"""Run `comfy-gateway` as a user does: a separate process, its output read back as text."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .procs import ROOT


def cli_env(url: str | None = None, api_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFY_GATEWAY_")}
    env["COLUMNS"] = "120"
    if url:
        env["COMFY_GATEWAY_URL"] = url
    if api_key:
        env["COMFY_GATEWAY_API_KEY"] = api_key
    return env


def run_cli(*args: str, url: str | None = None, api_key: str | None = None, cwd: Path = ROOT,
            timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "comfy_gateway.cli", *args], env=cli_env(url, api_key),
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, input=stdin)


def start_cli(*args: str, url: str | None = None, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """The CLI in the background, its stderr (progress) readable line by line as it comes, and
    Ctrl-C (SIGINT) reaching it as it reaches a command a user runs in their terminal."""
    with _sigint_not_ignored():
        return subprocess.Popen([sys.executable, "-m", "comfy_gateway.cli", *args], env=cli_env(url), cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)


@contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    # A suite started in the background by a shell without job control (`cmd &` in a script)
    # inherits SIGINT ignored, and so would every process it starts: the CLI would then never
    # see a Ctrl-C. A handled signal is reset to its default in a started program; an ignored
    # one stays ignored.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
