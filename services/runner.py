"""Running queued jobs as processes of the ``repalign`` command line, a bounded number at once.

Each job gets a folder ``<state>/jobs/<id>/`` with its spec (``spec.json``, its ``out`` set to
``out/`` beside it), its log (``log.txt``: the command's stdout and stderr) and its outputs.
Where the command runs is the launcher's business (`services.launchers`): a process of this
machine by default, or a Ray job submitted through the Ray Jobs API when the service's Ray
address is a dashboard URL.

Every change of state is committed to the database before it takes effect: a job is marked
running before its process starts, so a service that dies leaves it "running". On the next
start `JobRunner.recover` stops any process left from it and settles the job from what its
output folder holds: complete results are kept (their MLflow upload finished if need be), and a
job stopped before its results were complete is queued again, noting why. No job is forgotten,
and none logs its run twice.
"""

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from repalign.contract import (
    PENDING_UPLOAD_FILE,
    PROGRESS_FILE_ENV,
    job_arguments,
    job_command,
    recorded_run_id,
)
from repalign.tracking import without_password
from services import crud
from services.db import Job, JobStatus, now
from services.launchers import LocalLauncher, RayJobsLauncher, end_group

POLL_SECONDS = 0.2
LOG = logging.getLogger(__name__)


class JobRunner:
    """Starts queued jobs in order of submission, at most ``settings.max_running`` at once."""

    def __init__(self, sessions, settings):
        self.sessions, self.settings = sessions, settings
        self.handles = {}  # job id -> the launcher's handle of its running command
        address = settings.ray_address or ""
        jobs_api = address.startswith(("http://", "https://"))
        if jobs_api:
            self.launcher = RayJobsLauncher(address)
        else:
            self.launcher = LocalLauncher(settings.state_dir.resolve())
        self.peak_running = 0
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def folder(self, job_id):
        return self.settings.state_dir.resolve() / "jobs" / job_id

    def out(self, job_id):
        """The output folder the job's command writes to: its spec's ``out``."""
        return self.folder(job_id) / "out"

    # -- life cycle ----------------------------------------------------------------------------

    def start(self):
        self.recover()
        self._thread.start()

    def stop(self):
        """Stop starting jobs; the running ones go on and are found again by `recover`."""
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def recover(self):
        """Settle the jobs a previous service left running. A Ray job that the cluster still
        runs is followed again. Any other is stopped (`_settle_stopped`): one whose results
        were complete succeeded, with its MLflow run logged once; the rest are queued again."""
        with self.sessions.begin() as session:
            for job in crud.jobs_with_status(session, JobStatus.RUNNING):
                handle = self.launcher.find(_submission_id(job), job.pid)
                if handle is not None:
                    self.handles[job.id] = handle
                    self._append_log(job.id, "[service] followed again after a restart\n")
                    continue
                if job.pid is not None and _is_job_process(job.pid):
                    end_group(job.pid)
                self._settle_stopped(job)

    def _settle_stopped(self, job):
        """Settle a job of an earlier service whose command no longer runs, from its output
        folder (`repalign.contract`): a job writes its results, then its pending upload, logs
        it, and writes its run record last.

        - A run record: the job succeeded.
        - A pending upload: the results are complete, and the job was stopped before, while or
          after logging them. ``repalign sync`` finishes the upload, keeping a run the job had
          finished rather than logging it twice. If the tracking server cannot be reached,
          the upload stays pending, as a job that met it down leaves it.
        - Neither: the job is queued again.
        """
        out = self.out(job.id)
        if recorded_run_id(out) is None and (out / PENDING_UPLOAD_FILE).exists():
            self._append_log(job.id, "[service] results complete; finishing their upload\n")
            with open(self.folder(job.id) / "log.txt", "ab") as log:
                command = job_command(["sync", str(out)], python=sys.executable)
                subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
        if recorded_run_id(out) is not None or (out / PENDING_UPLOAD_FILE).exists():
            job.status, job.finished_at, job.pid = JobStatus.SUCCEEDED, now(), None
            job.mlflow_run_id = recorded_run_id(out)
            return
        job.status, job.pid, job.started_at = JobStatus.QUEUED, None, None
        job.error = f"queued again: the service stopped while attempt {job.attempts} ran"
        self._append_log(job.id, f"[service] {job.error}\n")

    def wake(self):
        self._wake.set()

    # -- what the API asks ---------------------------------------------------------------------

    def cancel(self, job_id):
        """Cancel a queued or running job; returns its status afterwards."""
        with self._lock, self.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job.status in crud.ACTIVE:
                handle = self.handles.pop(job_id, None)
                if handle is not None:
                    handle.stop()
                job.status, job.finished_at, job.pid = JobStatus.CANCELLED, now(), None
                self._append_log(job_id, "[service] cancelled\n")
            return job.status

    def progress(self, job_id):
        """The running job's last progress report: ``{"stage", "done", "total"}`` or None."""
        try:
            return json.loads((self.folder(job_id) / "progress.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def log(self, job_id):
        """The job's log: its file, and for a running Ray job what the cluster has so far."""
        path = self.folder(job_id) / "log.txt"
        text = path.read_text(errors="replace") if path.exists() else ""
        handle = self.handles.get(job_id)
        text += (handle.logs() or "") if handle is not None else ""
        return without_password(text, self.settings.tracking)  # it went on the command line

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self):
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._reap()
                    self._launch()
            except Exception:  # a database or cluster hiccup must not stop the runner for good
                LOG.exception("job runner: this round failed; trying again")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _launch(self):
        with self.sessions.begin() as session:
            free = self.settings.max_running - crud.count_running(session)
            if free <= 0:
                return
            queued = crud.next_queued(session, free)
            for job in queued:
                job.status, job.started_at, job.error = JobStatus.RUNNING, now(), None
                job.attempts += 1
        for job in queued:
            try:
                handle = self._spawn(job)
            except Exception as exc:  # the job's command could not be started at all
                with self.sessions.begin() as session:
                    failed = session.get(Job, job.id)
                    failed.status, failed.finished_at = JobStatus.FAILED, now()
                    failed.error = self._public(f"could not start: {type(exc).__name__}: {exc}")
                continue
            self.handles[job.id] = handle
            with self.sessions.begin() as session:
                session.get(Job, job.id).pid = handle.pid
        self.peak_running = max(self.peak_running, len(self.handles))

    def _spawn(self, job):
        job_id, kind, spec, previous = job.id, job.kind, job.spec, job.previous_job_id
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.json").write_text(json.dumps({**spec, "out": str(self.out(job_id))}))
        joins_cluster = self.settings.ray_address and isinstance(self.launcher, LocalLauncher)
        arguments = job_arguments(
            kind,
            folder / "spec.json",
            tracking_uri=self.settings.tracking,
            ray_address=self.settings.ray_address if joins_cluster else None,
            out=self.out(job_id),
            threshold=job.threshold,
            previous=self.out(previous) if previous else None,
            schedule=job.schedule_id,
            date=job.created_at,  # when the schedule fired: the night, however late it runs
        )
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            PROGRESS_FILE_ENV: str(folder / "progress.json"),
        }
        env.pop("RAY_ADDRESS", None)
        with open(folder / "log.txt", "ab") as log:
            command = " ".join(job_command(arguments, python=sys.executable))
            log.write(f"[service] attempt started: {command}\n".encode())
            log.flush()
            return self.launcher.start(_submission_id(job), arguments, env, log)

    def _reap(self):
        for job_id, handle in list(self.handles.items()):
            code = handle.poll()
            if code is None:
                continue
            del self.handles[job_id]
            logs = handle.logs()
            if logs:
                self._append_log(job_id, logs)
            with self.sessions.begin() as session:
                job = session.get(Job, job_id)
                if job.status != JobStatus.RUNNING:
                    continue
                job.finished_at, job.pid = now(), None
                if code == 0:
                    job.status = JobStatus.SUCCEEDED
                    job.mlflow_run_id = recorded_run_id(self.out(job_id))
                else:
                    job.status = JobStatus.FAILED
                    job.error = f"exit status {code}: {self._last_words(job_id)}"

    def _last_words(self, job_id):
        """The last line the job's command wrote (its error message, or a traceback's last
        line), as `_public` shows it; the log at ``/v1/jobs/{id}/logs`` has the rest."""
        lines = [
            line.strip()
            for line in self.log(job_id).splitlines()
            if line.strip() and not line.startswith("[service]")
        ]
        return self._public(lines[-1] if lines else "the command wrote nothing")

    def _public(self, text):
        """``text`` with the server's folders named rather than spelled out: the store roots
        as ``<store root>``, the state folder as ``<state>``, the Python as ``python``."""
        folders = {str(root): "<store root>" for root in self.settings.store_roots}
        folders[str(self.settings.state_dir.resolve())] = "<state>"
        folders[sys.executable] = "python"
        for folder in sorted(folders, key=len, reverse=True):
            text = text.replace(folder, folders[folder])
        return text

    def _append_log(self, job_id, line):
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "log.txt", "a") as log:
            log.write(line)


def _submission_id(job):
    return f"repalign-{job.id}-{job.attempts}"


def _is_job_process(pid):
    """Is ``pid`` still a job process of ours (not a process that reused the number)?"""
    try:
        return b"repalign" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
