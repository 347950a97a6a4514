"""What the API and the status page show of the MLflow tracking URI: never the password that
it may hold (`repalign.tracking.public_uri`)."""

import urllib.parse

from repalign.tracking import public_uri


def run_link(tracking_uri, run_id):
    """The page of MLflow run ``run_id`` in the tracking server's UI, or None when the
    tracking URI is not a server (a SQLite file, a database)."""
    base = public_uri(tracking_uri)
    if not base.startswith(("http://", "https://")):
        return None
    return f"{base.rstrip('/')}/#/runs/{urllib.parse.quote(run_id, safe='')}"
