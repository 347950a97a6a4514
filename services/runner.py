"""Running queued jobs as processes of the ``repalign`` command line, a bounded number at once.

Each job gets a folder ``<state>/jobs/<id>/`` with its spec (``spec.json``, its ``out`` set to
``out/`` beside it), its log (``log.txt``: the command's stdout and stderr) and its outputs.
A job's process is started in a session of its own, so that cancelling it stops the whole
process group (its Ray workers included).

Every change of state is committed to the database before it takes effect: a job is marked
running before its process starts, so a service that dies leaves it "running". On the next
start `JobRunner.recover` stops any process left from it and queues it again, noting why: no job
is forgotten, and none finishes twice.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from services.db import Job, now

LOG_TAIL_BYTES = 4000
POLL_SECONDS = 0.2
STOP_SECONDS = 10.0  # a cancelled job's processes get this long to end before SIGKILL
COMMANDS = {"alignment": "run", "stitching": "stitch", "nightly": "nightly"}
PROGRESS_ENV = "REPALIGN_PROGRESS_FILE"  # where a job's command reports its progress


class JobRunner:
    """Starts queued jobs in order of submission, at most ``settings.max_running`` at once."""

    def __init__(self, sessions, settings):
        self.sessions, self.settings = sessions, settings
        self.processes = {}  # job id -> subprocess.Popen
        self.peak_running = 0
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def folder(self, job_id):
        return self.settings.state_dir.resolve() / "jobs" / job_id

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
        """Settle the jobs a previous service left running: a job whose command had finished
        (its run record is written last) succeeded; any other is stopped and queued again."""
        with self.sessions.begin() as session:
            for job in session.scalars(select(Job).where(Job.status == "running")):
                alive = job.pid is not None and _is_job_process(job.pid)
                run_id = _run_id(self.folder(job.id) / "out")
                if not alive and run_id is not None:
                    job.status, job.finished_at, job.mlflow_run_id = "succeeded", now(), run_id
                    job.pid = None
                    continue
                if alive:
                    _stop_group(job.pid)
                job.status, job.pid, job.started_at = "queued", None, None
                job.error = f"queued again: the service stopped while attempt {job.attempts} ran"
                self._append_log(job.id, f"[service] {job.error}\n")

    def wake(self):
        self._wake.set()

    # -- what the API asks ---------------------------------------------------------------------

    def cancel(self, job_id):
        """Cancel a queued or running job; returns its status afterwards."""
        with self._lock, self.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job.status in ("queued", "running"):
                process = self.processes.pop(job_id, None)
                if process is not None:
                    _end_group(process)
                job.status, job.finished_at, job.pid = "cancelled", now(), None
                self._append_log(job_id, "[service] cancelled\n")
            return job.status

    def progress(self, job_id):
        """The running job's last progress report: ``{"stage", "done", "total"}`` or None."""
        try:
            return json.loads((self.folder(job_id) / "progress.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def log(self, job_id):
        path = self.folder(job_id) / "log.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self):
        while not self._stop.is_set():
            with self._lock:
                self._reap()
                self._launch()
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _launch(self):
        with self.sessions.begin() as session:
            running = session.scalar(select(func.count()).where(Job.status == "running"))
            free = self.settings.max_running - running
            if free <= 0:
                return
            queued = session.scalars(
                select(Job).where(Job.status == "queued").order_by(Job.created_at).limit(free)
            ).all()
            for job in queued:
                job.status, job.started_at, job.error = "running", now(), None
                job.attempts += 1
            started = [(job.id, job.kind, job.spec, job) for job in queued]
        for job_id, kind, spec, job in started:
            process = self._spawn(job_id, kind, spec, job.previous_job_id, job.threshold)
            self.processes[job_id] = process
            with self.sessions.begin() as session:
                session.get(Job, job_id).pid = process.pid
        self.peak_running = max(self.peak_running, len(self.processes))

    def _spawn(self, job_id, kind, spec, previous, threshold):
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.json").write_text(json.dumps({**spec, "out": str(folder / "out")}))
        command = [sys.executable, "-m", "repalign", COMMANDS[kind], str(folder / "spec.json")]
        command += ["--tracking-uri", self.settings.tracking, "--quiet"]
        if self.settings.ray_address:
            command += ["--ray-address", self.settings.ray_address]
        if kind == "nightly":
            command += ["--out", str(folder / "out"), "--threshold", str(threshold)]
            if previous:
                command += ["--previous", str(self.folder(previous) / "out")]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PROGRESS_ENV: str(folder / "progress.json")}
        env.pop("RAY_ADDRESS", None)
        with open(folder / "log.txt", "ab") as log:
            log.write(f"[service] attempt started: {' '.join(command)}\n".encode())
            log.flush()
            return subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def _reap(self):
        for job_id, process in list(self.processes.items()):
            code = process.poll()
            if code is None:
                continue
            del self.processes[job_id]
            with self.sessions.begin() as session:
                job = session.get(Job, job_id)
                if job.status != "running":
                    continue
                job.finished_at, job.pid = now(), None
                if code == 0:
                    job.status = "succeeded"
                    job.mlflow_run_id = _run_id(self.folder(job_id) / "out")
                else:
                    job.status = "failed"
                    job.error = f"exit status {code}: {self._log_tail(job_id)}"

    def _log_tail(self, job_id):
        text = self.log(job_id)
        return text[-LOG_TAIL_BYTES:].strip()

    def _append_log(self, job_id, line):
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "log.txt", "a") as log:
            log.write(line)


def _run_id(out):
    """The MLflow run id a finished command wrote into OUT/run.json (or nightly.json)."""
    for name in ("run.json", "nightly.json"):
        path = Path(out) / name
        if path.exists():
            return json.loads(path.read_text()).get("run_id")
    return None


def _is_job_process(pid):
    """Is ``pid`` still a job process of ours (not a process that reused the number)?"""
    try:
        return b"repalign" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _end_group(process):
    """Stop a job's whole process group (its command and the Ray processes it started):
    SIGTERM, then SIGKILL for whatever is left after `STOP_SECONDS`."""
    _stop_group(process.pid)
    deadline = time.monotonic() + STOP_SECONDS
    try:
        process.wait(timeout=STOP_SECONDS)
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)  # raises once every member has exited
            time.sleep(0.05)
    except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
        pass
    _stop_group(process.pid, signal.SIGKILL)
    process.wait()


def _stop_group(pid, sig=signal.SIGTERM):
    """Signal a job's process group; a group that is already gone is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
