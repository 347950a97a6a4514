"""A stand-in for the ``repalign`` job command, for the service's tests of its queue, runner,
restart and cancel, where what a job computes does not matter but starting Ray for each would
cost seconds.

Run as ``python tests/stand_in_repalign.py ARGUMENTS``, with the arguments the service gives
``python -m repalign`` (`repalign.contract.job_arguments`) and the environment it gives a
job; ``$STAND_IN_SECONDS`` is how long the stand-in takes (1 s unless set). Like a job, it
keeps a process beside it in its process group (as Ray's processes are), reports progress
through ``$REPALIGN_PROGRESS_FILE`` once per step, then writes ``run.json`` into the spec's
output folder with a new run id and exits 0. Then it appends the run id to
``$STAND_IN_LEDGER`` (when set): the runs that finished, as the MLflow store would list them.
With ``$STAND_IN_FAILS`` set, it instead fails as a job that cannot reach its tracking server
does: its last line names the tracking URI it was given, and it exits 1. With
``$STAND_IN_HANGS`` set, it goes as far as a real job that is stopped between marking its
MLflow run FINISHED and writing ``run.json``: it records a pending upload
(`jobs.sync.record_pending`), logs that upload's run, FINISHED, to the tracking URI it was
given, appends the run id to the ledger, and then waits to be stopped.
A stand-in stopped before the end leaves neither. Its name holds "repalign", as the service's
check of a job process's command line (`services.runner`) expects.

`StandInLauncher` is the service's local launcher with this script in place of
``python -m repalign``; `serve` is ``repalign serve`` with it, for a service run as a process.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from repalign.contract import PROGRESS_FILE_ENV, RUN_FILE, atomic_write
from services.launchers import LocalJob, LocalLauncher

SCRIPT = Path(__file__).resolve()
STAGE = "stand-in"
STEPS = 4
SECONDS_ENV = "STAND_IN_SECONDS"  # how long a job takes, default 1 s
LEDGER_ENV = "STAND_IN_LEDGER"
FAILS_ENV = "STAND_IN_FAILS"
HANGS_ENV = "STAND_IN_HANGS"


class StandInLauncher(LocalLauncher):
    """Starts this script where the service's local launcher starts ``python -m repalign``."""

    def start(self, submission_id, arguments, env, log):
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.folder,
            start_new_session=True,
        )
        return LocalJob(process)


def serve(arguments):
    """``repalign serve ARGUMENTS``, its jobs run by `StandInLauncher`; the exit status."""
    import services.runner
    from repalign.cli import main as repalign

    services.runner.LocalLauncher = StandInLauncher
    return repalign(["serve", *arguments])


def main(arguments):
    spec = json.loads(Path(arguments[1]).read_text())
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    beside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    seconds = float(os.environ.get(SECONDS_ENV, "1"))
    for done in range(STEPS + 1):
        if PROGRESS_FILE_ENV in os.environ:
            with atomic_write(os.environ[PROGRESS_FILE_ENV]) as temporary:
                temporary.write_text(json.dumps({"stage": STAGE, "done": done, "total": STEPS}))
        if done < STEPS:
            time.sleep(seconds / STEPS)
    if FAILS_ENV in os.environ:
        beside.kill()
        beside.wait()
        print(f"the tracking server at {arguments[3]} could not be reached", flush=True)
        return 1
    if HANGS_ENV in os.environ:
        _append_to_ledger(_log_finished_upload(out, arguments[3], spec["experiment"]))
        time.sleep(3600)
    run_id = uuid.uuid4().hex
    with atomic_write(out / RUN_FILE) as temporary:
        temporary.write_text(json.dumps({"run_id": run_id, "tracking_uri": arguments[3]}))
    _append_to_ledger(run_id)
    beside.kill()
    beside.wait()
    print(f"stand-in {arguments[0]} finished: run {run_id}", flush=True)
    return 0


def _log_finished_upload(out, tracking_uri, experiment):
    """Record a pending upload in ``out`` and log its run, FINISHED, as `jobs.sync.upload`
    would before writing run.json; the run id."""
    from mlflow import MlflowClient

    from jobs.sync import record_pending
    from repalign.contract import PENDING_UPLOAD_FILE
    from repalign.tracking import UPLOAD_TAG

    record_pending(out, "alignment", tracking_uri=tracking_uri, experiment=experiment)
    upload = json.loads((out / PENDING_UPLOAD_FILE).read_text())["upload"]
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run_id = client.create_run(experiment_id, tags={UPLOAD_TAG: upload}).info.run_id
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _append_to_ledger(run_id):
    if LEDGER_ENV in os.environ:
        with open(os.environ[LEDGER_ENV], "a") as ledger:
            ledger.write(run_id + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
