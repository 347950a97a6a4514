"""Job records and schedules, persisted through SQLAlchemy (SQLite by default, or PostgreSQL).

A job moves queued → running → succeeded | failed | cancelled. Every change is committed
before it takes effect outside the database, so a service that dies keeps every record: on
restart, `services.runner.JobRunner.recover` re-queues the jobs it had running.
"""

import datetime
import uuid

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
KINDS = ("alignment", "stitching", "nightly")


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
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
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
