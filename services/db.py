"""Job records and schedules, persisted through SQLAlchemy (SQLite by default, or PostgreSQL).

A job moves queued → running → succeeded | failed | cancelled. Every change is committed
before it takes effect outside the database, so a service that dies keeps every record: on
restart, `services.runner.JobRunner.recover` re-queues the jobs it had running.
"""

import datetime
import uuid
from enum import StrEnum

from sqlalchemy import JSON, DateTime, Enum, Float, ForeignKey, Integer, String, Text, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class JobStatus(StrEnum):
    """Where a job is: queued → running → succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobKind(StrEnum):
    """What a job runs: ``repalign run``, ``repalign stitch``, or ``repalign nightly`` (an
    alignment spec queued by a schedule)."""

    ALIGNMENT = "alignment"
    STITCHING = "stitching"
    NIGHTLY = "nightly"


def _enum_column(enum):
    """A column of an enum's values, stored as VARCHAR(16) (as before the enums existed)."""
    return Enum(enum, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


def now():
    return datetime.datetime.now(datetime.UTC)


def new_id():
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class Schedule(Base):
    """A job spec run on a cron expression in a time zone."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict] = mapped_column(JSON)
    threshold: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    next_run_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """One submitted job and what became of it."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[JobKind] = mapped_column(_enum_column(JobKind))
    spec: Mapped[dict] = mapped_column(JSON)
    status: Mapped[JobStatus] = mapped_column(
        _enum_column(JobStatus), default=JobStatus.QUEUED, index=True
    )
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    started_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    schedule_id: Mapped[str | None] = mapped_column(ForeignKey("schedules.id"))
    previous_job_id: Mapped[str | None] = mapped_column(String(32))
    threshold: Mapped[float | None] = mapped_column(Float)  # nightly jobs: the report's


def open_database(url):
    """An engine and a session factory for ``url``, with the tables created if missing."""
    arguments = {"check_same_thread": False} if url.startswith("sqlite") else {}
    engine = create_engine(url, connect_args=arguments, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)
