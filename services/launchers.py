"""Where a job's command runs: a process of this machine, or a Ray job of a cluster.

`LocalLauncher` (the default) starts ``repalign run|stitch|nightly ...`` as a process in a
session of its own; jobs that use Ray start a local one, or join ``--ray-address``.
`RayJobsLauncher` (when the service's Ray address is a dashboard URL, ``http://head:8265``)
submits the same command through the Ray Jobs API: the cluster runs it, and the service
follows it by its submission id, so a restarted service finds it again. The job's folder must
then be on storage that the cluster's head node shares (the spec's store and out paths are
read there as they are written here).

A handle has ``poll()`` (None while running, else an exit status), ``stop()`` and ``pid``
(None for a Ray job).
"""

import os
import shlex
import signal
import subprocess
import sys
import time

from repalign.contract import PROGRESS_FILE_ENV, job_command

STOP_SECONDS = 10.0  # a cancelled job's processes get this long to end before SIGKILL
TERMINAL = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 1}


class LocalLauncher:
    """Jobs as processes of this machine, run in the service's state folder: a SQLite tracking
    store's default artifact root, ./mlruns, is then beside its mlflow.db, as MLflow lays them
    out, and not wherever the service was started."""

    def __init__(self, folder):
        self.folder = folder

    def start(self, submission_id, arguments, env, log):
        """Start ``python -m repalign ARGUMENTS`` (`repalign.contract.job_arguments`) with
        this service's Python."""
        process = subprocess.Popen(
            job_command(arguments, python=sys.executable),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.folder,
            start_new_session=True,
        )
        return LocalJob(process)

    def find(self, submission_id, pid):
        """A job started by an earlier service: a local process cannot be followed again."""
        return None


class LocalJob:
    def __init__(self, process):
        self.process, self.pid = process, process.pid

    def poll(self):
        return self.process.poll()

    def stop(self):
        """Stop the whole process group: the command and the Ray processes it started."""
        end_group(self.pid, leader=self.process)

    def logs(self):
        return None  # the process writes the job's log file itself


class RayJobsLauncher:
    """Jobs as Ray jobs of the cluster whose dashboard is at ``address``."""

    def __init__(self, address):
        from ray.job_submission import JobSubmissionClient

        self.client = JobSubmissionClient(address)

    def start(self, submission_id, arguments, env, log):
        """Submit ``python -m repalign ARGUMENTS`` with the cluster's Python; of ``env``, only
        the progress variable goes with it."""
        self.client.submit_job(
            entrypoint=shlex.join(job_command(arguments, python="python")),
            submission_id=submission_id,
            runtime_env={"env_vars": {k: env[k] for k in (PROGRESS_FILE_ENV,) if k in env}},
        )
        log.write(f"[service] submitted to the Ray cluster as {submission_id}\n".encode())
        return RayJob(self.client, submission_id)

    def find(self, submission_id, pid):
        """The Ray job an earlier service submitted, if the cluster still knows it."""
        try:
            self.client.get_job_status(submission_id)
        except RuntimeError:
            return None
        return RayJob(self.client, submission_id)


class RayJob:
    pid = None

    def __init__(self, client, submission_id):
        self.client, self.submission_id = client, submission_id

    def poll(self):
        status = str(self.client.get_job_status(self.submission_id)).rsplit(".", 1)[-1]
        return TERMINAL.get(status)

    def stop(self):
        self.client.stop_job(self.submission_id)
        deadline = time.monotonic() + STOP_SECONDS
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)

    def logs(self):
        return self.client.get_job_logs(self.submission_id)


def stop_group(pid, sig=signal.SIGTERM):
    """Signal a job's process group; a group that is already gone is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(pid, leader=None):
    """End a job's process group: SIGTERM, then SIGKILL for whatever is left after
    `STOP_SECONDS`. ``leader``: the group leader's `subprocess.Popen` when this process started
    it (it is reaped, so that the group empties); a job an earlier service started has been
    adopted, and is reaped by the system."""
    stop_group(pid)
    deadline = time.monotonic() + STOP_SECONDS
    try:
        if leader is not None:
            leader.wait(timeout=STOP_SECONDS)
        while time.monotonic() < deadline:
            os.killpg(pid, 0)  # raises once every member has exited
            time.sleep(0.05)
    except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
        pass
    stop_group(pid, signal.SIGKILL)
    if leader is not None:
        leader.wait()
