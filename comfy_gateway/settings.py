"""Every setting of the README's configuration table, read from the environment and `.env`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

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

    # Worker pools. GENERATION_WORKERS is per backend: 2 keeps the next prompt waiting in
    # ComfyUI's own queue while one runs, so the GPU never idles between jobs.
    preprocess_workers: int = Field(2, ge=1, le=256)
    generation_workers: int = Field(2, ge=1, le=64)
    postprocess_workers: int = Field(4, ge=1, le=256)
    max_queue_size: int = Field(1000, ge=1)

    output_dir: Path = Path("outputs")
    api_cache: str = "memory"

    # Limits and timings.
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    sync_timeout: float = Field(300.0, gt=0)
    max_sync_timeout: float = Field(3600.0, gt=0)
    sse_ping_seconds: float = Field(15.0, gt=0)
    result_ttl: float = Field(24 * 3600.0, gt=0)
    backend_timeout: float = Field(30.0, gt=0, description="HTTP timeout for one ComfyUI call")
    backend_lost_after: float = Field(
        120.0, gt=0, description="fail in-flight jobs of a backend unreachable this long"
    )
    job_timeout: float = Field(3600.0, gt=0, description="default per-job time limit, seconds")
    max_job_timeout: float = Field(86400.0, gt=0, description="largest per-request `timeout`")
    shutdown_grace: float = Field(30.0, ge=0, description="seconds to finish jobs on SIGTERM")

    # Access control. Comma-separated bearer tokens; empty = no authentication (loopback only!).
    api_keys: SecretStr = SecretStr("")
    cors_origins: str = ""
    # /metrics needs an API key like every other route; true opens it for a scraper that
    # cannot send one (keep it on a private network then: it shows load, not job data).
    metrics_open: bool = False

    @property
    def api_key_list(self) -> list[bytes]:
        return [k.strip().encode() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

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
        if v != "memory":
            raise ValueError("API_CACHE supports 'memory' in this version")
        return v

    @cached_property
    def backend_urls(self) -> list[str]:
        urls = [u.strip().rstrip("/") for u in self.comfyui_api_base.split(",") if u.strip()]
        if not urls:
            raise ValueError("COMFYUI_API_BASE names no backend")
        return urls
