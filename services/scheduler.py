"""Schedules come due on their cron expression; each due one queues a job.

An alignment spec is queued as a *nightly* job (`repalign nightly`): it is handed the output
folder of the schedule's last successful job, computes only the pairs of new representations
when nothing else changed, and writes a change report. A stitching spec is queued as it is.
"""

import datetime
import logging
import threading
import zoneinfo

from croniter import CroniterBadCronError, croniter

from services import crud
from services.db import JobKind, now

LOG = logging.getLogger(__name__)


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used."""


def next_run(cron, timezone, after=None):
    """The first time after ``after`` (default now) at which ``cron`` fires in ``timezone``."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"timezone {timezone!r} is not a known time zone") from None
    start = (after or now()).astimezone(zone)
    try:
        fires = croniter(cron, start, second_at_beginning=True).get_next(datetime.datetime)
    except (CroniterBadCronError, ValueError) as exc:
        raise ScheduleError(f"cron {cron!r} is not a cron expression: {exc}") from None
    return fires.astimezone(datetime.UTC)


def utc(moment):
    """A database time as an aware UTC time (SQLite gives naive ones back)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


class Scheduler:
    """Every ``settings.scheduler_seconds``, queues a job for each schedule that is due."""

    def __init__(self, sessions, settings, runner):
        self.sessions, self.settings, self.runner = sessions, settings, runner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _loop(self):
        while not self._stop.wait(self.settings.scheduler_seconds):
            try:
                if self.tick():
                    self.runner.wake()
            except Exception:  # a database hiccup must not stop the schedules for good
                LOG.exception("scheduler: this round failed; trying again")

    def tick(self, moment=None):
        """Queue the due schedules' jobs; returns how many were queued.

        A schedule whose previous job is still queued or running skips this firing: runs of
        one schedule never overlap or pile up.
        """
        moment = moment or now()
        queued = 0
        with self.sessions.begin() as session:
            for schedule in crud.schedules(session):
                if utc(schedule.next_run_at) > moment:
                    continue
                schedule.next_run_at = next_run(schedule.cron, schedule.timezone, moment)
                if not crud.schedule_is_busy(session, schedule.id):
                    self._queue(session, schedule)
                    schedule.last_run_at = moment
                    queued += 1
        return queued

    def _queue(self, session, schedule):
        kind = schedule.spec.get("kind", JobKind.ALIGNMENT)
        nightly = kind == JobKind.ALIGNMENT
        last = crud.last_success(session, schedule.id) if nightly else None
        crud.add_job(
            session,
            kind=JobKind.NIGHTLY if nightly else JobKind.STITCHING,
            spec={**schedule.spec, "kind": kind},
            out_folder=self.runner.out,
            schedule_id=schedule.id,
            threshold=schedule.threshold,
            previous_job_id=last.id if last else None,
        )
