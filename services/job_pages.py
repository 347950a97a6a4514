"""The page of one job (``/jobs/{id}``) and of one schedule (``/schedules/{id}``), which the
status page links to, and a job's interactive heatmaps (``/jobs/{id}/heatmaps/NAME.html``).

They are rendered as the status page is (`services.page`: its sign-in, its templates, its
headers) and need no script. A job's page refreshes itself while the job is queued or running
(``<meta http-equiv="refresh">``), and the server sorts and pages its result table
(`services.result_table`, from the query ``?sort=COLUMN&order=asc|desc&page=N``). Only the
heatmaps are drawn by script: each is the page of `repalign.heatmap_html` for one measure
configuration, made from the job's table and shown in a frame.

A job's page shows its status and progress, its result table, its heatmaps, the change report
of a nightly run, its MLflow run, its spec and the tail of its log. A schedule's page shows its
cron and spec, its latest runs, and the pairs that moved in its latest change report.
"""

import base64
import hashlib
import http
import json
import re

import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from repalign.alignment_tables import configurations
from repalign.contract import CHANGES_FILE, RESULT_FILES
from repalign.heatmap_html import heatmap_html
from services import crud
from services.api.deps import SessionDep, StateDep
from services.db import Job, JobKind, JobStatus, Schedule
from services.page import SignedInDep, mlflow_ui_command, render, require_viewer
from services.result_table import TableQueryError, table_page

REFRESH_SECONDS = 3
LOG_LINES = 100
RUNS_SHOWN = 50
MOVED_SHOWN = 100
HEATMAP_KINDS = (JobKind.ALIGNMENT, JobKind.NIGHTLY)
"""The kinds of job whose table is an alignment table, with a heatmap per configuration."""

router = APIRouter(include_in_schema=False)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request,
    viewer: SignedInDep,
    state: StateDep,
    session: SessionDep,
    job_id: str,
    sort: str | None = None,
    order: str = "asc",
    page: str = "1",
):
    """A job's page, its result table sorted by ``sort`` in ``order`` and at page ``page``;
    the sign-in form without a session; 404 for an unknown job or a page past the table's."""
    if not viewer:
        return _sign_in_form(request)
    job = session.get(Job, job_id)
    if job is None:
        return _problem(request, status.HTTP_404_NOT_FOUND, f"There is no job {job_id!r}.")
    table = _result_table(state, job)
    try:
        rows = None if table is None else table_page(table, sort=sort, order=order, page=page)
    except TableQueryError as exc:
        return _problem(request, exc.status_code, f"The results of job {job.id}: {exc}")
    log = state.runner.log(job.id).splitlines()
    tail = log[-LOG_LINES:]
    active = job.status in crud.ACTIVE
    tracking = state.settings.tracking
    return render(
        request,
        "job.html",
        title=f"Job {job.id}",
        signed_in=True,
        refresh_seconds=REFRESH_SECONDS if active else None,
        job=job,
        active=active,
        progress=state.runner.progress(job.id) if job.status == JobStatus.RUNNING else None,
        table=rows,
        heatmaps=list(_heatmap_configurations(job, table)),
        changes=_change_report(state, job),
        moved_shown=MOVED_SHOWN,
        tracking=tracking,
        mlflow_ui=mlflow_ui_command(tracking),
        spec=json.dumps(job.spec, indent=2),
        log_tail="\n".join(tail),
        log_shown=len(tail),
        log_lines=len(log),
    )


@router.get("/jobs/{job_id}/heatmaps/{name}.html", dependencies=[Depends(require_viewer)])
def job_heatmap(state: StateDep, session: SessionDep, job_id: str, name: str):
    """The interactive heatmap of one measure configuration of a job's table, ``name`` as
    MLflow names its artifact (``cka-linear-biased``); 404 if the job has no such heatmap."""
    job = session.get(Job, job_id)
    table = None if job is None else _result_table(state, job)
    found = {} if table is None else _heatmap_configurations(job, table)
    if name not in found:
        known = ", ".join(found) or "none"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"job {job_id!r} has no heatmap {name!r} (it has {known})"
        )
    measure, kernel, estimator = found[name]
    content = heatmap_html(table, measure=measure, kernel=kernel, estimator=estimator)
    return HTMLResponse(content, headers=_heatmap_headers(content))


