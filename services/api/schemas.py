"""What the API takes and returns. Job specs are the models of `repalign.spec`, so that the
OpenAPI schema at ``/docs`` is the spec's own; only ``out`` differs, as the service chooses it."""

import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from repalign.spec import AlignmentSpec, StitchingSpec
from services.db import JobKind, JobStatus

SERVICE_OUT = Field(
    default=None,
    description="ignored: the service chooses the job's output folder, which its record shows",
)


class AlignmentJob(AlignmentSpec):
    """An alignment job (``repalign run``), as submitted to the service."""

    out: str | None = SERVICE_OUT


class StitchingJob(StitchingSpec):
    """A stitching job (``repalign stitch``), as submitted to the service."""

    out: str | None = SERVICE_OUT


def _kind(content):
    """The ``kind`` of a submitted spec: ``alignment`` when it names none."""
    if isinstance(content, dict):
        return content.get("kind", "alignment")
    return getattr(content, "kind", "alignment")


JobSpec = Annotated[
    Annotated[AlignmentJob, Tag("alignment")] | Annotated[StitchingJob, Tag("stitching")],
    Discriminator(
        _kind,
        custom_error_type="invalid_kind",
        custom_error_message="kind must be 'alignment' (the default) or 'stitching'",
    ),
]
SPEC_TAGS = ("alignment", "stitching")
"""The tags of `JobSpec`'s members, which validation errors put in their locations."""


class Problem(BaseModel):
    """Every error the API answers (401, 404, 409, 413, 422): one line naming what is wrong."""

    detail: str = Field(description="e.g. 'measures.0.k: k=400 must be below n=300, ...'")


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
    kind: JobKind
    status: JobStatus
    spec: dict = Field(description="the job's spec, its store resolved and its out the real one")
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
    spec: JobSpec
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
