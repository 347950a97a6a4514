"""What an MLflow run says about itself, so that a person can find it: a name that says what
ran, on which store and when, and tags naming the code and the data.

A run's name is its parts joined by " · " (`run_name`):

    <experiment> · <kind> · <store folder's name> · <YYYY-MM-DD HH:MM> UTC

e.g. ``digits-zoo · alignment · zoo-digits · 2026-01-15 02:00 UTC``. Its tags:

    repalign.version         the version of repalign that ran the job
    repalign.git_commit      the commit checked out where repalign's code lies, when it runs
                             from a git checkout (absent otherwise)
    repalign.store_digest    the store's digest (`store_digest`): equal digests, equal data
    repalign.configurations  the measure configurations of an alignment run's table

Nothing here imports MLflow: a job computes its tags while its logging child waits
(`jobs.uploader`).
"""

import datetime
import functools
import hashlib
import json
import subprocess
from pathlib import Path

from repalign import __version__

VERSION_TAG = "repalign.version"
COMMIT_TAG = "repalign.git_commit"
STORE_DIGEST_TAG = "repalign.store_digest"
CONFIGURATIONS_TAG = "repalign.configurations"
SEPARATOR = " · "


def run_name(experiment, kind, store=None, moment=None):
    """A run's name: ``experiment · kind · store folder's name · YYYY-MM-DD HH:MM UTC``.

    Parameters
    ----------
    experiment : str
    kind : str
        What ran: "alignment", "stitching", "nightly", "schedule <id>".
    store : path-like, default=None
        The store the job read; only its last part is shown. None leaves the part out.
    moment : datetime.datetime, default=None
        When the job ran, shown in UTC to the minute (`utc`). None leaves the part out.

    Returns
    -------
    str
    """
    parts = [experiment, kind]
    if store is not None:
        parts.append(Path(store).name or str(store))
    if moment is not None:
        parts.append(f"{utc(moment):%Y-%m-%d %H:%M} UTC")
    return SEPARATOR.join(parts)


def utc(moment):
    """``moment`` (a `datetime.datetime`) in UTC; a time without a time zone is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def code_tags():
    """The tags naming the code that runs: `VERSION_TAG`, and `COMMIT_TAG` when repalign's
    package folder is tracked by a git checkout (`git_commit`)."""
    tags = {VERSION_TAG: __version__}
    commit = git_commit()
    if commit is not None:
        tags[COMMIT_TAG] = commit
    return tags


@functools.cache
def git_commit():
    """The commit (``git rev-parse HEAD``) of the checkout that tracks repalign's own files, or
    None: git is not installed, the package is not in a checkout, or it lies in one that does
    not track it (an installed copy inside another project's folder)."""
    folder = Path(__file__).resolve().parent
    try:
        tracked = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "--error-unmatch", "__init__.py"],
            capture_output=True,
            timeout=10,
        )
        if tracked.returncode != 0:
            return None
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() if head.returncode == 0 else None


def store_digest(digests):
    """The digest of a store: the SHA-256 of its representations' digests.

    Parameters
    ----------
    digests : dict
        Every representation's name -> what identifies its content, as JSON values (the jobs
        give `jobs.alignment.representation_digest`: its ids' and its shards' SHA-256s).

    Returns
    -------
    str
        64 hex digits; the same for the same digests in any order.
    """
    content = json.dumps(digests, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()
