"""Starting and always stopping the processes a benchmark run needs: ComfyUI (real or fake)
and the gateway. Each runs in its own session (process group), so stopping it stops all of
its children too, and the group is only ever addressed by the id this module started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchlib.cores import pinned_env

REPO = Path(__file__).resolve().parents[2]


def _child_setup(cores: frozenset[int] | None) -> Callable[[], None]:
    def setup() -> None:
        _die_with_parent()
        if cores is not None:
            os.sched_setaffinity(0, cores)
    return setup


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if this benchmark dies without cleaning up (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


def http_post_json(url: str, body: dict, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return 0, str(exc).encode()


@dataclass
class Managed:
    name: str
    popen: subprocess.Popen
    log_path: Path
    url: str
    info: dict = field(default_factory=dict)
    # uvicorn re-raises SIGTERM after its graceful shutdown, which kills cProfile before it
    # writes; SIGINT becomes a KeyboardInterrupt, and cProfile writes its file in a finally.
    stop_signal: signal.Signals = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class ProcessManager:
    """Registry of every process this run started; stop_all() is idempotent and is called from
    finally blocks, atexit and the SIGTERM/SIGINT path."""

    def __init__(self, log_dir: Path, verbose: Callable[[str], None] = print):
        self.log_dir = log_dir
        self._procs: list[Managed] = []
        self._say = verbose
        self._started = 0

    def spawn(self, name: str, argv: list[str], *, url: str, env: dict[str, str] | None = None,
              cwd: Path | None = None, cores: frozenset[int] | None = None) -> Managed:
        """`cores`: the only cores the process (and its children) may run on; by default the
        ones this benchmark runs on."""
        self._started += 1
        log_path = self.log_dir / f"{self._started:02d}-{name}.log"
        log = open(log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        popen = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
            cwd=str(cwd) if cwd else None, start_new_session=True,
            preexec_fn=_child_setup(cores) if sys.platform.startswith("linux") else None,
        )
        log.close()
        proc = Managed(name, popen, log_path, url)
        self._procs.append(proc)
        return proc

    def stop(self, proc: Managed, grace: float = 10.0) -> None:
        if proc not in self._procs:
            return
        self._procs.remove(proc)
        if proc.popen.poll() is None:
            _signal_group(proc.pid, proc.stop_signal)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                try:
                    proc.popen.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        # Leftover children of the group (a wrapper script's python, say).
        _signal_group(proc.pid, signal.SIGKILL)

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.alive()]

    def stop_all(self) -> None:
        for proc in list(reversed(self._procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"warning: could not stop {proc.name} (pid {proc.pid}): {exc}", file=sys.stderr)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(check: Callable[[], bool], timeout: float, proc: Managed | None = None,
               interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}) before {what or 'ready'}; "
                               f"log {proc.log_path}:\n{proc.log_tail()}")
        time.sleep(interval)
    tail = f"; log {proc.log_path}:\n{proc.log_tail()}" if proc else ""
    raise TimeoutError(f"{what or 'process'} not ready after {timeout:.0f}s{tail}")


# -- ComfyUI ---------------------------------------------------------------------------------
def install_comfyui(timeout: float) -> Path:
    """Runs scripts/install_comfyui.sh (a no-op once installed) and returns the ComfyUI dir."""
    script = REPO / "scripts" / "install_comfyui.sh"
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"install_comfyui.sh failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def start_real_comfyui(pm: ProcessManager, base_dir: Path, timeout: float,
                       cores: frozenset[int] | None = None) -> Managed:
    """`cores`: run ComfyUI on these cores only (see cores.py)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"COMFYUI_DATA": str(base_dir), **(pinned_env(cores) if cores else {})}
    proc = pm.spawn("comfyui", ["bash", str(REPO / "scripts" / "run_comfyui.sh"), str(port)], url=url,
                    env=env, cores=cores)
    wait_until(lambda: http_get(url + "/system_stats")[0] == 200, timeout, proc, 0.2, "ComfyUI")
    status, body = http_get(url + "/system_stats")
    try:
        proc.info["comfyui_version"] = json.loads(body)["system"].get("comfyui_version")
    except (ValueError, KeyError, TypeError):
        pass
    proc.info["base_dir"] = str(base_dir)
    return proc


