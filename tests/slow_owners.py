"""A Ray worker setup hook for tests/test_multinode.py: every owner of a tile of the moment
statistic (`jobs.passes.moments.TileMeasure`) waits `OWNER_SECONDS` before it measures, so
that a test can kill a node while an owner is at work. The values are unchanged."""

import time

OWNER_SECONDS = 4.0


def slow_down():
    from jobs.passes import moments

    measure = moments.TileMeasure.__call__

    def slowly(self, state):
        time.sleep(OWNER_SECONDS)
        return measure(self, state)

    moments.TileMeasure.__call__ = slowly
