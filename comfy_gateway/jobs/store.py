"""The one protocol every job store implements: memory.py (one process) and redis.py (shared)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .events import JobEvent
from .facts import Schedule
from .following import JobEvents, Wake
from .history import HistoryPage, HistoryQuery
from .model import Job, JobStatus, Progress, WebhookState
from .usage import UsageRecord

STAGES = ("preprocess", "generation", "postprocess")

# Told of every status change a store applies: (the job after the change, its previous status,
# None when the job was just created). Metrics and logs hang on this, so every way a job can
# end (a stage, a cancel, a deadline, a shutdown) is counted once, whoever caused it.
TransitionListener = Callable[[Job, JobStatus | None], None]


def notify_listeners(listeners: list[TransitionListener], job: Job, previous: JobStatus | None) -> None:
    """Tell every listener of a change; one that raises is logged and skipped, since an
    observer must never break (or undo) a job's change."""
    for listener in listeners:
        try:
            listener(job, previous)
        except Exception:  # noqa: BLE001
            logging.getLogger(__name__).exception("transition listener failed for job %s", job.id)


@dataclass(frozen=True, slots=True)
class Passing:
    """A state a job passes through on its way to the change that names it (advance): recorded
    as its own change, with its event and marks, just before that one; the Redis store writes
    both in one step. E.g. a preprocessing that had nothing slow to do."""
    status: JobStatus
    message: str
    marks: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Claim:
    """What the taker of a prepared job's stage writes first, written ahead with the create when
    the store can hand the job to one of this process's idle takers in that step (see
    pipeline/claims.py): one more state, `step`, with `fields` set there. Dropped when it cannot:
    the job is then created as if no claim had been asked for."""
    step: Passing
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A job prepared as it arrived, its preparation having nothing slow to do (see
    pipeline/preprocess.py prepare_now): created past the states in `steps` (each recorded with
    its event and marks, as if a stage had moved it there), with `fields` set at the last one,
    straight into `stage`'s queue, in one step; and past `claim` too when it can be kept."""
    steps: tuple[Passing, ...]
    fields: dict[str, Any]
    stage: str
    claim: Claim | None = None

    def moves(self) -> list[tuple[Passing, dict[str, Any]]]:
        """Each state the job is created past, with the fields set there."""
        *before, last = self.steps
        moves = [(step, {}) for step in before] + [(last, self.fields)]
        return moves + [(self.claim.step, self.claim.fields)] if self.claim is not None else moves


class QueueFull(Exception):
    def __init__(self, waiting: int, limit: int):
        super().__init__(f"{waiting} jobs are waiting, the limit is {limit}")
        self.waiting, self.limit = waiting, limit


class KeyQueueFull(QueueFull):
    """One API key has max_queued jobs waiting or running; other keys are still served."""

    def __init__(self, key: str, active: int, limit: int):
        Exception.__init__(self, f"key {key!r} has {active} jobs waiting or running, its max_queued is {limit}")
        self.key, self.waiting, self.limit = key, active, limit