@router.get("/schedules/{schedule_id}", response_class=HTMLResponse)
def schedule_page(
    request: Request, viewer: SignedInDep, state: StateDep, session: SessionDep, schedule_id: str
):
    """A schedule's page; the sign-in form without a session; 404 for an unknown schedule."""
    if not viewer:
        return _sign_in_form(request)
    schedule = session.get(Schedule, schedule_id)
    if schedule is None:
        message = f"There is no schedule {schedule_id!r}."
        return _problem(request, status.HTTP_404_NOT_FOUND, message)
    runs = crud.schedule_jobs(session, schedule.id, RUNS_SHOWN)
    reports = {job.id: _change_report(state, job) for job in runs}
    latest = next((job for job in runs if reports[job.id] is not None), None)
    tracking = state.settings.tracking
    return render(
        request,
        "schedule.html",
        title=f"Schedule {schedule.id}",
        signed_in=True,
        refresh_seconds=REFRESH_SECONDS if any(j.status in crud.ACTIVE for j in runs) else None,
        schedule=schedule,
        stitching=schedule.spec.get("kind") == JobKind.STITCHING,
        runs=runs,
        runs_shown=RUNS_SHOWN,
        reports=reports,
        latest=latest,
        moved_shown=MOVED_SHOWN,
        tracking=tracking,
        spec=json.dumps(schedule.spec, indent=2),
    )


# -- what a job left in its folder ---------------------------------------------------------------


def _result_table(state, job):
    """The table of a job that succeeded, or None (no success, or no table written)."""
    path = state.runner.out(job.id) / RESULT_FILES[job.kind].table
    if job.status != JobStatus.SUCCEEDED or not path.exists():
        return None
    return pq.read_table(path)


def _change_report(state, job):
    """The change report of a nightly job that succeeded (`jobs.nightly.change_report`), or
    None."""
    path = state.runner.out(job.id) / CHANGES_FILE
    if job.kind != JobKind.NIGHTLY or job.status != JobStatus.SUCCEEDED or not path.exists():
        return None
    return json.loads(path.read_text())


def _heatmap_configurations(job, table):
    """``{name: (measure, kernel, estimator)}`` of the heatmaps of a job's table, named as the
    MLflow run names their artifacts; empty for a job with no alignment table."""
    if table is None or job.kind not in HEATMAP_KINDS:
        return {}
    return {"-".join(part for part in config if part): config for config in configurations(table)}


# -- responses ---------------------------------------------------------------------------------


def _sign_in_form(request):
    return render(request, "login.html", status.HTTP_401_UNAUTHORIZED, title="Sign in")


def _problem(request, status_code, message):
    """A page that says what is wrong, with the HTTP status ``status_code``."""
    phrase = http.HTTPStatus(status_code).phrase
    return render(
        request, "problem.html", status_code, title=phrase, signed_in=True, message=message
    )


def _heatmap_headers(content):
    """The headers of a heatmap page: its own inline script and style are allowed by their
    hashes and nothing else is; it runs sandboxed (in an origin of its own, so its script can
    neither read the session cookie nor call the service) and only this service may frame it.
    A succeeded job's table does not change."""
    policy = (
        f"default-src 'none'; script-src {_inline_hashes(content, 'script')}; "
        f"style-src {_inline_hashes(content, 'style')}; frame-ancestors 'self'; "
        "base-uri 'none'; form-action 'none'; sandbox allow-scripts"
    )
    return {
        "Content-Security-Policy": policy,
        "Cache-Control": "private, max-age=86400",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def _inline_hashes(content, tag):
    """The CSP sources of the page's ``<tag>`` elements without attributes, by their SHA-256
    (a ``<script type="application/json">`` holds data, which is not run)."""
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", content, flags=re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(body.encode()).digest()) for body in bodies)
    return " ".join(f"'sha256-{digest.decode()}'" for digest in digests) or "'none'"
