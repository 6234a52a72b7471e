"""Every Redis key and channel name of one deployment, made from its prefix (REDIS_PREFIX), in
one place: the store, its parts and the preview relay ask here. What each key holds is
documented in redis_lua.py.

All of a deployment's names start with ONE Redis Cluster hash tag made from the prefix: the
prefix without its trailing ':' inside braces, then ':' (REDIS_PREFIX "comfy-gateway:" gives
"{comfy-gateway}:job:<id>", "{comfy-gateway}:q:generation", ...). Cluster hashes only what is
between the first '{' and the next '}', so every key maps to the same slot, and each script,
which must touch the job's own keys together with the deployment's counts, indexes and stage
queues, touches one slot. The tag is the whole prefix so that two deployments with different
prefixes can still live in different slots; braces in the prefix itself are refused, as they
would move the tag.

What is left before Redis Cluster (or Valkey cluster mode) works, beyond one slot per script:
- One slot means one shard carries all of a deployment's keys and script load: Cluster then
  gives failover, not write scaling, to one deployment.
- TAKE and EXPIRE_ENDED are given key-name prefixes and build a job's keys inside Lua (the job
  taken is only known inside the script). Those keys are in the same slot, which Cluster
  tolerates in practice, but it does not promise it: a script should only touch keys it was
  given, and a strict proxy or a future version may refuse them.
- `announce` (redis_lua_parts.py) asks PUBSUB NUMSUB, which counts one node's subscribers in
  Cluster, and PUBLISH (there and in `tell`) is broadcast to all nodes: sharded pub/sub
  (SPUBLISH, SSUBSCRIBE, PUBSUB SHARDNUMSUB; Redis 7+) would be needed, on channels that are
  named here under the same tag for that reason (each process's own events channel too:
  `events_told`).
- The client is redis.asyncio.Redis, not RedisCluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str  # REDIS_PREFIX as configured
    # What every key and channel name starts with: "{<prefix without its ':'>}:" (made once: a
    # job's change names about ten keys).
    base: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        object.__setattr__(self, "base", "{" + _stem(self.prefix) + "}:")

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
        """What the processes' own event channels are named from (`events_told`)."""
        return self.base + "events"

    def events_told(self, tag: str) -> str:
        """The channel a process with this writer's tag ("@<origin> ") is told job events on:
        the Lua scripts name it the same way (redis_lua_parts.py `tell`)."""
        return self.events_channel + tag

    @property
    def queues_channel(self) -> str:
        return self.base + "queues"

    @property
    def previews_channel(self) -> str:
        return self.base + "previews"


def _stem(prefix: str) -> str:
    return prefix[:-1] if prefix.endswith(":") else prefix


def check_prefix(prefix: str) -> str:
    """The prefix, if it can make the deployment's hash tag; else ValueError saying why."""
    if "{" in prefix or "}" in prefix:
        raise ValueError("REDIS_PREFIX must not contain '{' or '}': the keys are laid out under "
                         "a hash tag made from it")
    if not _stem(prefix):
        raise ValueError("REDIS_PREFIX needs at least one character besides a trailing ':'")
    return prefix


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
