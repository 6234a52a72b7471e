"""What GET /jobs asks a store for: filters, a cursor, and one page of jobs newest first.

Jobs are ordered by (created_at, id), newest first; a cursor is the place of the last job
looked at, and the next page starts strictly after it, so paging neither repeats nor skips a
job while new ones arrive (they come before the first page).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from .model import Job


@dataclass(frozen=True)
class HistoryQuery:
    owner: str | None = None  # only this key's jobs; None: every key's
    statuses: frozenset[str] | None = None
    since: float | None = None  # created at or after (epoch seconds)
    until: float | None = None  # created before
    after: tuple[float, str] | None = None  # the cursor: only jobs older than this place
    limit: int = 20
    scan: int = 5000  # jobs looked at, at most, for one page (a rare status among many)

    def admits(self, job: Job) -> bool:
        return ((self.owner is None or job.owner == self.owner)
                and (self.statuses is None or job.status.value in self.statuses)
                and self.in_range(job.created_at, job.id))

    def in_range(self, created_at: float, job_id: str) -> bool:
        if self.since is not None and created_at < self.since:
            return False
        if self.until is not None and created_at >= self.until:
            return False
        return self.after is None or (created_at, job_id) < self.after


@dataclass
class HistoryPage:
    jobs: list[Job] = field(default_factory=list)
    # Where the next page starts; None when every matching job has been seen.
    next_after: tuple[float, str] | None = None


def encode_cursor(place: tuple[float, str] | None) -> str | None:
    if place is None:
        return None
    return base64.urlsafe_b64encode(f"{place[0]!r}|{place[1]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raises ValueError for anything encode_cursor did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, job_id = raw.partition("|")
        value = float(created)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor this gateway gave") from None
    if not job_id or value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a cursor this gateway gave")
    return value, job_id
