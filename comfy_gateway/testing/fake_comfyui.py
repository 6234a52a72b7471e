"""A protocol-faithful fake ComfyUI 0.3.75 server (aiohttp), for tests and benchmarks.

It answers like the transcripts in shared/comfyui-protocol/ (and like ComfyUI's own
server.py / execution.py / main.py, which it ports): same routes with and without the
``/api`` prefix, same JSON shapes and key order, same websocket frame order and
visibility, same history entries, same 400/500 bodies. Fake-only nodes (FakeSlow,
FakeFail, FakeBigOutput) and knobs make it do what a real ComfyUI cannot on demand.

In-process::

    fake = FakeComfyUI(tmp_path, node_delay=0.1)
    await fake.start("127.0.0.1", 0)      # fake.url == "http://127.0.0.1:<port>"
    fake.set(fail_next=1)                 # or POST {url}/fake/control {"fail_next": 1}
    await fake.stop()

Command line: ``python -m comfy_gateway.testing.fake_comfyui --port 8188 --base-dir DIR``
prints ``ready http://HOST:PORT`` once listening.
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import logging
import mimetypes
import os
import shutil
import signal
import sys
import time
import traceback
import uuid
from io import BytesIO
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image

from comfy_gateway.testing.fake_nodes import (
    OOM_TIPS,
    Dirs,
    ExecutionList,
    InterruptProcessingException,
    NodeContext,
    OutOfMemoryError,
    SaveCounters,
    format_value,
    full_type_name,
    get_input_data,
    make_nodes,
    node_signatures,
    validate_prompt,
)

log = logging.getLogger(__name__)

MAX_HISTORY_SIZE = 10000
MAX_UPLOAD_SIZE = 100 * 1024 * 1024
FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}
TEXT_500 = "500 Internal Server Error\n\nServer got itself in trouble"
MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen",
                 "upscale_models", "latent_upscale_models", "custom_nodes", "hypernetworks", "photomaker",
                 "classifiers", "model_patches", "audio_encoders"]
DEFAULT_KNOBS: dict[str, Any] = {
    "node_delay": 0.0,             # seconds added to every executed node
    "history_lag": 0.0,            # seconds between execution_success/error and the history write
    "fail_next": 0,                # next N prompts fail with execution_error at their first node
    "drop_ws_after_frames": None,  # close every websocket after N more frames (None: never)
    "refuse_ws": False,            # answer websocket upgrades with 503
    "hang": False,                 # executor picks no new prompt
    "down": False,                 # every non-/fake route answers 503, sockets are dropped
    "cache": False,                # ComfyUI's classic output cache (identical nodes are not re-run)
}
ACTIONS = ("drop_ws_now", "restart")  # one-shot knobs: true runs the action
mimetypes.add_type("image/webp", ".webp")


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Sock:
    __slots__ = ("ws", "request", "sid", "remaining", "dropped")

    def __init__(self, ws, request, sid, remaining):
        self.ws, self.request, self.sid, self.remaining, self.dropped = ws, request, sid, remaining, False


class _Progress:
    """comfy_execution.progress.ProgressRegistry + WebUIProgressHandler."""

    def __init__(self, fake: "FakeComfyUI", prompt_id: str, sid: str | None):
        self.fake, self.prompt_id, self.sid = fake, prompt_id, sid
        self.nodes: dict[str, list] = {}  # node -> [state, value, max]

    def _entry(self, nid: str) -> list:
        return self.nodes.setdefault(nid, ["pending", 0, 1])

    def _send(self) -> None:
        pid = self.prompt_id
        self.fake._send("progress_state", {"prompt_id": pid, "nodes": {
            n: {"value": v, "max": m, "state": s, "node_id": n, "prompt_id": pid, "display_node_id": n,
                "parent_node_id": None, "real_node_id": n}
            for n, (s, v, m) in self.nodes.items() if s != "pending"}}, self.sid)

    def start(self, nid: str) -> None:
        self._entry(nid)[:] = ["running", 0.0, 1.0]
        self._send()

    def update(self, nid: str, value, total) -> None:
        self._entry(nid)[:] = ["running", value, total]
        self._send()

    def finish(self, nid: str) -> None:
        e = self._entry(nid)
        e[0], e[1] = "finished", e[2]
        self._send()


class FakeComfyUI:
    """The fake server. ``FakeComfyUI(base_dir, **knobs)``; knobs are listed in DEFAULT_KNOBS."""

    def __init__(self, base_dir: str | os.PathLike, **knobs: Any):
        self.dirs = Dirs(os.fspath(base_dir))
        shutil.rmtree(self.dirs.temp, ignore_errors=True)  # ComfyUI empties temp/ at start
        os.makedirs(self.dirs.temp, exist_ok=True)
        self.nodes = make_nodes(self.dirs)
        self.counters = SaveCounters()
        self._knobs = dict(DEFAULT_KNOBS)
        self._sockets: dict[str, _Sock] = {}  # registered, by clientId (what events go to)
        self._open: set[_Sock] = set()        # every open socket, registered or replaced
        self._outq: asyncio.Queue | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._executor: asyncio.Task | None = None
        self._runner: web.AppRunner | None = None
        self.url: str | None = None
        self.host, self.port = "127.0.0.1", 0
        self._reset_stats()
        self._reset_state()
        self.app = self._make_app()
        self.set(**knobs)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "FakeComfyUI":
        self._outq, self._wake = asyncio.Queue(), asyncio.Event()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host, self.port = host, self._runner.addresses[0][1]
        self.url = f"http://{host}:{self.port}"
        self._tasks = [asyncio.create_task(self._publish_loop())]
        self._executor = asyncio.create_task(self._executor_loop())
        return self

    async def stop(self) -> None:
        for t in [*self._tasks, self._executor]:
            if t is not None:
                t.cancel()
        await asyncio.gather(*[t for t in [*self._tasks, self._executor] if t], return_exceptions=True)
        self._tasks, self._executor, self._outq = [], None, None
        for s in list(self._open):
            self._drop(s)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeComfyUI":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---------------------------------------------------------------------- knobs
    @property
    def knobs(self) -> dict[str, Any]:
        return dict(self._knobs)

    @property
    def stats(self) -> dict[str, Any]:
        return {**self._stats, "ws_connections_open": len(self._open), "queue_pending": len(self._pending),
                "queue_remaining": self._remaining(), "history_size": len(self.history)}

    def set(self, **knobs: Any) -> dict[str, Any]:
        """Merge knobs (as POST /fake/control does); ``drop_ws_now``/``restart`` run once."""
        unknown = set(knobs) - set(DEFAULT_KNOBS) - set(ACTIONS)
        if unknown:
            raise ValueError(f"unknown knob(s): {sorted(unknown)}")
        new = dict(self._knobs)
        for k, v in knobs.items():
            if k in ("node_delay", "history_lag"):
                v = float(v)
            elif k == "fail_next" or (k == "drop_ws_after_frames" and v is not None):
                v = int(v)
            elif k != "drop_ws_after_frames":
                v = bool(v)
            if v is not None and not isinstance(v, bool) and v < 0:
                raise ValueError(f"knob {k} must be >= 0")
            new[k] = v
        for k in DEFAULT_KNOBS:
            self._knobs[k] = new[k]
        if "drop_ws_after_frames" in knobs:
            for s in self._open:
                s.remaining = self._knobs["drop_ws_after_frames"]
        if knobs.get("drop_ws_now") or (knobs.get("down") and self._knobs["down"]):
            for s in list(self._open):
                self._drop(s)
        if knobs.get("restart"):
            self.restart()
        if "hang" in knobs and self._wake is not None:
            self._wake.set()
        return self.knobs

    def reset(self) -> None:
        """Knobs back to defaults, stats zeroed, queue/history/caches forgotten (sockets stay)."""
        self._knobs = dict(DEFAULT_KNOBS)
        for s in self._open:
            s.remaining = None
        self._reset_stats()
        self._forget()

    def restart(self) -> None:
        """What a restarted ComfyUI looks like: sockets dropped, queue, history and running prompt gone."""
        for s in list(self._open):
            self._drop(s)
        self._forget()

    def _forget(self) -> None:
        if self._executor is not None:
            self._executor.cancel()
            self._executor = asyncio.get_running_loop().create_task(self._executor_loop())
        if self._outq is not None:
            self._outq = asyncio.Queue()
            for t in self._tasks:
                t.cancel()
            self._tasks = [asyncio.get_running_loop().create_task(self._publish_loop())]
        self._reset_state()
        shutil.rmtree(self.dirs.temp, ignore_errors=True)
        os.makedirs(self.dirs.temp, exist_ok=True)

    def _reset_stats(self) -> None:
        self._stats = {"prompts_received": 0, "prompts_rejected": 0, "prompts_executed": 0,
                       "max_queue_length": 0, "ws_connections_opened": 0, "frames_sent": 0}

    def _reset_state(self) -> None:
        self.number = 0
        self._heap: list = []
        self._pending: dict[int, list] = {}  # seq -> [number, prompt_id, prompt, extra_data, outputs, sensitive]
        self._seq = itertools.count()
        self._running: list | None = None
        self.history: dict[str, dict] = {}
        self._cache: dict[str, tuple] = {}
        self._interrupt = False
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.counters.clear()

    # ------------------------------------------------------------------ websockets
    def _send(self, event: str, data: Any, sid: str | None = None) -> None:
        """server.send_sync: to the socket registered as ``sid``, or to all when sid is None."""
        if self._outq is not None:
            self._outq.put_nowait((json.dumps({"type": event, "data": data}), sid))

    def _queue_updated(self) -> None:
        self._send("status", {"status": self._queue_info()})

    async def _publish_loop(self) -> None:
        q = self._outq
        while True:
            msg, sid = await q.get()
            if sid is None:
                targets = list(self._sockets.values())
            else:
                s = self._sockets.get(sid)
                targets = [s] if s is not None else []
            for s in targets:
                await self._send_to(s, msg)

    async def _send_to(self, s: _Sock, msg: str) -> None:
        if s.dropped or s.ws.closed:
            return
        try:
            await s.ws.send_str(msg)
        except (ConnectionError, RuntimeError):
            return
        self._stats["frames_sent"] += 1
        if s.remaining is not None:
            s.remaining -= 1
            if s.remaining <= 0:
                self._drop(s)

    def _drop(self, s: _Sock) -> None:
        """Cut the connection under the socket (no close frame), as a crash or network drop would."""
        s.dropped = True
        if self._sockets.get(s.sid) is s:
            del self._sockets[s.sid]
        self._open.discard(s)
        transport = s.request.transport
        if transport is not None:
            transport.close()

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self._knobs["refuse_ws"]:
            return web.Response(status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self._sockets.pop(sid, None)  # replaced, left open, gets nothing more
        else:
            sid = uuid.uuid4().hex
        s = _Sock(ws, request, sid, self._knobs["drop_ws_after_frames"])
        self._sockets[sid] = s
        self._open.add(s)
        self._stats["ws_connections_opened"] += 1
        try:
            await self._send_to(s, json.dumps({"type": "status", "data": {"status": self._queue_info(), "sid": sid}}))
            if self.client_id == sid and self.last_node_id is not None:
                await self._send_to(s, json.dumps({"type": "executing", "data": {"node": self.last_node_id}}))
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                        if first and data.get("type") == "feature_flags":
                            await self._send_to(s, json.dumps({"type": "feature_flags", "data": FEATURES}))
                        first = False
                    except Exception:  # ComfyUI logs and ignores bad client messages
                        pass
        finally:
            self._open.discard(s)
            if not s.dropped:
                self._sockets.pop(sid, None)  # by id, as ComfyUI does (may unregister a newer socket)
        return ws

    # ------------------------------------------------------------------ queue
    def _remaining(self) -> int:
        return len(self._pending) + (1 if self._running is not None else 0)

    def _queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": self._remaining()}}

    def _put(self, item: list) -> None:
        seq = next(self._seq)
        self._pending[seq] = item
        heapq.heappush(self._heap, (item[0], seq))
        self._stats["max_queue_length"] = max(self._stats["max_queue_length"], len(self._pending))
        self._queue_updated()
        if self._wake is not None:
            self._wake.set()

    def _sorted_pending(self) -> list[list]:
        return [self._pending[seq] for _, seq in sorted((it[0], seq) for seq, it in self._pending.items())]

    def _wipe_queue(self) -> None:
        self._pending.clear()
        self._heap = []
        self._queue_updated()

    def _delete_pending(self, prompt_id: Any) -> None:
        for seq, item in self._pending.items():
            if item[1] == prompt_id:
                if len(self._pending) == 1:
                    self._wipe_queue()
                else:
                    del self._pending[seq]
                self._queue_updated()
                return

    async def _executor_loop(self) -> None:
        while True:
            while self._knobs["hang"] or not self._pending:
                self._wake.clear()
                await self._wake.wait()
            _, seq = heapq.heappop(self._heap)
            item = self._pending.pop(seq, None)
            if item is None:
                continue  # deleted while queued
            self._running = item
            self._queue_updated()
            try:
                await self._execute(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fake executor failed on %s", item[1])
                self._running = None
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ execution
    async def _execute(self, item: list) -> None:
        number, prompt_id, prompt, extra_data, outputs, _sensitive = item
        cid = extra_data.get("client_id")
        self.client_id, self._interrupt = cid, False
        messages: list = []

        def add_message(event: str, data: dict, broadcast: bool = False) -> None:
            data = {**data, "timestamp": _now_ms()}
            messages.append((event, data))
            if cid is not None or broadcast:
                self._send(event, data, cid)

        add_message("execution_start", {"prompt_id": prompt_id})
        sigs: dict[str, str] = {}
        if self._knobs["cache"]:
            sigs = node_signatures(prompt, self.nodes)
            used = set(sigs.values())
            self._cache = {k: v for k, v in self._cache.items() if k in used}
        else:
            self._cache = {}

        def cached(nid: str):
            return self._cache.get(sigs[nid]) if sigs else None

        add_message("execution_cached", {"nodes": [n for n in prompt if cached(n) is not None],
                                         "prompt_id": prompt_id})
        progress = _Progress(self, prompt_id, cid)
        ui_outputs: dict[str, dict] = {}
        results: dict[str, tuple] = {}
        executed: list[str] = []
        fail = self._knobs["fail_next"] > 0
        if fail:
            self._knobs["fail_next"] -= 1
        elist = ExecutionList(prompt, self.nodes, lambda n: cached(n) is not None)
        for o in outputs:
            elist.add_node(o)
        success = True
        while not elist.empty():
            nid = elist.next_node()
            hit = cached(nid)
            if hit is not None:
                if cid is not None:
                    self._send("executed", {"node": nid, "display_node": nid,
                                            "output": (hit[0] or {}).get("output"), "prompt_id": prompt_id}, cid)
                    if hit[0] is not None:
                        ui_outputs[nid] = hit[0]
                progress.finish(nid)
                results[nid] = hit[1]
                elist.complete(nid)
                continue
            error, ui = await self._run_node(nid, prompt_id, prompt, extra_data, cid, progress, results, fail)
            fail = False
            if error is not None:
                success = False
                base = {"prompt_id": prompt_id, "node_id": nid, "node_type": prompt[nid]["class_type"],
                        "executed": list(executed)}
                if error == "interrupted":
                    add_message("execution_interrupted", base, broadcast=True)
                else:
                    add_message("execution_error", {**base, **error, "current_outputs": list(prompt)})
                break
            if ui:
                ui_outputs[nid] = {"meta": {"node_id": nid, "display_node": nid, "parent_node": None,
                                            "real_node_id": nid}, "output": ui}
                if cid is not None:
                    self._send("executed", {"node": nid, "display_node": nid, "output": ui,
                                            "prompt_id": prompt_id}, cid)
            if sigs:
                self._cache[sigs[nid]] = (ui_outputs.get(nid), results[nid])
            progress.finish(nid)
            executed.append(nid)
            elist.complete(nid)
        else:
            add_message("execution_success", {"prompt_id": prompt_id})
        self.last_node_id = None
        if self._knobs["history_lag"] > 0:
            await asyncio.sleep(self._knobs["history_lag"])
        # PromptQueue.task_done: history entry, then status, then executing None
        self._running = None
        if len(self.history) > MAX_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, prompt, extra_data, outputs], "outputs": {
                n: u["output"] for n, u in ui_outputs.items()},
            "status": {"status_str": "success" if success else "error", "completed": success,
                       "messages": messages},
            "meta": {n: u["meta"] for n, u in ui_outputs.items()}}
        self._stats["prompts_executed"] += 1
        self._queue_updated()
        if cid is not None:
            self._send("executing", {"node": None, "prompt_id": prompt_id}, cid)

    async def _run_node(self, nid, prompt_id, prompt, extra_data, cid, progress, results, fail):
        """One node as execution.execute() runs it: (None | "interrupted" | error details, ui)."""
        node = self.nodes[prompt[nid]["class_type"]]
        progress.start(nid)
        data = get_input_data(node, prompt[nid]["inputs"], results, prompt, extra_data)
        if cid is not None:
            self.last_node_id = nid
            self._send("executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id}, cid)

        async def on_progress(value, total):
            self._check_interrupt()
            progress.update(nid, value, total)
            self._send("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": nid}, cid)

        try:
            self._check_interrupt()
            if fail:
                raise RuntimeError("FakeComfyUI fail_next: injected failure")
            if self._knobs["node_delay"] > 0:
                await asyncio.sleep(self._knobs["node_delay"])
            ctx = NodeContext(self.dirs, self.counters, on_progress)
            out, ui = await node.arun(ctx, **{k: v[0] for k, v in data.items()})
        except InterruptProcessingException:
            return "interrupted", None
        except Exception as ex:
            tips = OOM_TIPS if isinstance(ex, OutOfMemoryError) else ""
            return {"exception_message": "{}\n{}".format(ex, tips), "exception_type": full_type_name(type(ex)),
                    "traceback": traceback.format_tb(ex.__traceback__),
                    "current_inputs": {k: [format_value(x) for x in v] for k, v in data.items()}}, None
        results[nid] = out
        return None, ui

    def _check_interrupt(self) -> None:
        if self._interrupt:
            self._interrupt = False
            raise InterruptProcessingException()

    # ------------------------------------------------------------------ HTTP
    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD_SIZE, middlewares=[self._middleware])
        routes = [("GET", "/ws", self._ws), ("POST", "/prompt", self._post_prompt),
                  ("GET", "/prompt", self._get_prompt), ("GET", "/queue", self._get_queue),
                  ("POST", "/queue", self._post_queue), ("POST", "/interrupt", self._post_interrupt),
                  ("GET", "/history", self._get_history), ("GET", "/history/{prompt_id}", self._get_history_id),
                  ("POST", "/history", self._post_history), ("GET", "/view", self._view),
                  ("POST", "/upload/image", self._upload_image), ("GET", "/system_stats", self._system_stats),
                  ("GET", "/features", self._features), ("GET", "/object_info", self._object_info),
                  ("GET", "/object_info/{node_class}", self._object_info_node),
                  ("GET", "/embeddings", self._embeddings), ("GET", "/models", self._models),
                  ("GET", "/models/{folder}", self._models_folder)]
        for method, path, handler in routes:
            app.router.add_route(method, "/api" + path, handler)
            app.router.add_route(method, path, handler)
        app.router.add_get("/fake/control", self._fake_control_get)
        app.router.add_post("/fake/control", self._fake_control_post)
        app.router.add_post("/fake/reset", self._fake_reset)
        app.router.add_get("/fake/stats", self._fake_stats)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        if self._knobs["down"] and not request.path.startswith("/fake/"):
            return web.Response(status=503)
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.Response(status=404)  # ComfyUI's static catch-all answers an empty 404
        except web.HTTPMethodNotAllowed:
            if request.method in ("GET", "HEAD"):  # e.g. GET /interrupt: the static route again
                return web.Response(status=404)
            raise
        except web.HTTPException:
            raise
        except Exception:  # aiohttp's own answer to an unhandled exception
            log.debug("handler error on %s %s", request.method, request.path, exc_info=True)
            return web.Response(status=500, text=TEXT_500)

    async def _post_prompt(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if "number" in json_data:
            number = float(json_data["number"])
        else:
            number = self.number
            if "front" in json_data and json_data["front"]:
                number = -number
            self.number += 1
        if "prompt" not in json_data:
            self._stats["prompts_rejected"] += 1
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided",
                                                "details": "No prompt provided", "extra_info": {}},
                                      "node_errors": {}}, status=400)
        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        valid = validate_prompt(self.nodes, prompt, json_data.get("partial_execution_targets"))
        extra_data = json_data.get("extra_data", {})
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid[0]:
            self._stats["prompts_rejected"] += 1
            return web.json_response({"error": valid[1], "node_errors": valid[3]}, status=400)
        sensitive = {k: extra_data.pop(k) for k in ("auth_token_comfy_org", "api_key_comfy_org") if k in extra_data}
        extra_data["create_time"] = _now_ms()
        self._stats["prompts_received"] += 1
        self._put([number, prompt_id, prompt, extra_data, valid[2], sensitive])
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": valid[3]})

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue_info())

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [self._running[:5]] if self._running is not None else []
        return web.json_response({"queue_running": running,
                                  "queue_pending": [i[:5] for i in self._sorted_pending()]})

    async def _post_queue(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if "clear" in json_data and json_data["clear"]:
            self._wipe_queue()
        if "delete" in json_data:
            for pid in json_data["delete"]:
                self._delete_pending(pid)
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        try:
            json_data = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        prompt_id = json_data.get("prompt_id")
        if not prompt_id or (self._running is not None and self._running[1] == prompt_id):
            self._interrupt = True
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.Response:
        q = request.rel_url.query
        max_items = int(q["max_items"]) if "max_items" in q else None
        offset = int(q["offset"]) if "offset" in q else -1
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict = {}
        for i, k in enumerate(self.history):
            if i >= offset:
                out[k] = self.history[k]
                if max_items is not None and len(out) >= max_items:
                    break
        return web.json_response(out)

    async def _get_history_id(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if "clear" in json_data and json_data["clear"]:
            self.history = {}
        if "delete" in json_data:
            for pid in json_data["delete"]:
                self.history.pop(pid, None)
        return web.Response(status=200)

    async def _view(self, request: web.Request) -> web.StreamResponse:
        q = request.rel_url.query
        if "filename" not in q:
            return web.Response(status=404)
        filename, output_dir = self.dirs.annotated(q["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if output_dir is None:
            output_dir = self.dirs.by_type(q.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in q:
            full = os.path.join(output_dir, q["subfolder"])
            if os.path.commonpath((os.path.abspath(full), output_dir)) != output_dir:
                return web.Response(status=403)
            output_dir = full
        filename = os.path.basename(filename)
        file = os.path.join(output_dir, filename)
        if not os.path.isfile(file):
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        channel = q.get("channel", "rgba")
        if "preview" in q or channel in ("rgb", "a"):
            return await asyncio.to_thread(self._converted_view, file, q, channel, disposition)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript",
                            "text/css"}:
            content_type = "application/octet-stream"
        return web.FileResponse(file, headers={**disposition, "Content-Type": content_type})

    @staticmethod
    def _converted_view(file: str, q, channel: str, disposition: dict) -> web.Response:
        buf = BytesIO()
        with Image.open(file) as img:
            if "preview" in q:
                info = q["preview"].split(";")
                fmt = info[0] if info[0] in ("webp", "jpeg") and "a" not in q.get("channel", "") else "webp"
                if fmt == "jpeg" or q.get("channel", "") == "rgb":
                    img = img.convert("RGB")
                img.save(buf, format=fmt, quality=int(info[-1]) if info[-1].isdigit() else 90)
                return web.Response(body=buf.getvalue(), content_type=f"image/{fmt}", headers=disposition)
            if channel == "rgb":
                img.convert("RGB").save(buf, format="PNG")
            else:
                alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
                out = Image.new("RGBA", img.size)
                out.putalpha(alpha)
                out.save(buf, format="PNG")
        return web.Response(body=buf.getvalue(), content_type="image/png", headers=disposition)

    async def _upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image, overwrite, upload_type = post.get("image"), post.get("overwrite"), post.get("type")
        upload_type = upload_type or "input"
        upload_dir = self.dirs.by_type(upload_type)
        if upload_dir is None:
            raise UnboundLocalError("cannot access local variable 'type_dir'")  # ComfyUI answers 500
        if not (image and image.file):  # a plain form field has no .file: 500, as in ComfyUI
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((upload_dir, filepath)) != upload_dir:
            return web.Response(status=400)
        body = image.file.read()
        name = await asyncio.to_thread(self._store_upload, folder, filename, filepath, body,
                                       overwrite in ("true", "1"))
        return web.json_response({"name": name, "subfolder": subfolder, "type": upload_type})

    @staticmethod
    def _store_upload(folder: str, filename: str, filepath: str, body: bytes, overwrite: bool) -> str:
        os.makedirs(folder, exist_ok=True)
        stem, ext = os.path.splitext(filename)
        i = 1
        while not overwrite and os.path.exists(filepath):
            with open(filepath, "rb") as f:
                if f.read() == body:  # same content: keep the existing file and its name
                    return filename
            filename = f"{stem} ({i}){ext}"
            filepath = os.path.join(folder, filename)
            i += 1
        with open(filepath, "wb") as f:
            f.write(body)
        return filename

    async def _system_stats(self, request: web.Request) -> web.Response:
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            total, free = os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
        except (ValueError, OSError, AttributeError):
            total = free = 0
        return web.json_response({
            "system": {"os": os.name, "ram_total": total, "ram_free": free, "comfyui_version": "0.3.75",
                       "required_frontend_version": "1.32.9", "installed_templates_version": "0.7.25",
                       "required_templates_version": "0.7.25", "python_version": sys.version,
                       "pytorch_version": "2.13.0+cpu", "embedded_python": False, "argv": sys.argv},
            "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": total, "vram_free": free,
                         "torch_vram_total": total, "torch_vram_free": free}]})

    async def _features(self, request: web.Request) -> web.Response:
        return web.json_response(FEATURES)

    async def _object_info(self, request: web.Request) -> web.Response:
        return web.json_response({name: n.object_info() for name, n in self.nodes.items()})

    async def _object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: self.nodes[name].object_info()} if name in self.nodes else {})

    async def _embeddings(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(MODEL_FOLDERS)

    async def _models_folder(self, request: web.Request) -> web.Response:
        if request.match_info["folder"] not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response([])

    # ------------------------------------------------------------- /fake/ control
    async def _fake_control_get(self, request: web.Request) -> web.Response:
        return web.json_response(self.knobs)

    async def _fake_control_post(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            return web.json_response(self.set(**body))
        except (ValueError, TypeError) as ex:
            return web.json_response({"error": str(ex)}, status=400)

    async def _fake_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.knobs)

    async def _fake_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)


# ---------------------------------------------------------------------- CLI
async def _serve(args: argparse.Namespace) -> None:
    knobs = json.loads(args.knobs) if args.knobs else {}
    fake = FakeComfyUI(args.base_dir, **knobs)
    await fake.start(args.host, args.port)
    print(f"ready {fake.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m comfy_gateway.testing.fake_comfyui",
                                description="Protocol-faithful fake ComfyUI 0.3.75 server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188, help="0 picks a free port (printed on the ready line)")
    p.add_argument("--base-dir", required=True, help="holds input/, output/ and temp/")
    p.add_argument("--knobs", default="", help='initial knobs as JSON, e.g. \'{"node_delay": 0.1}\'')
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
