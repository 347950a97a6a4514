"""What the handlers need, declared once: settings, a database session, the runner, the token."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.db import Job, Schedule
from services.security import token_is_valid

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def get_state(request: Request):
    return request.app.state.service


def require_token(request: Request, credentials: BearerDep) -> None:
    """401 with ``WWW-Authenticate: Bearer`` unless the bearer token is one of the service's."""
    hashes = request.app.state.service.token_hashes
    if credentials is None or not token_is_valid(credentials.credentials, hashes):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def get_session(request: Request):
    with request.app.state.service.sessions() as session:
        yield session


StateDep = Annotated[object, Depends(get_state)]
SessionDep = Annotated[object, Depends(get_session)]


def get_job(job_id: str, session: SessionDep) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return job


def get_schedule(schedule_id: str, session: SessionDep) -> Schedule:
    schedule = session.get(Schedule, schedule_id)
    if schedule is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no schedule {schedule_id!r}")
    return schedule


JobDep = Annotated[Job, Depends(get_job)]
ScheduleDep = Annotated[Schedule, Depends(get_schedule)]
