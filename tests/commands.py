"""The ``repalign`` command line as a subprocess, as a user runs it."""

import os
import subprocess
import sys

INHERITED_JOB_SETTINGS = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")
"""Variables a job must not inherit from the test run: it uses what its arguments say."""


def job_environment(**variables):
    """This process's environment without `INHERITED_JOB_SETTINGS`, with ``variables`` set
    (a variable given as None is removed)."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_JOB_SETTINGS}
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def repalign_command(*args):
    """``python -m repalign ARGS`` with this interpreter."""
    return [sys.executable, "-m", "repalign", *args]


def run_repalign(*args, cwd=None, env=None):
    """Run ``repalign ARGS`` to its end (10 minutes at most), capturing its output as text."""
    return subprocess.run(
        repalign_command(*args), capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
