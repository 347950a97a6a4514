"""The service's database queries, in one place: the routes, the status page, the runner and
the scheduler ask here rather than writing SQL of their own."""

from sqlalchemy import func, select

from services.db import Job, JobStatus, Schedule, new_id

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def add_job(session, *, kind, spec, out_folder, **fields):
    """Queue a job of ``kind``. Its spec records the ``out`` the job really writes to,
    ``out_folder(job id)``, whatever ``out`` was submitted."""
    job_id = new_id()
    job = Job(id=job_id, kind=kind, spec={**spec, "out": str(out_folder(job_id))}, **fields)
    session.add(job)
    return job


def latest_jobs(session, limit):
    """The ``limit`` most recently submitted jobs, newest first."""
    return session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)).all()


def jobs_with_status(session, status):
    return session.scalars(select(Job).where(Job.status == status)).all()


def count_running(session):
    return session.scalar(select(func.count()).where(Job.status == JobStatus.RUNNING))


def next_queued(session, limit):
    """At most ``limit`` queued jobs, in order of submission."""
    query = select(Job).where(Job.status == JobStatus.QUEUED).order_by(Job.created_at)
    return session.scalars(query.limit(limit)).all()


def jobs_by_status(session):
    """``{status: number of jobs}`` for every `JobStatus`, zeros included."""
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    return {status: counts.get(status, 0) for status in JobStatus}


def schedules(session):
    """Every schedule, oldest first."""
    return session.scalars(select(Schedule).order_by(Schedule.created_at)).all()


def count_schedules(session):
    return session.scalar(select(func.count()).select_from(Schedule))


def schedule_jobs(session, schedule_id, limit):
    """The ``limit`` jobs that the schedule queued last, newest first."""
    query = select(Job).where(Job.schedule_id == schedule_id).order_by(Job.created_at.desc())
    return session.scalars(query.limit(limit)).all()


def schedule_is_busy(session, schedule_id):
    """Is a job of the schedule still queued or running?"""
    query = select(Job.id).where(Job.schedule_id == schedule_id, Job.status.in_(ACTIVE))
    return session.scalars(query).first() is not None


def last_success(session, schedule_id):
    """The schedule's job that succeeded last, or None."""
    query = (
        select(Job)
        .where(Job.schedule_id == schedule_id, Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.finished_at.desc())
        .limit(1)
    )
    return session.scalars(query).first()
