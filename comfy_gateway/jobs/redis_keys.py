"""Every Redis key and channel name of one deployment, made from its prefix (REDIS_PREFIX), in
one place: the store, its parts and the preview relay ask here. What each key holds is
documented in redis_lua.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str  # REDIS_PREFIX as configured

    @property
    def base(self) -> str:
        """What every key and channel name starts with."""
        return self.prefix

    @property
    def pattern(self) -> str:
        """A SCAN MATCH pattern for every key of this deployment (and no other's)."""
        return _glob_escape(self.base) + "*"

    # -- one job ------------------------------------------------------------------------------
    def job(self, job_id: str) -> str:
        return f"{self.base}job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.base}ev:{job_id}"

    def deliveries(self, job_id: str) -> str:
        return f"{self.base}dlv:{job_id}"

    def preview(self, job_id: str) -> str:
        return f"{self.base}preview:{job_id}"

    # -- stage queues -------------------------------------------------------------------------
    def stream(self, stage: str) -> str:
        return f"{self.base}q:{stage}"

    def entries(self, stage: str) -> str:
        return f"{self.base}qid:{stage}"

    def waiting(self, stage: str) -> str:
        return f"{self.base}wait:{stage}"

    @property
    def qseq(self) -> str:
        return self.base + "qseq"

    # -- indexes and tallies ------------------------------------------------------------------
    @property
    def ended(self) -> str:
        return self.base + "ended"

    @property
    def created(self) -> str:
        return self.base + "created"

    def created_by(self, owner: str) -> str:
        return f"{self.base}created:{owner}"

    @property
    def counts(self) -> str:
        return self.base + "counts"

    @property
    def active(self) -> str:
        return self.base + "active"

    @property
    def usage(self) -> str:
        return self.base + "usage"

    def schedule(self, name: str) -> str:
        return f"{self.base}sched:{name}"

    @property
    def deadlines(self) -> str:
        """The schedule a job joins when created and leaves when it ends (CREATE, UPDATE)."""
        return self.schedule("deadlines")

    # -- channels -----------------------------------------------------------------------------
    @property
    def events_channel(self) -> str:
        return self.base + "events"

    @property
    def queues_channel(self) -> str:
        return self.base + "queues"

    @property
    def previews_channel(self) -> str:
        return self.base + "previews"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
