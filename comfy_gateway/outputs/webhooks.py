"""Webhooks: one signed POST of the final result when a job ends, retried with backoff.

Signed by the Standard Webhooks scheme (https://www.standardwebhooks.com/): headers
`webhook-id` (the same on every retry, so receivers can de-duplicate), `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, computed by the
`standardwebhooks` package (pure Python, no dependencies) so it matches what receivers'
libraries check.

Deliveries run as their own tasks, never in a stage worker: a slow or dead receiver holds one
delivery slot for at most WEBHOOK_TIMEOUT per attempt and delays no job. What is owed is kept
in the store's outbox (see WebhookSender), so another process delivers what a dead one owed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import aiohttp
import orjson
from standardwebhooks import Webhook

from .. import __version__, metrics
from ..jobs.model import Job
from ..jobs.store import JobStore
from ..net.guard import UrlRefused, guarded_session
from ..net.precheck import precheck_url
from ..pipeline.sweeper import Sweeper
from ..settings import Settings, webhook_key

log = logging.getLogger(__name__)

MAX_DELAY = 300.0  # the longest pause between two attempts, seconds
OUTBOX_MARGIN = 5.0  # seconds past WEBHOOK_TIMEOUT that a claimed delivery stays this process's
OWED_GRACE = 60.0  # seconds past a job's deadline when a webhook owed since submission is looked at


def message_id(job_id: str) -> str:
    """The webhook-id of a job's webhook: the same on every retry, from whichever process, so
    receivers can de-duplicate."""
    return "msg_" + job_id.replace("-", "")


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
    """Owed webhooks are facts in the store (its "outbox" schedule: job id -> when to try next),
    so whichever process is alive delivers them: one that owes a webhook and dies leaves it to
    the next sweep of another. The attempt count lives in the job's webhook record, so retries
    go on where the dead process left off. A delivery slot is held only while a request is in
    flight, never through the pause before a retry."""

    def __init__(self, settings: Settings, store: JobStore, render: Callable[[Job], dict[str, Any]]):
        self._settings = settings
        self._store = store
        self._render = render
        secret = settings.webhook_secret.get_secret_value()
        self._signer = Webhook(webhook_key(secret)) if secret else None
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivering: set[str] = set()  # job ids with an attempt under way in this process
        self._session: aiohttp.ClientSession | None = None
        # A claimed entry is ours while one attempt can last; past that, another process retries.
        self.outbox = Sweeper("webhooks", store.schedule("outbox"), self._due,
                              interval=settings.sweep_interval, hold=settings.webhook_timeout + OUTBOX_MARGIN)
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
        self.outbox.start()

    async def stop(self) -> None:
        await self.outbox.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session:
            await self._session.close()

    async def owe(self, job_id: str, latest: float) -> None:
        """Record at submission that the job's webhook is owed by `latest` at the latest: if every
        process that could have sent it at the job's end died first, a sweep then finds it."""
        await self.outbox.add(job_id, latest + OWED_GRACE, only_new=True)

    # -- the store's terminal listener ------------------------------------------------------
    def on_terminal(self, job: Job) -> None:
        if job.webhook is None or self.target(job.request) is None or self._signer is None:
            return
        self._spawn(self.outbox.add(job.id, time.time()), f"webhook-due:{job.id}")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the outbox -------------------------------------------------------------------------
    async def _due(self, job_id: str) -> bool:
        """A claimed outbox entry: start its next attempt; True when nothing is owed any more."""
        job = await self._store.get(job_id)
        if job is None or job.webhook is None or job.webhook.state in ("delivered", "failed"):
            return True
        if not job.status.terminal:  # the safety net came due before the end: look again later
            await self.outbox.schedule.put(job_id, time.time() + OWED_GRACE)
            return False
        if self._signer is None or job_id in self._delivering:
            return False
        self._delivering.add(job_id)
        self._spawn(self._deliver(job), f"webhook:{job_id}")
        return False

    async def _deliver(self, job: Job) -> None:
        """One attempt, then the next step in the outbox: done (dropped) or a retry later."""
        try:
            await self._deliver_once(job)
        except Exception:  # noqa: BLE001 - stays claimed: another sweep retries after the hold
            log.exception("webhook of job %s: delivery attempt failed", job.id)
        finally:
            self._delivering.discard(job.id)

    async def _deliver_once(self, job: Job) -> None:
        s, schedule = self._settings, self.outbox.schedule
        target = self.target(job.request)
        assert target is not None and job.webhook is not None
        url, extra = target
        state = job.webhook.model_copy()
        if self.before_final is not None:
            await self.before_final(job.id)  # its event webhooks end first (progress_webhooks.py)
        try:
            await precheck_url(url, s.network_policy, what="webhook.url")
        except UrlRefused as exc:
            state.state, state.last_error = "failed", str(exc)
            await self._store.set_webhook(job.id, state)
            await schedule.drop(job.id)
            log.info("webhook of job %s refused: %s", job.id, exc)
            return
        body = self._render(job)
        body.pop("webhook", None)  # the delivery's own state is not part of what it delivers
        body["extra_params"] = extra  # under its own key: can never overwrite id or status
        async with self._slots:  # held for the request only
            status, error, retry_after = await self.attempt(url, message_id(job.id), orjson.dumps(body))
        state.attempts += 1
        state.last_status, state.last_error = status, error
        if status is not None and 200 <= status < 300:
            state.state = "delivered"
            await self._store.set_webhook(job.id, state)
            await schedule.drop(job.id)
            log.info("webhook of job %s delivered (attempt %d, HTTP %d)", job.id, state.attempts, status)
            return
        if (status is None or should_retry(status)) and state.attempts <= s.webhook_retries:
            state.state = "retrying"
            await self._store.set_webhook(job.id, state)
            await schedule.put(job.id, time.time() + backoff(state.attempts, s.webhook_backoff, retry_after))
            self.outbox.kick()
            return
        state.state = "failed"
        await self._store.set_webhook(job.id, state)
        await schedule.drop(job.id)
        metrics.webhook_failed()
        log.warning("webhook of job %s failed after %d attempt(s): %s", job.id, state.attempts, state.last_error)

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
