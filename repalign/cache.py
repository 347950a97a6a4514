"""Where repalign keeps what it makes once per machine and reuses: the digits zoo of the demo,
and the empty tables of an MLflow store (`repalign.tracking.store_template`)."""

import os
from pathlib import Path


def cache_folder():
    """``$XDG_CACHE_HOME/repalign``, or ``~/.cache/repalign`` (the XDG base directory
    convention); not created here."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "repalign"