def start_fake_comfyui(pm: ProcessManager, python: str, base_dir: Path, timeout: float, src: Path = REPO) -> Managed:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = pm.spawn("fake_comfyui", [python, "-m", "comfy_gateway.testing.fake_comfyui", "--host", "127.0.0.1",
                                     "--port", str(port), "--base-dir", str(base_dir)],
                    url=url, cwd=base_dir, env={"PYTHONPATH": str(src)})
    wait_until(lambda: http_get(url + "/system_stats")[0] == 200, timeout, proc, 0.05, "fake ComfyUI")
    proc.info["base_dir"] = str(base_dir)
    return proc


def fake_available(python: str, src: Path = REPO) -> bool:
    out = subprocess.run([python, "-c", "import importlib.util as u, sys; "
                          "sys.exit(0 if u.find_spec('comfy_gateway.testing.fake_comfyui') else 1)"],
                         cwd=src, capture_output=True, env={**os.environ, "PYTHONPATH": str(src)})
    return out.returncode == 0


def snapshot_source(rev: str, dest: Path) -> str:
    """`git archive REV comfy_gateway` unpacked into dest (read-only use of the repository):
    benchmark a committed revision while the work tree changes. Returns the full commit id."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", commit, "comfy_gateway"], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {rev} failed")
    return commit


def imported_from(python: str, src: Path) -> str:
    """Where `import comfy_gateway` resolves with PYTHONPATH=src (the editable install comes after)."""
    out = subprocess.run([python, "-c", "import comfy_gateway; print(comfy_gateway.__file__)"], cwd=src,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    return out.stdout.strip() or out.stderr.strip()[-300:]


# -- the gateway -----------------------------------------------------------------------------
def start_gateway(pm: ProcessManager, python: str, *, comfy_url: str, output_dir: Path, workdir: Path,
                  generation_workers: int, max_queue_size: int, log_level: str, timeout: float,
                  extra_env: dict[str, str] | None = None, profile_to: Path | None = None,
                  src: Path = REPO) -> Managed:
    """`comfy-gateway serve` (as `python -m comfy_gateway.cli serve`, so the pid is the server
    itself), ready once /health is 200 and its websocket to every backend is connected."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "API_HOST": "127.0.0.1", "API_PORT": str(port), "COMFYUI_API_BASE": comfy_url,
        "OUTPUT_DIR": str(output_dir), "GENERATION_WORKERS": str(generation_workers),
        "MAX_QUEUE_SIZE": str(max_queue_size), "API_LOG_LEVEL": log_level, "API_WORKERS": "1",
        "PYTHONPATH": str(src),
    }
    env.update(extra_env or {})
    argv = [python]
    if profile_to is not None:  # cProfile writes its file when uvicorn exits on SIGTERM
        argv += ["-m", "cProfile", "-o", str(profile_to)]
    argv += ["-m", "comfy_gateway.cli", "serve"]
    # workdir: an empty temp folder, so no stray .env of the repository is read.
    proc = pm.spawn(f"gateway-gw{generation_workers}", argv, url=url, env=env, cwd=workdir)

    def ready() -> bool:
        status, body = http_get(url + "/health")
        if status != 200:
            return False
        try:
            return all(b.get("websocket_connected") for b in json.loads(body)["backends"])
        except (ValueError, KeyError, TypeError):
            return False

    if profile_to is not None:
        proc.stop_signal = signal.SIGINT
    wait_until(ready, timeout, proc, 0.05, "gateway")
    proc.info.update(generation_workers=generation_workers, output_dir=str(output_dir))
    return proc
