"""Webhooks: one signed POST of the final result when a job ends, retried with backoff.

Signed by the Standard Webhooks scheme (https://www.standardwebhooks.com/): headers
`webhook-id` (the same on every retry, so receivers can de-duplicate), `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, computed by the
`standardwebhooks` package (pure Python, no dependencies) so it matches what receivers'
libraries check.

Deliveries run as their own tasks, never in a stage worker: a slow or dead receiver holds one
delivery slot for at most WEBHOOK_TIMEOUT per attempt and delays no job.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import aiohttp
import orjson
from standardwebhooks import Webhook

from .. import __version__
from ..jobs.model import Job, WebhookState
from ..jobs.store import JobStore
from ..net.guard import UrlRefused, guarded_session
from ..net.precheck import precheck_url
from ..settings import Settings, webhook_key

log = logging.getLogger(__name__)

MAX_CONCURRENT = 100  # deliveries in flight at once; more wait for a slot
MAX_DELAY = 300.0  # the longest pause between two attempts, seconds


def should_retry(status: int) -> bool:
    """5xx, 408 and 429 may pass later; any other answer will not change by asking again."""
    return status >= 500 or status in (408, 429)


def backoff(attempt: int, base: float, retry_after: str | None = None) -> float:
    """Delay before attempt `attempt + 1`: base * 2^(attempt-1), half of it random (jitter, so
    that receivers coming back are not hit by every sender at once), at least Retry-After."""
    delay = min(MAX_DELAY, base * 2 ** (attempt - 1))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after and retry_after.strip().isdigit():
        delay = max(delay, min(float(retry_after), MAX_DELAY))
    return delay


class WebhookSender:
    def __init__(self, settings: Settings, store: JobStore, render: Callable[[Job], dict[str, Any]]):
        self._settings = settings
        self._store = store
        self._render = render
        secret = settings.webhook_secret.get_secret_value()
        self._signer = Webhook(webhook_key(secret)) if secret else None
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        # Awaited before a job's final webhook: its event webhooks end first (progress_webhooks.py).
        self.before_final: Callable[[str], Awaitable[None]] | None = None
        self.network_policy = settings.network_policy
        self.timeout = settings.webhook_timeout

    @property
    def can_sign(self) -> bool:
        return self._signer is not None

    def target(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The receiver of a job's webhook (its own, else WEBHOOK_URL) and its extra params."""
        hook = request.get("webhook")
        if hook:
            return str(hook["url"]), dict(hook.get("extra_params") or {})
        if self._settings.webhook_url:
            return self._settings.webhook_url, {}
        return None

    async def start(self) -> None:
        self._session = guarded_session(self._settings.network_policy)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session:
            await self._session.close()

    # -- the store's terminal listener ------------------------------------------------------
    def on_terminal(self, job: Job) -> None:
        target = self.target(job.request)
        if target is None or self._signer is None:
            return
        url, extra = target
        body = self._render(job)
        body.pop("webhook", None)  # the delivery's own state is not part of what it delivers
        body["extra_params"] = extra  # under its own key: can never overwrite id or status
        task = asyncio.get_running_loop().create_task(
            self._deliver(job.id, url, orjson.dumps(body)), name=f"webhook:{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- delivery ---------------------------------------------------------------------------
    async def _deliver(self, job_id: str, url: str, body: bytes) -> None:
        s = self._settings
        state = WebhookState(state="pending")
        msg_id = f"msg_{uuid.uuid4().hex}"
        if self.before_final is not None:
            await self.before_final(job_id)
        try:
            await precheck_url(url, s.network_policy, what="webhook.url")
        except UrlRefused as exc:
            state.state, state.last_error = "failed", str(exc)
            await self._store.set_webhook(job_id, state)
            log.info("webhook of job %s refused: %s", job_id, exc)
            return
        async with self._slots:
            for attempt in range(1, s.webhook_retries + 2):
                status, error, retry_after = await self.attempt(url, msg_id, body)
                state.attempts, state.last_status, state.last_error = attempt, status, error
                if status is not None and 200 <= status < 300:
                    state.state = "delivered"
                    await self._store.set_webhook(job_id, state)
                    log.info("webhook of job %s delivered (attempt %d, HTTP %d)", job_id, attempt, status)
                    return
                retry = status is None or should_retry(status)
                if not retry or attempt > s.webhook_retries:
                    break
                state.state = "retrying"
                await self._store.set_webhook(job_id, state)
                await asyncio.sleep(backoff(attempt, s.webhook_backoff, retry_after))
        state.state = "failed"
        await self._store.set_webhook(job_id, state)
        log.warning("webhook of job %s failed after %d attempt(s): %s", job_id, state.attempts, state.last_error)

    async def attempt(self, url: str, msg_id: str, body: bytes) -> tuple[int | None, str | None, str | None]:
        """One POST: (status, error, Retry-After). The timestamp is signed afresh each time."""
        assert self._session is not None and self._signer is not None
        now = datetime.now(timezone.utc)
        headers = {
            "content-type": "application/json",
            "user-agent": f"comfy-gateway/{__version__}",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(msg_id, now, body.decode()),
        }
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout)
        try:
            # Redirects are not followed: a POST turned into a GET would "deliver" nothing.
            async with self._session.post(url, data=body, headers=headers, timeout=timeout,
                                          allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return resp.status, None, None
                snippet = (await resp.content.read(200)).decode(errors="replace").strip()
                why = f"HTTP {resp.status}" + (f": {snippet}" if snippet else "")
                if 300 <= resp.status < 400:
                    why += " (redirects are not followed)"
                return resp.status, why, resp.headers.get("Retry-After")
        except asyncio.TimeoutError:
            return None, f"no answer within {self._settings.webhook_timeout:g}s (WEBHOOK_TIMEOUT)", None
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}", None
