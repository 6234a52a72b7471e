"""Benchmark: a large model by URL, downloaded and delivered by the gateway, with its memory.

Starts on 127.0.0.1: a static file server (python -m http.server) serving a MODEL_GIB GiB
safetensors file (a tiny SRVGGNetCompact header and a large padding tensor; sparse on disk), the
fake ComfyUI started with --enable-assets, and one gateway per delivery way (`shared`:
SHARED_MODELS_DIR is the fake's models folder; `assets`: ComfyUI's assets API). Each runs one
job EmptyImage -> UpscaleModelLoader(URL) -> ImageUpscaleWithModel -> SaveImage, while the
gateway's RSS is sampled every 20 ms. Prints, per way: seconds, delivery rate (MB/s of model
over the whole job), RSS before, peak RSS growth (target < 50 MB), PASS/FAIL. Exit code 0 only
if every way passed. Every process it starts is stopped when it ends.

    .venv/bin/python bench/bench_models.py                # 1 GiB, both ways
    .venv/bin/python bench/bench_models.py --gib 0.25 --ways shared
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
MB = 10**6
TARGET_MB = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, ok=(200,)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def make_model(path: Path, size: int) -> None:
    """An SRVGGNetCompact x2 header (the shapes spandrel reads) and one U8 padding tensor."""
    shapes = {"body.0.weight": [8, 3, 3, 3], "body.0.bias": [8], "body.1.weight": [8],
              "body.2.weight": [8, 8, 3, 3], "body.2.bias": [8], "body.3.weight": [8],
              "body.4.weight": [12, 8, 3, 3], "body.4.bias": [12]}
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    pad = max(size - offset - 4096, 0)
    header["padding"] = {"dtype": "U8", "shape": [pad], "data_offsets": [offset, offset + pad]}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset + pad)  # sparse: zeros cost no disk


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
        p = subprocess.Popen(args, env=env, cwd=cwd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def sample_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            out.append(proc.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.02)


def run_way(way: str, procs: Procs, work: Path, model_url: str, size: int) -> tuple[bool, str]:
    base = work / f"fake-{way}"
    fport = free_port()
    procs.start([sys.executable, "-m", "comfy_gateway.testing.fake_comfyui", "--host", "127.0.0.1", "--port",
                 str(fport), "--base-dir", str(base), "--enable-assets"], dict(os.environ), work / f"fake-{way}.log", ROOT)
    fake = f"http://127.0.0.1:{fport}"
    wait_http(fake + "/system_stats", 30)
    gport = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "COMFYUI_API", "MAX_", "MODEL_", "SHARED_"))}
    env.update({"API_HOST": "127.0.0.1", "API_PORT": str(gport), "COMFYUI_API_BASE": fake,
                "ASSET_ALLOWED_NETWORKS": "127.0.0.1/32", "MODEL_CACHE_DIR": str(work / f"cache-{way}"),
                "OUTPUT_DIR": str(work / f"out-{way}"), "MAX_MODEL_BYTES": str(size + MB)})
    if way == "shared":
        env["SHARED_MODELS_DIR"] = str(base / "models")
    gw_dir = work / f"gw-{way}"
    gw_dir.mkdir()
    gw = procs.start([sys.executable, "-m", "comfy_gateway.cli", "serve"], env, work / f"gw-{way}.log", gw_dir)
    url = f"http://127.0.0.1:{gport}"
    wait_http(url + "/health", 30, ok=(200, 503))
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 1}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_url}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "bench"}},
    }
    time.sleep(1.0)  # let the gateway settle (websocket, first allocations) before the baseline
    before = psutil.Process(gw.pid).memory_info().rss
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(gw.pid, stop, samples), daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    r = httpx.post(url + "/generate/sync", json={"input": {"workflow_json": workflow}}, timeout=1800)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    ok_job = r.status_code == 200 and r.json().get("status") == "completed"
    growth = (max(samples) - before) / MB if samples else float("nan")
    rate = size / MB / seconds
    passed = ok_job and growth < TARGET_MB
    line = (f"{way:7s} job {'completed' if ok_job else 'FAILED ' + r.text[:200]}: {seconds:6.2f} s, "
            f"{rate:7.1f} MB/s (download + delivery), RSS before {before / MB:6.1f} MB, "
            f"peak growth {growth:5.1f} MB (target < {TARGET_MB}) {'PASS' if passed else 'FAIL'}")
    procs.stop(gw)
    return passed, line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0, help="model size in GiB (default 1)")
    ap.add_argument("--ways", default="shared,assets", help="comma-separated: shared, assets")
    args = ap.parse_args()
    size = int(args.gib * 2**30)
    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        models = work / "served"
        models.mkdir()
        make_model(models / "big-x2.safetensors", size)
        port = free_port()
        procs.start([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(models)],
                    dict(os.environ), work / "files.log", ROOT)
        model_url = f"http://127.0.0.1:{port}/big-x2.safetensors"
        wait_http(f"http://127.0.0.1:{port}/", 30)
        print(f"model: {size} bytes ({args.gib:g} GiB) at {model_url}")
        results = [run_way(way.strip(), procs, work, model_url, size) for way in args.ways.split(",") if way.strip()]
        for _, line in results:
            print(line)
        return 0 if all(ok for ok, _ in results) else 1
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
