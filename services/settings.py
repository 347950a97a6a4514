"""The service's settings: from ``REPALIGN_*`` environment variables or a config file."""

import hashlib
import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from repalign.preflight import machine_memory
from repalign.tracking import check_tracking_uri

DEFAULT_BODY_BYTES = 1 << 20


class Settings(BaseSettings):
    """What the service may read, where it keeps its state, how it runs jobs.

    Environment variables: ``REPALIGN_API_TOKENS`` (comma-separated), ``REPALIGN_STORE_ROOTS``
    (a JSON list), ``REPALIGN_STATE_DIR``, ``REPALIGN_DATABASE_URL``, ``REPALIGN_MAX_RUNNING``,
    ``REPALIGN_RAY_ADDRESS``, ``REPALIGN_TRACKING_URI``, ``REPALIGN_MAX_BODY_BYTES``,
    ``REPALIGN_SCHEDULER_SECONDS``, ``REPALIGN_WORKER_MEMORY``. `load_settings` also reads a
    JSON config file.
    """

    model_config = SettingsConfigDict(env_prefix="REPALIGN_", extra="forbid")

    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(min_length=1)
    store_roots: list[Path] = Field(min_length=1)
    state_dir: Path = Path("repalign-service")
    database_url: str | None = None
    max_running: int = Field(default=2, ge=1)
    ray_address: str | None = None
    tracking_uri: str | None = None
    max_body_bytes: int = Field(default=DEFAULT_BODY_BYTES, ge=1024)
    scheduler_seconds: float = Field(default=30.0, gt=0)
    worker_memory: int | None = Field(
        default=None,
        ge=1,
        description="bytes of memory of the machine that runs a job (default: this "
        "machine's); a job planned to need more is refused at submit",
    )

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value):
        if isinstance(value, str):
            value = [token.strip() for token in value.split(",")]
        tokens = [t for t in value if (t.get_secret_value() if isinstance(t, SecretStr) else t)]
        if not tokens:
            raise ValueError("at least one API token is needed (REPALIGN_API_TOKENS)")
        return tokens

    @field_validator("tracking_uri")
    @classmethod
    def _supported_tracking_uri(cls, uri):
        if uri is not None:
            check_tracking_uri(uri)  # refused at start, not by every job it launches
        return uri

    @field_validator("store_roots")
    @classmethod
    def _resolve_roots(cls, roots):
        resolved = []
        for root in roots:
            if not root.is_dir():
                raise ValueError(f"store root {root} is not a folder")
            resolved.append(root.resolve())
        return resolved

    @property
    def database(self):
        """The database URL: the given one, else a SQLite file in the state folder."""
        return self.database_url or f"sqlite:///{self.state_dir.resolve() / 'service.db'}"

    @property
    def tracking(self):
        """The MLflow tracking URI jobs log to: the given one, else SQLite in the state folder."""
        return self.tracking_uri or f"sqlite:///{self.state_dir.resolve() / 'mlflow.db'}"

    @property
    def job_memory(self):
        """Bytes a job may plan to hold in one process: ``worker_memory``, else this
        machine's memory (`repalign.preflight.machine_memory`)."""
        return self.worker_memory or machine_memory()

    @property
    def token_hashes(self):
        """SHA-256 digests of the tokens: the service keeps no token in clear after start."""
        return [token_hash(t.get_secret_value()) for t in self.api_tokens]


def token_hash(token):
    return hashlib.sha256(token.encode()).digest()


class SettingsError(ValueError):
    """Settings that the service cannot start with; the message names each bad one."""


def load_settings(config=None, **overrides):
    """Settings from the environment, a JSON ``config`` file (its keys are the field names),
    and ``overrides`` (command-line flags), later ones winning."""
    try:
        content = json.loads(Path(config).read_text()) if config else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise SettingsError(f"cannot read the config file {config}: {exc}") from None
    content.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**content)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid service settings: {problems}") from None
