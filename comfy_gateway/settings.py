"""Every setting of the README's configuration table, read from the environment and `.env`."""

from __future__ import annotations

import base64
import binascii
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .comfy.naming import BackendSpec, parse_backends
from .net.guard import NetworkPolicy

MiB = 1024 * 1024


class Settings(BaseSettings):
    # hide_input_in_errors: a bad setting is reported by name, never echoed (it may be a secret).
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      hide_input_in_errors=True)

    # HTTP server. Without API keys the service must not face a network, so loopback by default.
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1, le=64)
    api_reload: bool = False
    api_log_level: str = "info"
    # text for people at a terminal; json (one object per line, job_id on each line about a
    # job) for log collectors.
    log_format: str = "text"

    # ComfyUI backends: one URL or a comma-separated list.
    comfyui_api_base: str = "http://127.0.0.1:8188"

    # Worker pools. GENERATION_WORKERS is per backend: 3 keeps the next prompts waiting in
    # ComfyUI's own queue while one runs, so the GPU never idles between jobs (with 2, ComfyUI
    # found its queue empty about twice as often in the benchmark: the slot is freed only after
    # /history confirms the end). Preprocessing
    # fetches input URLs: a slow one holds its worker up to INPUT_TIMEOUT, so there are more.
    preprocess_workers: int = Field(8, ge=1, le=256)
    generation_workers: int = Field(3, ge=1, le=64)
    postprocess_workers: int = Field(4, ge=1, le=256)
    max_queue_size: int = Field(1000, ge=1)

    output_dir: Path = Path("outputs")

    # Job store: "memory" (one process) or "redis" (shared by any number of processes).
    api_cache: str = "memory"
    redis_url: str | None = Field(None, description="redis://[:password@]host:port/db; wins over the parts below")
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_db: int = Field(0, ge=0)
    redis_password: SecretStr | None = None
    redis_prefix: str = Field("comfy-gateway:", min_length=1, description="key prefix: several gateways or tests on one Redis")
    # A process that dies holding a job loses it to another process this many seconds later;
    # a live worker renews its lease every third of it.
    lease_seconds: float = Field(30.0, ge=0.5)

    # Limits and timings.
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    sync_timeout: float = Field(300.0, gt=0)
    max_sync_timeout: float = Field(3600.0, gt=0)
    sse_ping_seconds: float = Field(15.0, gt=0)
    result_ttl: float = Field(24 * 3600.0, gt=0)
    # Memory store: jobs already waiting in a stage from which one more is kept packed (a few
    # KiB instead of tens), and unpacked when a worker takes it. 0 packs every waiting job.
    pack_queued_after: int = Field(32, ge=0)
    # Memory store: seconds after its end a job is kept packed for the rest of RESULT_TTL (its
    # followers have read it by then; a later read unpacks a copy).
    pack_ended_after: float = Field(5.0, ge=0)
    backend_timeout: float = Field(30.0, gt=0, description="HTTP timeout for one ComfyUI call")
    backend_lost_after: float = Field(
        120.0, gt=0, description="fail in-flight jobs of a backend unreachable this long"
    )
    job_timeout: float = Field(3600.0, gt=0, description="default per-job time limit, seconds")
    max_job_timeout: float = Field(86400.0, gt=0, description="largest per-request `timeout`")
    shutdown_grace: float = Field(30.0, ge=0, description="seconds to finish jobs on SIGTERM")
    # Settling every job (see the README's "Every job settles"): each backend's prompts in
    # flight are compared with its /queue this often, besides on status frames and reconnects.
    reconcile_interval: float = Field(5.0, gt=0, description="seconds between two looks at each ComfyUI's queue")
    # A job taken this many times by a stage (each time its taker died or stopped) is failed.
    max_deliveries: int = Field(5, ge=1, le=100)
    # Time limits and owed webhooks are kept in the store; every process looks for due ones at
    # least this often (sooner when it knows of a nearer one).
    sweep_interval: float = Field(1.0, gt=0, le=60)
    # Webhook requests in flight at once per process; a webhook waiting for its next retry holds none.
    webhook_concurrency: int = Field(100, ge=1, le=10000)

    # Access control. Comma-separated bearer tokens; empty = no authentication (loopback only!).
    api_keys: SecretStr = SecretStr("")
    cors_origins: str = ""
    # /metrics needs an API key like every other route; true opens it for a scraper that
    # cannot send one (keep it on a private network then: it shows load, not job data).
    metrics_open: bool = False
    # Seconds between two samples of the event loop's lag (comfy_gateway_event_loop_lag_seconds,
    # see loop_lag.py); 0 turns the sampler off.
    loop_lag_interval: float = Field(0.05, ge=0, le=10)

    # Named keys with limits of their own (TOML, see the README's "Keys, quotas, priorities");
    # replaces API_KEYS when set. Read again on SIGHUP.
    api_keys_file: Path | None = None
    # Seconds the usage of ended jobs is kept for /usage (longer than RESULT_TTL: billing).
    usage_ttl: float = Field(90 * 86400.0, gt=0)

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _no_file(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v  # API_KEYS_FILE= in a .env

    @property
    def api_key_list(self) -> list[bytes]:
        return [k.strip().encode() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    # The address guard for URLs a client chooses (webhooks, S3 endpoints a request names,
    # input URLs): comma-separated CIDRs and host names that may be reached although they are
    # loopback or private. Empty: public addresses only.
    asset_allowed_networks: str = ""

    # Where clients reach this gateway; output links in webhook bodies start with it.
    # Empty: http://API_HOST:API_PORT.
    public_url: str = ""

    # Local outputs: removed once uploaded to S3 unless kept; a job's folder is deleted this
    # many seconds after its last write (0 keeps files forever).
    keep_local_outputs: bool = False
    local_output_ttl: float = Field(24 * 3600.0, ge=0)

    # S3 defaults, used for every job whose request has no `s3` of its own. Without keys the
    # AWS default credential chain applies (environment, profile, instance role).
    s3_bucket_name: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_prefix: str = ""
    s3_url_expiry: int = Field(3600, ge=1, le=7 * 24 * 3600, description="presigned URL lifetime (SigV4 max: 7 days)")
    s3_public_base_url: str = ""
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_part_size: int = Field(8 * MiB, ge=5 * MiB, le=5 * 1024 * MiB)
    s3_retries: int = Field(2, ge=0, le=10)
    s3_timeout: float = Field(60.0, gt=0)

    # Webhooks: WEBHOOK_URL is the default receiver; every webhook is signed with WEBHOOK_SECRET.
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
    webhook_retries: int = Field(5, ge=0, le=20)
    webhook_timeout: float = Field(10.0, gt=0)
    webhook_backoff: float = Field(1.0, gt=0, description="delay before the first retry; doubles each time")

    # Base64 outputs in the result: the most bytes (before encoding) one job may inline.
    inline_max_bytes: int = Field(8 * MiB, ge=0)

    # Key that seals per-request credentials inside stored jobs (base64 of 32 bytes). Empty:
    # a random key per process, enough while jobs live in this process's memory.
    secrets_key: SecretStr = SecretStr("")

    # Modifiers: Python classes and declarative mapping files, each bound to a workflow JSON.
    modifiers_dir: Path = Path("modifiers")
    workflows_dir: Path = Path("workflows")

    # Input assets: URLs and data: URIs in workflows, fetched through the address guard.
    max_input_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    input_cache_bytes: int = Field(256 * 1024 * 1024, ge=0)
    input_connect_timeout: float = Field(5.0, gt=0)
    input_timeout: float = Field(30.0, gt=0, description="whole fetch of one input, redirects included")
    input_max_redirects: int = Field(3, ge=0, le=20)
    assets_dir: Path = Path("assets")
    asset_ttl: float = Field(24 * 3600.0, gt=0, description="seconds an uploaded asset is kept")

    # Check each workflow against the backends' /object_info (ComfyUI's own rules) before it is
    # queued, so a workflow ComfyUI would refuse is answered with a 4xx at once. ComfyUI checks
    # it again when it runs; false turns the early check off (e.g. custom nodes that accept
    # values their choice lists do not show).
    validate_workflows: bool = True

    # Models by URL (loader inputs such as lora_name holding https://... or asset://...):
    # downloaded once into MODEL_CACHE_DIR (least recently used out past MODEL_CACHE_BYTES),
    # then delivered to a backend by ComfyUI's assets API or through SHARED_MODELS_DIR.
    max_model_bytes: int = Field(16 * 1024 * MiB, ge=1024)
    model_cache_dir: Path = Path("model-cache")
    model_cache_bytes: int = Field(64 * 1024 * MiB, ge=0)
    model_timeout: float = Field(3600.0, gt=0, description="whole download of one model file")
    shared_models_dir: Path | None = None
    model_loaders_file: Path | None = None

    # GPU fleet: warm-up, readiness, circuit breaker (README "Running a GPU fleet").
    warmup_workflow: Path | None = Field(None, description="API-format workflow each backend runs once when "
                                         "the gateway connects to it, before it joins the rotation")
    warmup_timeout: float = Field(600.0, gt=0, description="seconds one warm-up run may take")
    ready_max_queue: int = Field(100, ge=0, description="GET /ready is 503 while more jobs than this wait")
    breaker_threshold: int = Field(3, ge=1, description="backend-caused failures in a row that take it out")
    breaker_cooldown: float = Field(30.0, gt=0, description="seconds out of rotation before it is probed")

    @field_validator("warmup_workflow", "shared_models_dir", "model_loaders_file", mode="before")
    @classmethod
    def _unset_if_empty(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("text", "json"):
            raise ValueError("LOG_FORMAT is 'text' or 'json'")
        return v

    @field_validator("api_cache")
    @classmethod
    def _known_cache(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("memory", "redis"):
            raise ValueError("API_CACHE is 'memory' or 'redis'")
        return v

    @field_validator("redis_prefix")
    @classmethod
    def _taggable_prefix(cls, v: str) -> str:
        from .jobs.redis_keys import check_prefix  # the key layout's own rule

        return check_prefix(v)

    @property
    def redis_location(self) -> str:
        """The Redis URL without any password (that one is passed apart, never logged)."""
        if self.redis_url:
            return self.redis_url
        return f"redis://{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @field_validator("s3_prefix")
    @classmethod
    def _clean_prefix(cls, v: str) -> str:
        return v.strip().strip("/")

    @field_validator("public_url", "s3_public_base_url", "s3_endpoint_url", "webhook_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {v!r}")
        return v

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: SecretStr) -> SecretStr:
        if v.get_secret_value():
            webhook_key(v.get_secret_value())  # raises with the reason
        return v

    @field_validator("secrets_key")
    @classmethod
    def _secrets_key(cls, v: SecretStr) -> SecretStr:
        if v.get_secret_value():
            try:
                key = base64.b64decode(v.get_secret_value(), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise ValueError("SECRETS_KEY must be the base64 of 32 bytes (openssl rand -base64 32)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key.get_secret_value()):
            raise ValueError("set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither")
        if self.webhook_url and not self.webhook_secret.get_secret_value():
            raise ValueError("WEBHOOK_URL needs WEBHOOK_SECRET: every webhook is signed")
        parse_backends(self.comfyui_api_base)  # a malformed backend list fails at start, by entry
        return self

    @cached_property
    def network_policy(self) -> NetworkPolicy:
        return NetworkPolicy.parse(self.asset_allowed_networks)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.api_host}:{self.api_port}"

    @cached_property
    def backend_urls(self) -> list[str]:
        return [b.url for b in self.backends]

    @cached_property
    def backends(self) -> list[BackendSpec]:
        """Each backend's URL, credential-free name and public label (see comfy/naming.py)."""
        return parse_backends(self.comfyui_api_base)


def webhook_key(secret: str) -> bytes:
    """The HMAC key a Standard Webhooks secret stands for: base64, optionally prefixed `whsec_`
    (as the spec and its libraries read it, so receivers verify with the same string)."""
    raw = secret.strip()
    raw = raw[len("whsec_"):] if raw.startswith("whsec_") else raw
    raw = raw.rstrip("=")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("WEBHOOK_SECRET must be base64, optionally prefixed 'whsec_'") from None
    if len(key) < 24:
        raise ValueError(
            f"WEBHOOK_SECRET decodes to {len(key)} bytes; use at least 24 (the Standard Webhooks "
            "advice), e.g. 'whsec_' + the output of: openssl rand -base64 32")
    return key
