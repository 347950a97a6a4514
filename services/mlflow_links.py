"""What the API and the status page show of the MLflow tracking URI: never the password that
it may hold (``http://user:secret@host``, ``postgresql://user:secret@host/db``)."""

import urllib.parse


def public_uri(uri):
    """``uri`` without its password, if it holds one; the user name stays."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}@" if parts.username else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=user + host))


def run_link(tracking_uri, run_id):
    """The page of MLflow run ``run_id`` in the tracking server's UI, or None when the
    tracking URI is not a server (a SQLite file, a database)."""
    base = public_uri(tracking_uri)
    if not base.startswith(("http://", "https://")):
        return None
    return f"{base.rstrip('/')}/#/runs/{urllib.parse.quote(run_id, safe='')}"
