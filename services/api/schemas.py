"""What the API returns (and takes, besides job specs, which `repalign.spec` defines)."""

import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class JobCreated(BaseModel):
    id: str


class Progress(BaseModel):
    stage: str | None = Field(
        description="the pass or step under way, e.g. 'moments (4 representations)'"
    )
    done: int
    total: int | None
    fraction: float | None = Field(description="done / total of this stage")


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    spec: dict
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    attempts: int
    error: str | None
    mlflow_run_id: str | None
    mlflow_link: str | None = None
    schedule_id: str | None
    progress: Progress | None = None


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(description="cron expression: 5 fields, or 6 with seconds first")
    timezone: str = "UTC"
    spec: dict
    threshold: float = Field(default=0.05, gt=0, description="report pairs that moved more")


class SchedulePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    cron: str
    timezone: str
    spec: dict
    threshold: float
    created_at: datetime.datetime
    next_run_at: datetime.datetime
    last_run_at: datetime.datetime | None
