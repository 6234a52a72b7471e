"""Start real server processes for the tests: ComfyUI, the fake ComfyUI, the gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, ok=(200,)) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code in ok:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s (last: {last})")


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT):
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._fh.close()

    def output(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text(errors="replace")


def install_comfyui() -> Path:
    """Install (once, outside the clone) the real CPU ComfyUI; return the folder of its main.py."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "install_comfyui.sh")], check=True,
                         capture_output=True, text=True, timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


def start_comfyui(base_dir: Path, log: Path, port: int | None = None) -> tuple[Proc, str]:
    """A real ComfyUI; `port` to bring one back where a stopped one was."""
    comfy_dir = install_comfyui()
    venv_python = Path(os.environ.get("COMFYUI_HOME", Path.home() / ".cache/comfy-gateway/comfyui")) / "venv/bin/python"
    port = port or free_port()
    base_dir.mkdir(parents=True, exist_ok=True)
    args = [str(venv_python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
            "--disable-all-custom-nodes", "--base-directory", str(base_dir), "--dont-print-server",
            "--database-url", "sqlite:///:memory:"]
    proc = Proc(args, dict(os.environ), log, cwd=comfy_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/system_stats", 180, proc.proc)
    except Exception:
        proc.stop()
        raise RuntimeError("ComfyUI did not start:\n" + proc.output()[-3000:]) from None
    return proc, url


def start_fake_comfyui(base_dir: Path, log: Path, port: int | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    base_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "comfy_gateway.testing.fake_comfyui", "--host", "127.0.0.1",
            "--port", str(port), "--base-dir", str(base_dir)]
    proc = Proc(args, dict(os.environ), log)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/system_stats", 30, proc.proc)
    return proc, url


def start_gateway(env_overrides: dict[str, str], log: Path, cwd: Path) -> tuple[Proc, str]:
    """The gateway as users run it (`comfy-gateway serve`), in a folder of its own so that no
    developer's .env leaks into a test."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "COMFYUI_API", "MAX_", "OUTPUT_"))}
    env.update({"API_HOST": "127.0.0.1", "API_PORT": str(port), "API_LOG_LEVEL": "info"})
    env.update(env_overrides)
    proc = Proc([sys.executable, "-m", "comfy_gateway.cli", "serve"], env, log, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", 30, proc.proc, ok=(200, 503))  # 503: no backend (yet)
    except Exception:
        proc.stop()
        raise RuntimeError("gateway did not start:\n" + proc.output()[-3000:]) from None
    return proc, url
