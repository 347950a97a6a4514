"""The service's FastAPI application: `create_app(settings)`; `repalign serve` runs it."""

from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy import text

import repalign
from repalign.tracking import prepare_store
from services import crud, job_pages, page
from services.api.deps import require_token
from services.api.routes import jobs, results, schedules
from services.api.schemas import SPEC_TAGS, JobPublic, Problem, Progress
from services.db import JobStatus, open_database
from services.mlflow_links import run_link
from services.runner import JobRunner
from services.scheduler import Scheduler


class ServiceState:
    """What the handlers share: settings, the database, the job runner and the scheduler."""

    def __init__(self, settings):
        self.settings = settings
        self.token_hashes = settings.token_hashes
        self.engine, self.sessions = open_database(settings.database)
        prepare_store(settings.tracking)
        self.runner = JobRunner(self.sessions, settings)
        self.scheduler = Scheduler(self.sessions, settings, self.runner)
        self.metrics = ServiceMetrics(self)

    def public(self, job):
        record = JobPublic.model_validate(job)
        if job.status == JobStatus.RUNNING:
            report = self.runner.progress(job.id)
            if report is not None:
                total = report.get("total")
                record.progress = Progress(
                    **report, fraction=report["done"] / total if total else None
                )
        if job.mlflow_run_id:
            record.mlflow_link = run_link(self.settings.tracking, job.mlflow_run_id)
        return record


def create_app(settings):
    """The application for ``settings``: starts the job runner and the scheduler with it."""

    @asynccontextmanager
    async def lifespan(app):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        service = ServiceState(settings)
        app.state.service = service
        service.runner.start()
        service.scheduler.start()
        yield
        service.scheduler.stop()
        service.runner.stop()
        service.engine.dispose()

    app = FastAPI(
        title="repalign",
        version=repalign.__version__,
        summary="Submit model-zoo alignment and stitching jobs, query results, schedule runs.",
        lifespan=lifespan,
        responses={422: {"model": Problem, "description": "The request names a bad field"}},
    )
    api = APIRouter(prefix="/v1")
    for module in (jobs, results, schedules):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(page.router)
    app.include_router(job_pages.router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        """422 with one line naming each field at fault, as the service's other errors."""
        problems = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        limit = settings.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return _too_large(limit)
        if request.method in ("POST", "PUT", "PATCH") and length is None:
            body = await request.body()  # chunked: count what arrives
            if len(body) > limit:
                return _too_large(limit)
        return await call_next(request)

    @app.get("/healthz", tags=["health"])
    def healthz(request: Request):
        with request.app.state.service.sessions() as session:
            session.execute(text("select 1"))
        return {"status": "ok"}

    @app.get("/metrics", tags=["health"], dependencies=[Depends(require_token)])
    def metrics(request: Request):
        """Prometheus metrics: jobs by status, the most jobs that ran at once, schedules."""
        return PlainTextResponse(request.app.state.service.metrics.render())

    return app


def _field(location):
    """A validation error's location as a spec names a field (``measures.0.k``): without the
    part of the request it is in, nor the tag of the kind of spec."""
    parts = [str(p) for p in location[1:] if p not in SPEC_TAGS]
    return ".".join(parts) or str(location[0])


def _too_large(limit):
    return JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)


class ServiceMetrics:
    """Prometheus gauges of one service, read from the database when scraped."""

    def __init__(self, service):
        self.service = service
        self.registry = CollectorRegistry()
        self.jobs = Gauge("repalign_jobs", "jobs by status", ["status"], registry=self.registry)
        self.peak = Gauge("repalign_running_peak", "most jobs running at once",
                          registry=self.registry)  # fmt: skip
        self.schedules = Gauge("repalign_schedules", "schedules", registry=self.registry)

    def render(self):
        with self.service.sessions() as session:
            for status, count in crud.jobs_by_status(session).items():
                self.jobs.labels(status.value).set(count)
            self.schedules.set(crud.count_schedules(session))
        self.peak.set(self.service.runner.peak_running)
        return generate_latest(self.registry)
