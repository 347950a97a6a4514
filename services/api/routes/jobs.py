"""Jobs: submit, list, look at one, read its log, cancel it, fetch its result table."""

import io
import json
from typing import Annotated

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fastapi import APIRouter, Body, Depends, HTTPException, Query, status
from fastapi.responses import PlainTextResponse, Response

from repalign.contract import CHANGES_FILE, RESULT_FILES
from services import crud
from services.api.deps import JobDep, SessionDep, StateDep, require_token
from services.api.schemas import JobCreated, JobPublic, JobSpec
from services.specs import checked_spec

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_token)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobCreated)
def submit(state: StateDep, session: SessionDep, spec: Annotated[JobSpec, Body()]):
    """Queue a job: the spec of `repalign run` (kind: alignment, the default) or of
    `repalign stitch` (kind: stitching). Its ``out`` is chosen by the service, and the job's
    record shows it.

    A spec that cannot run is refused here, with nothing queued: 422 naming the field (a
    glob that matches no representation, k ≥ n, more memory than the worker has), 404 for a
    store that does not exist, 403 for one outside the service's store roots."""
    kind, content = checked_spec(spec, state.settings)
    job = crud.add_job(session, kind=kind, spec=content, out_folder=state.runner.out)
    session.commit()
    state.runner.wake()
    return JobCreated(id=job.id)


@router.get("", response_model=list[JobPublic])
def list_jobs(
    state: StateDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
):
    return [state.public(job) for job in crud.latest_jobs(session, limit)]


@router.get("/{job_id}", response_model=JobPublic)
def get_job(state: StateDep, job: JobDep):
    return state.public(job)


@router.get("/{job_id}/logs", response_class=PlainTextResponse)
def logs(state: StateDep, job: JobDep):
    return state.runner.log(job.id)


@router.delete("/{job_id}", response_model=JobPublic)
def cancel(state: StateDep, job: JobDep, session: SessionDep):
    state.runner.cancel(job.id)
    session.refresh(job)
    return state.public(job)


@router.get("/{job_id}/changes")
def changes(state: StateDep, job: JobDep):
    """The change report of a scheduled (nightly) alignment job: new, changed and removed
    representations, the pairs that moved by more than the schedule's threshold, and the MMD²
    drift of each changed representation."""
    path = state.runner.folder(job.id) / "out" / CHANGES_FILE
    if job.kind != "nightly" or job.status != "succeeded" or not path.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job.id} has no change report")
    return json.loads(path.read_text())


@router.get("/{job_id}/result")
def result(
    state: StateDep, job: JobDep, format: str = Query("json", pattern="^(json|parquet|csv)$")
):
    """The job's long result table: JSON records, or the Parquet file, or CSV."""
    if job.status != "succeeded":
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.status}, no result")
    path = state.runner.folder(job.id) / "out" / RESULT_FILES[job.kind].table
    if format == "parquet":
        return Response(path.read_bytes(), media_type="application/vnd.apache.parquet")
    table = pq.read_table(path)
    if format == "csv":
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer)
        return Response(buffer.getvalue(), media_type="text/csv")
    return table.to_pylist()