class JobStore(Protocol):
    shared: bool  # True when other processes use the same store (and can take jobs over)

    async def start(self) -> None:
        """Connect and get ready (the Redis store subscribes to its channels here)."""

    async def close(self) -> None: ...

    async def create(self, job: Job, *, max_waiting: int | None = None, max_owned: int | None = None,
                     prepared: Prepared | None = None) -> Job:
        """Store a new job and put it in the preprocess queue, in one step; a job with a
        deadline joins the "deadlines" schedule in that step too, and leaves it when it ends.
        `prepared`: the job is created past its preparation, into a later stage's queue (the
        same step); its `claim` is kept only if the job goes to an idle taker of that stage in
        this process in that step (the job returned then shows it). Raises KeyError if the id
        exists, QueueFull past max_waiting, KeyQueueFull when the job's owner already has
        max_owned jobs that have not ended."""

    async def get(self, job_id: str) -> Job | None: ...

    async def events_and_job(self, job_id: str, after: int) -> tuple[list[JobEvent], Job | None]:
        """The job's events past `after`, then the job, read in one look (one round trip in
        Redis): the job is at least as new as every event. ([], None) when it is gone."""

    async def status(self, job_id: str) -> JobStatus | None:
        """The job's status alone, without reading or decoding its record; None when gone."""

    async def update(
        self, job_id: str, *, status: JobStatus | None = None, message: str | None = None,
        marks: dict[str, float] | None = None, **fields: Any,
    ) -> Job:
        """Apply a change and record its event atomically. Changes to a job that already
        ended are dropped (terminal states are final) and the job is returned unchanged."""

    async def set_progress(self, job_id: str, progress: Progress) -> None: ...

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        """Record a webhook delivery attempt. Allowed on an ended job (webhooks are sent after
        the end); records no event, since the job's stream has already closed."""

    async def events_after(self, job_id: str, seq: int) -> list[JobEvent]: ...

    def events(self, job_id: str, after: int = 0, *, wake: Wake = "all", queue_changes: bool = False,
               idle: float = 30.0, look_first: bool = True) -> JobEvents:
        """Follow the job: its events past `after` as they come, and Ticks (following.py).
        Registered at once: make it before reading the job, close it when leaving early."""

    async def advance(
        self, job_id: str, stage: str, *, status: JobStatus, message: str | None = None,
        marks: dict[str, float] | None = None, passing: Passing | None = None, **fields: Any,
    ) -> Job:
        """update(), then, unless the job has ended, enqueue(stage, job_id): a stage's last
        change and its hand-over to the next stage (the Redis store does both in one step).
        `passing`: a state the job goes through first (unless it is in it already), recorded
        just before this change, as update() would have."""

    async def enqueue(self, stage: str, job_id: str) -> None:
        """Put the job in the stage's queue behind every waiting job of its priority or higher
        (Job.priority; first come first served within one); a no-op while it is already there
        (waiting or taken), so a stage handing a job on can safely repeat itself."""

    async def dequeue(self, stage: str) -> str:
        """Block until a job id is waiting in the stage, and take it. The taker holds it until
        ack(); a store shared by processes gives it to another taker if this one dies first."""

    async def renew(self, stage: str, job_id: str) -> bool:
        """Keep holding a taken job (a worker busy longer than the lease calls this
        periodically). False when the job is no longer ours: another process took it over,
        and this one must stop working on it."""

    async def ack(self, stage: str, job_id: str) -> None:
        """The stage is done with the job (it moved on, or ended). A no-op for a job that
        another process took over meanwhile."""

    async def remove_from_queue(self, stage: str, job_id: str) -> bool: ...

    async def position(self, stage: str, job_id: str) -> int | None:
        """0-based place in the stage queue, None when not waiting there."""

    async def queue_sizes(self, priority: int = 0) -> dict[str, int]:
        """Jobs waiting in each stage that a job of `priority` arriving now would wait behind
        (those of that priority or higher; every waiting job for 0)."""

    async def hand_back_all(self) -> int:
        """A shared store: give every job this process holds to the other processes now (it is
        shutting down). Returns how many; the memory store has nobody to give them to (0)."""

    async def recent(self, limit: int) -> list[Job]:
        """The `limit` most recently created jobs still kept, newest first."""

    async def history(self, query: HistoryQuery) -> HistoryPage:
        """Jobs still kept matching the query, newest first (created_at, then id), from the
        query's cursor on; at most query.scan jobs are looked at per call."""

    async def usage(self, since: float | None, until: float | None) -> list[UsageRecord]:
        """The usage records of jobs that ended between since and until (epoch seconds),
        kept USAGE_TTL seconds whatever RESULT_TTL is."""

    async def status_counts(self) -> dict[str, int]:
        """How many jobs the store keeps now in each status (every status present, 0 or more)."""

    def add_listener(self, listener: TransitionListener) -> None:
        """Call listener(job, previous) after each status change (and creation) this process
        applies, exactly once per change, in the task that applied it. A listener that raises
        is logged and ignored: it must never undo or block the change."""

    async def unfinished(self) -> list[str]:
        """Ids of the jobs that have not ended (used when a lone process shuts down)."""

    async def expire(self, older_than: float) -> int:
        """Forget ended jobs that finished before the given epoch time."""

    # -- job facts (facts.py): what any live process enforces ---------------------------------
    def schedule(self, name: str) -> Schedule:
        """A named schedule of due times ("deadlines", "outbox") in the store. The store itself
        keeps "deadlines" in step with its jobs (see create)."""

    async def count_delivery(self, stage: str, job_id: str) -> int:
        """Count one more taking of the job by the stage (every process sees the same count)."""
