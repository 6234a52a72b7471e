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

    # ComfyUI backends: one URL or a comma-separated list.
    comfyui_api_base: str = "http://127.0.0.1:8188"

    # Worker pools. GENERATION_WORKERS is per backend: 2 keeps the next prompt waiting in
    # ComfyUI's own queue while one runs, so the GPU never idles between jobs.
    preprocess_workers: int = Field(2, ge=1, le=256)
    generation_workers: int = Field(2, ge=1, le=64)
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
    backend_timeout: float = Field(30.0, gt=0, description="HTTP timeout for one ComfyUI call")
    backend_lost_after: float = Field(
        120.0, gt=0, description="fail in-flight jobs of a backend unreachable this long"
    )

    @field_validator("api_cache")
    @classmethod
    def _known_cache(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("memory", "redis"):
            raise ValueError("API_CACHE is 'memory' or 'redis'")
        return v

    @property
    def redis_location(self) -> str:
        """The Redis URL without any password (that one is passed apart, never logged)."""
        if self.redis_url:
            return self.redis_url
        return f"redis://{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @cached_property
    def backend_urls(self) -> list[str]:
        urls = [u.strip().rstrip("/") for u in self.comfyui_api_base.split(",") if u.strip()]
        if not urls:
            raise ValueError("COMFYUI_API_BASE names no backend")
        return urls
