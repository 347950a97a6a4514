"""Schedules: a job spec run on a cron expression (nightly comparisons)."""

from fastapi import APIRouter, Depends, HTTPException, status

from repalign.errors import RepalignError
from repalign.tracking import schedule_trend
from services import crud
from services.api.deps import ScheduleDep, SessionDep, StateDep, require_token
from services.api.schemas import ScheduleCreate, SchedulePublic
from services.db import Schedule
from services.scheduler import ScheduleError, next_run
from services.specs import checked_spec

router = APIRouter(prefix="/schedules", tags=["schedules"], dependencies=[Depends(require_token)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SchedulePublic)
def create(state: StateDep, session: SessionDep, body: ScheduleCreate):
    """Run ``spec`` on ``cron`` in ``timezone``. An alignment spec runs as a nightly
    comparison: only new pairs are computed, and a change report is logged with the matrix."""
    _, content = checked_spec(body.spec, state.settings)
    try:
        first = next_run(body.cron, body.timezone)
    except ScheduleError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    schedule = Schedule(cron=body.cron, timezone=body.timezone, spec=content,
                        threshold=body.threshold, next_run_at=first)  # fmt: skip
    session.add(schedule)
    session.commit()
    return schedule


@router.get("", response_model=list[SchedulePublic])
def list_schedules(session: SessionDep):
    return crud.schedules(session)


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(schedule: ScheduleDep, session: SessionDep):
    session.delete(schedule)
    session.commit()


@router.get("/{schedule_id}/trend")
def trend(state: StateDep, schedule: ScheduleDep, rep_a: str, rep_b: str):
    """The values of the pair ``rep_a``, ``rep_b`` on each night of the schedule, read from its
    parent run in MLflow (`repalign.tracking.schedule_trend`): ``run_id``, ``pair``,
    ``configurations`` and ``points`` (``time``, ``step`` YYYYMMDD, ``values`` by
    configuration). 404 before the schedule's first run is logged, or for a pair it lacks."""
    try:
        return schedule_trend(schedule.id, rep_a, rep_b, tracking_uri=state.settings.tracking)
    except RepalignError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
