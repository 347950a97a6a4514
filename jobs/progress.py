"""How far a job has got: a tqdm bar on a terminal, and a small JSON file for a caller that
asks for one through ``REPALIGN_PROGRESS_FILE`` (`repalign.contract.PROGRESS_FILE_ENV`; the
service asks, for each job it runs).

The file holds ``{"stage": ..., "done": ..., "total": ...}`` for the bar that is running (rows of
a pass, or pairs), rewritten atomically at most once a second and when the bar closes.
"""

import json
import os
import threading
import time

from tqdm import tqdm

from repalign.contract import PROGRESS_FILE_ENV, atomic_write

WRITE_SECONDS = 1.0


class Progress(tqdm):
    """A tqdm bar that also reports to ``$REPALIGN_PROGRESS_FILE`` when it is set (even when
    the bar itself is off: ``--quiet``, or not a terminal). Passes running side by side, in
    threads, may share one."""

    def __init__(self, *args, desc=None, **kwargs):
        super().__init__(*args, desc=desc, **kwargs)
        self.stage, self.done = desc, 0
        self._updating = threading.Lock()
        self._path = os.environ.get(PROGRESS_FILE_ENV)
        self._written = 0.0
        self._report(force=True)

    def update(self, n=1):
        with self._updating:
            self.done += n
            displayed = super().update(n)
            self._report()
        return displayed

    def close(self):
        self._report(force=True)
        super().close()

    def _report(self, force=False):
        if not self._path or (not force and time.monotonic() - self._written < WRITE_SECONDS):
            return
        with atomic_write(self._path) as temporary:
            progress = {"stage": self.stage, "done": self.done, "total": self.total}
            temporary.write_text(json.dumps(progress))
        self._written = time.monotonic()
