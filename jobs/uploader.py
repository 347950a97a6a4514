"""A job command's MLflow logging, in a child process that imports MLflow while the job runs.

Logging a run takes MLflow and its SQL store: about 2 s of imports on one core, which a job
command used to add after its results were written, and which is most of a small job's time.
So a job command starts the child first (`Uploader`), before it reads its spec (pydantic),
checks the job or imports the job's own modules, and draws the run's heatmaps itself
(`repalign.heatmap_files`) while the child imports. The child, ``python -m jobs.uploader
COMMAND``, with the tracking URI in its environment (``MLFLOW_TRACKING_URI``, not on its
command line, which any user of the machine can read), imports those modules, opens the
default store if it will log there and it exists (`repalign.tracking.open_default_store_ahead`),
and waits on its input. When the results are in OUT, `Uploader.log` sends what to log, OUT
with it, and waits: the child logs as a command always has (`log_results`: the pending record
first, then the run) and prints the run's id, which the command prints, and the command takes
the child's exit status. If the job fails, or its spec is refused, `Uploader.cancel` stops the
child, which had written nothing.

A thread cannot do this: the imports hold the GIL for seconds, which the job's own Python then
waits for. The child takes a core from the job while it imports instead (docs/design.md §6).
"""

import datetime
import json
import os
import subprocess
import sys

NICENESS = 10
"""The child's niceness: its imports take a core when the job leaves one idle."""
TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
"""Where the child finds the tracking URI; unset: the default store (`log_results`)."""


class Uploader:
    """The logging child of one job command.

    Parameters
    ----------
    command : str
        The ``repalign`` subcommand, for the child's error messages.
    tracking_uri : str or None
        Where to log; None: where MLflow itself would (`log_results`).

    Used as a context manager around the job: an exception cancels the child.
    """

    def __init__(self, command, tracking_uri):
        self.started = datetime.datetime.now(datetime.UTC)  # the job's time, in its run's name
        environment = dict(os.environ)
        environment.pop(TRACKING_URI_VARIABLE, None)
        if tracking_uri is not None:
            environment[TRACKING_URI_VARIABLE] = tracking_uri
        self._child = subprocess.Popen(
            [sys.executable, "-m", "jobs.uploader", command],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None:
            self.cancel()

    def log(
        self,
        job,
        *,
        out,
        experiment,
        store,
        plan=None,
        schedule=None,
        moment=None,
        heatmaps=None,
    ):
        """Have the child log the job whose results are in ``out`` (see `log_results`; MLflow's
        own log lines go to its libraries.log), and write what it printed to this process's
        `sys.stdout` and `sys.stderr`; returns its exit status (0: logged, or kept pending for
        `repalign sync`).

        The run's tags (`job_tags`) are taken here, from the ``store`` the job read and the
        code that ran it. ``moment`` is when the job ran (default: when this uploader was
        made, at its start), or for a nightly run the night it stands for; ``schedule`` and
        ``plan`` are a nightly run's, ``heatmaps`` the folder in OUT where the command drew
        the heatmaps (`jobs.sync.record_pending`)."""
        request = {
            "out": str(out),
            "job": job,
            "experiment": experiment,
            "plan": plan,
            "moment": (moment or self.started).isoformat(),
            "tags": job_tags(store),
            "schedule": schedule,
            "heatmaps": heatmaps,
        }
        printed, errors = self._child.communicate(json.dumps(request) + "\n")
        sys.stdout.write(printed)
        sys.stderr.write(errors)
        return self._child.returncode

    def cancel(self):
        """Stop the child (the job failed, or the command was interrupted). Before `log` it has
        written nothing; during it, an interrupted upload stays pending, as after any crash
        (`jobs.sync`)."""
        if self._child.poll() is None:
            self._child.kill()
            self._child.wait()


def job_tags(store):
    """The tags of a job's run that only the job can know: the code that ran it
    (`repalign.provenance.code_tags`) and the digest of the store it read, from its
    representations' manifests (`jobs.alignment.representation_digest`)."""
    from jobs.alignment import representation_digest
    from repalign.provenance import STORE_DIGEST_TAG, code_tags, store_digest
    from repalign.store import open_store

    representations = open_store(store).representations
    digests = {name: representation_digest(r) for name, r in representations.items()}
    return {**code_tags(), STORE_DIGEST_TAG: store_digest(digests)}


def log_results(
    out,
    job,
    *,
    tracking_uri,
    experiment,
    plan=None,
    moment=None,
    tags=None,
    schedule=None,
    heatmaps=None,
):
    """Log the job whose results are in ``out`` (`jobs.sync`); with no ``tracking_uri``, where
    MLflow itself would (`repalign.tracking.default_store`: mlflow.db in the working folder).
    Writes OUT/run.json with the run id and the tracking URI, for callers such as the service.
    If the tracking server cannot be reached, says so and leaves OUT/pending-upload.json for
    `repalign sync`. ``plan``, ``moment``, ``tags``, ``schedule`` and ``heatmaps`` go into the
    record as `jobs.sync.record_pending` says."""
    from jobs.sync import UploadPending, record_pending, upload, use_short_retries
    from repalign.tracking import default_store, public_uri

    artifacts = None
    if tracking_uri is None:
        tracking_uri, artifacts = default_store()
    use_short_retries()
    record_pending(
        out,
        job,
        tracking_uri=tracking_uri,
        experiment=experiment,
        artifact_location=artifacts,
        plan=plan,
        moment=moment,
        tags=tags,
        schedule=schedule,
        heatmaps=heatmaps,
    )
    try:
        run_id, tracking_uri = upload(out)
    except UploadPending as exc:
        print(f"MLflow run pending upload: {exc}")
        return
    print(f"MLflow run {run_id} in experiment {experiment!r} at {public_uri(tracking_uri)}")


def main(command):
    """The child: import, open the default store ahead, wait for the request on stdin, log; no
    request (the command's end of the pipe closed) logs nothing. The libraries' loggers go to
    OUT/libraries.log once the request names OUT, before a new store is made and its migrations
    log anything; importing and opening a store that exists log nothing."""
    from jobs.outputs import log_libraries_to
    from repalign.errors import RepalignError
    from repalign.tracking import import_store_modules, open_default_store_ahead

    os.nice(NICENESS)
    import_store_modules()
    tracking_uri = os.environ.get(TRACKING_URI_VARIABLE)
    if tracking_uri is None:
        open_default_store_ahead()
    line = sys.stdin.readline()
    if not line:
        return 0
    request = json.loads(line)
    out = request.pop("out")
    log_libraries_to(out)
    try:
        log_results(out, tracking_uri=tracking_uri, **request)
    except RepalignError as exc:
        print(f"repalign {command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    status = main(*sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Without the interpreter's teardown of MLflow's thousands of modules, about 0.5 s: what
    # this child wrote is on disk (SQLite commits, artifact files) and nothing runs at exit.
    os._exit(status)
