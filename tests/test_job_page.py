"""The page of a job and of a schedule (services/job_pages.py): what they show, the result table
sorted and paged by the server, errors, escaping; and both pages in a real headless Chromium
against `repalign serve`, a real job watched from running to finished.

The TestClient tests write job records into the service's database and, into each job's
folder, the files its command would have left there (table, log, progress, change report).
The browser tests save screenshots of the pages in ``test-output/screenshots/``.
"""

import datetime
import html
import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from repalign.store import write_representation
from services.db import Job, now
from services.main import create_app
from tests.servers import chromium_page
from tests.test_page import (
    AUTH,
    finished_job,
    repalign_serve,
    settings_for,
    sign_in_with_the_form,
    submitted_job,
)
from tests.test_service import make_store
from tests.test_tracking import MISSING_PAIR, alignment_table

pytestmark = pytest.mark.slow  # a served job in a browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
REPRESENTATIONS = [*MISSING_PAIR, *(f"cnn-s{s}.conv{layer}" for s in (0, 1) for layer in range(5))]
CONFIGURATIONS = [("cka", "linear", "biased"), ("procrustes", "linear", "")]
ROWS = 12 * 13 // 2 * 2  # 12 representations: 78 pairs, diagonal included, of 2 configurations
LOG_LINES = 150
HOSTILE = '<script>alert("job page")</script>'
HOSTILE_NAME = "<img src=x onerror=alert(1)>.fc1"
ESCAPED = "&lt;script&gt;alert(&#34;job page&#34;)&lt;/script&gt;"
ESCAPED_NAME = "&lt;img src=x onerror=alert(1)&gt;.fc1"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A service with: a succeeded alignment job (a table of `ROWS` rows, a log of
    `LOG_LINES` lines), a running job with its progress, a failed job, and a schedule with
    two nightly runs, the later one with pairs that moved; hostile strings in the failed job,
    the schedule's spec, the later run and a second running job."""
    folder = tmp_path_factory.mktemp("job-page")
    with TestClient(create_app(settings_for(folder))) as client:
        service = client.app.state.service
        hostile_spec = {"store": "zoo", "measures": [{"name": "cka"}], "experiment": HOSTILE}
        body = {"cron": "30 4 * * 1", "timezone": "Europe/Rome", "spec": hostile_spec}
        schedule = client.post("/v1/schedules", json=body, headers=AUTH).json()
        done = {"status": "succeeded", "finished_at": now(), "attempts": 1}
        nightly = {"spec": schedule["spec"], "schedule_id": schedule["id"]}
        yesterday = now() - datetime.timedelta(days=1)
        spec = {"store": "zoo", "measures": [{"name": "cka"}, {"name": "procrustes"}],
                "experiment": "job-page-test"}  # fmt: skip
        jobs = {
            "succeeded": Job(kind="alignment", spec=spec, mlflow_run_id="ab" * 16, **done),
            "running": Job(kind="alignment", spec=spec, status="running", attempts=1),
            "failed": Job(kind="alignment", spec=spec, status="failed", error=HOSTILE, attempts=1),
            "hostile running": Job(kind="alignment", spec=spec, status="running", attempts=1),
            "first night": Job(kind="nightly", created_at=yesterday, **nightly, **done),
            "second night": Job(kind="nightly", **nightly, **done),
        }
        with service.sessions.begin() as session:
            session.add_all(jobs.values())
        runner = service.runner

        def leave(name, file, content):
            """Write what the job's command would have left in its folder."""
            path = runner.folder(jobs[name].id) / file
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content)
            else:
                pq.write_table(content, path)

        table = alignment_table(REPRESENTATIONS, CONFIGURATIONS)
        leave("succeeded", "out/alignment.parquet", table)
        leave("succeeded", "log.txt", "".join(f"log line {i}\n" for i in range(LOG_LINES)))
        progress = {"stage": "moments (12 representations, 1 tiles)", "done": 300, "total": 1200}
        leave("running", "progress.json", json.dumps(progress))
        leave("running", "log.txt", "[service] attempt started\n")
        leave("failed", "log.txt", f"Traceback\nRuntimeError: {HOSTILE}\n")
        leave("hostile running", "progress.json",
              json.dumps({"stage": HOSTILE, "done": 1, "total": 2}))  # fmt: skip
        hostile_table = alignment_table([HOSTILE_NAME, "m0.fc1"], CONFIGURATIONS[:1])
        for night in ("first night", "second night"):
            leave(night, "out/alignment.parquet", hostile_table)
        report = {"plan": "full", "reason": "no previous run: every representation is new",
                  "new": [HOSTILE_NAME, "m0.fc1"], "changed": [], "removed": [],
                  "previous": None, "threshold": 0.05, "moved": [], "drift": {}}  # fmt: skip
        leave("first night", "out/changes.json", json.dumps(report))
        moved = {"rep_a": HOSTILE_NAME, "rep_b": "m0.fc1", "measure": "cka", "kernel": "linear",
                 "estimator": "biased", "before": 0.25, "after": 0.75, "delta": 0.5}  # fmt: skip
        report = {
            **report,
            "plan": "incremental",
            "reason": f"{HOSTILE_NAME} changed",
            "new": [],
            "changed": [HOSTILE_NAME],
            "previous": "<state>/first/out",
            "moved": [moved],
            "drift": {HOSTILE_NAME: {"mmd2": None, "reason": HOSTILE}},
        }
        leave("second night", "out/changes.json", json.dumps(report))
        yield {"client": client, "table": table, "schedule": schedule,
               **{name: job.id for name, job in jobs.items()}}  # fmt: skip


@pytest.fixture
def client(pages):
    """The service's client with no cookie before or after the test."""
    pages["client"].cookies.clear()
    yield pages["client"]
    pages["client"].cookies.clear()


def result_rows(text):
    """The cells of the result table's rows, as text."""
    body = text.split('<table id="result-table">', 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1])
    return [[html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row)] for row in rows]


def shown(value):
    """A value as the table shows it."""
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def sorted_column(table, column, order):
    """The column's values in the order the page sorts them: nulls last in either order."""
    values = table[column].to_pylist()
    present = sorted((v for v in values if v is not None), reverse=order == "desc")
    return [shown(v) for v in present + [v for v in values if v is None]]


def section(text, name):
    return text.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]


def test_the_job_page_shows_status_spec_log_tail_first_rows_and_heatmaps(client, pages):
    response = client.get(f"/jobs/{pages['succeeded']}", headers=AUTH)
    assert response.status_code == 200
    text = response.text
    assert '<dd class="status status-succeeded">succeeded</dd>' in text
    assert "<code>" + "ab" * 16 + "</code>" in text  # the MLflow run, with no server to link
    spec = html.unescape(section(text, "spec"))
    assert json.loads(spec.split("<pre>", 1)[1].split("</pre>", 1)[0])["experiment"] == (
        "job-page-test"
    )
    log = section(text, "log")
    assert f"The last 100 of its {LOG_LINES} lines" in log
    assert "log line 149" in log and "log line 50\n" in log and "log line 49\n" not in log
    table = pages["table"]
    rows = result_rows(text)
    assert rows == [[shown(v) for v in row.values()] for row in table.slice(0, 50).to_pylist()]
    assert f"Rows 1–50 of {ROWS}" in text and "page 1 of 4" in text
    assert "http-equiv" not in text  # a finished job's page does not refresh
    frames = re.findall(r'<iframe class="heatmap" src="([^"]+)"', text)
    assert frames == [f"/jobs/{pages['succeeded']}/heatmaps/{name}.html"
                      for name in ("cka-linear-biased", "procrustes-linear")]  # fmt: skip
    assert "frame-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(("column", "order"), [("value", "asc"), ("value", "desc"),
                                               ("rep_b", "asc"), ("status", "desc")])  # fmt: skip
def test_sorting_by_a_column_orders_every_page_of_rows(client, pages, column, order):
    position = pages["table"].column_names.index(column)
    cells = []
    for page in range(1, 5):
        query = f"sort={column}&order={order}&page={page}"
        text = client.get(f"/jobs/{pages['succeeded']}?{query}", headers=AUTH).text
        cells += [row[position] for row in result_rows(text)]
    assert cells == sorted_column(pages["table"], column, order)
    assert f'aria-sort="{"ascending" if order == "asc" else "descending"}"' in text


def test_a_page_shows_its_slice_and_links_to_its_neighbours_in_the_same_order(client, pages):
    url = f"/jobs/{pages['succeeded']}"
    text = client.get(f"{url}?sort=value&order=desc&page=3", headers=AUTH).text
    values = [row[5] for row in result_rows(text)]
    assert values == sorted_column(pages["table"], "value", "desc")[100:150]
    assert f"Rows 101–150 of {ROWS}, by value, descending" in text
    assert 'href="?sort=value&amp;order=desc&amp;page=2" rel="prev"' in text
    assert 'href="?sort=value&amp;order=desc&amp;page=4" rel="next"' in text
    assert 'href="?sort=value&amp;order=asc&amp;page=1">value</a> ▼' in text  # flips the order
    last = client.get(f"{url}?sort=value&order=desc&page=4", headers=AUTH).text
    assert len(result_rows(last)) == ROWS - 150 and 'rel="next"' not in last
    assert result_rows(last)[-1][5] == ""  # the missing pair's null value comes last


@pytest.mark.parametrize(
    ("query", "status_code", "message"),
    [("sort=colour", 400, "sort must be one of the columns rep_a, rep_b, measure"),
     ("sort=value&order=up", 400, "order must be asc or desc; got &#39;up&#39;"),
     ("page=0", 400, "page must be a whole number from 1; got &#39;0&#39;"),
     ("page=two", 400, "page must be a whole number from 1; got &#39;two&#39;"),
     ("page=5", 404, f"page 5 does not exist: the table has {ROWS} rows, 4 pages of 50")],
)  # fmt: skip
def test_a_query_the_table_cannot_answer_gets_a_page_naming_the_problem(
    client, pages, query, status_code, message
):
    response = client.get(f"/jobs/{pages['succeeded']}?{query}", headers=AUTH)
    assert response.status_code == status_code
    assert message in response.text and '<p class="error" role="alert">' in response.text


def test_a_running_job_page_shows_its_progress_and_refreshes_itself(client, pages):
    text = client.get(f"/jobs/{pages['running']}", headers=AUTH).text
    assert '<meta http-equiv="refresh" content="3">' in text
    assert '<dd class="status status-running">running</dd>' in text
    progress = section(text, "progress")
    stage = '<span id="stage">moments (12 representations, 1 tiles)</span>'
    assert f"{stage}: 300 of 1200 (25.0 %)" in progress
    assert '<progress value="300" max="1200"></progress>' in progress
    assert "The results show here once the job has succeeded." in section(text, "results")
    assert "[service] attempt started" in section(text, "log")
    assert 'id="progress"' not in client.get(f"/jobs/{pages['succeeded']}", headers=AUTH).text


def test_an_unknown_job_or_schedule_gets_a_404_page_naming_the_id(client):
    for path, message in (("/jobs/no-such-job-42", "There is no job &#39;no-such-job-42&#39;."),
                          ("/schedules/no-such-schedule-7",
                           "There is no schedule &#39;no-such-schedule-7&#39;.")):  # fmt: skip
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert f'<p class="error" role="alert">{message}</p>' in response.text


def test_without_a_session_the_pages_are_the_sign_in_form(client, pages):
    for path in (f"/jobs/{pages['succeeded']}", f"/schedules/{pages['schedule']['id']}",
                 "/jobs/no-such-job-42"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 401
        assert '<form class="login" method="post" action="/login">' in response.text
        assert "log line" not in response.text and "no-such-job-42" not in response.text
    heatmap = client.get(f"/jobs/{pages['succeeded']}/heatmaps/cka-linear-biased.html")
    assert heatmap.status_code == 401


def test_a_heatmap_is_the_configurations_page_sandboxed_and_framed_only_here(client, pages):
    url = f"/jobs/{pages['succeeded']}/heatmaps"
    response = client.get(f"{url}/procrustes-linear.html", headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "<h1>procrustes" in response.text
    assert all(json.dumps(name) in response.text for name in REPRESENTATIONS)
    policy = response.headers["content-security-policy"]
    assert "sandbox allow-scripts" in policy and "frame-ancestors 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/]+=*';", policy)
    missing_heatmaps = [(pages["succeeded"], "cka-rbf-biased"),
                        (pages["failed"], "cka-linear-biased"),
                        ("no-such-job-42", "cka-linear-biased")]  # fmt: skip
    for job, name in missing_heatmaps:
        missing = client.get(f"/jobs/{job}/heatmaps/{name}.html", headers=AUTH)
        assert missing.status_code == 404 and name in missing.json()["detail"]


def test_the_schedule_page_lists_its_runs_and_the_pairs_that_moved(client, pages):
    schedule = pages["schedule"]
    response = client.get(f"/schedules/{schedule['id']}", headers=AUTH)
    assert response.status_code == 200
    text = response.text
    assert "<code>30 4 * * 1</code> in Europe/Rome" in text
    runs = section(text, "runs")
    first, second = pages["first night"], pages["second night"]
    assert runs.index(f'id="job-{second}"') < runs.index(f'id="job-{first}"')  # newest first
    for job_id in (first, second):
        assert f'<a href="/jobs/{job_id}"><code>{job_id}</code></a>' in runs
    rows = {job_id: runs.split(f'id="job-{job_id}">', 1)[1].split("</tr>", 1)[0]
            for job_id in (first, second)}  # fmt: skip
    assert "first: nothing to compare" in rows[first] and "<td>1</td>" in rows[second]
    moved = section(text, "moved")
    assert f'<a href="/jobs/{second}">' in moved  # the report is the latest run's
    row = moved.split('<table class="moved">', 1)[1].split("</table>", 1)[0]
    assert "<td>cka:linear:biased</td><td>0.25</td><td>0.75</td><td>0.5</td>" in row
    assert "http-equiv" not in text  # no run is active
    job_page = client.get(f"/jobs/{second}", headers=AUTH).text
    assert f'<a href="/schedules/{schedule["id"]}">' in job_page
    assert "<td>0.25</td><td>0.75</td><td>0.5</td>" in section(job_page, "changes")


def test_the_status_page_links_each_job_and_schedule_to_its_page(client, pages):
    text = client.get("/", headers=AUTH).text
    for name in ("succeeded", "running", "failed"):
        assert f'<a href="/jobs/{pages[name]}"><code>{pages[name]}</code></a>' in text
    schedule = pages["schedule"]["id"]
    assert f'<a href="/schedules/{schedule}"><code>{schedule}</code></a>' in text


def test_every_value_on_the_job_and_schedule_pages_is_escaped(client, pages):
    paths = [f"/jobs/{pages[name]}" for name in ("failed", "hostile running", "second night")]
    paths.append(f"/schedules/{pages['schedule']['id']}")
    for path in paths:
        text = client.get(path, headers=AUTH).text
        assert "<script" not in text.lower() and "<img" not in text.lower(), path
        assert ESCAPED in text, path
    night = client.get(f"/jobs/{pages['second night']}", headers=AUTH).text
    assert f"<td>{ESCAPED_NAME}</td>" in section(night, "results")
    assert f"<td>{ESCAPED_NAME}</td>" in section(night, "changes")
    schedule = client.get(f"/schedules/{pages['schedule']['id']}", headers=AUTH).text
    assert f"<td>{ESCAPED_NAME}</td>" in section(schedule, "moved")
    heatmap = client.get(f"/jobs/{pages['second night']}/heatmaps/cka-linear-biased.html",
                         headers=AUTH).text  # fmt: skip
    assert "<img" not in heatmap and HOSTILE_NAME.replace("<", "\\u003c") in heatmap


# -- in a real browser -----------------------------------------------------------------------

BIG_ROWS = 200_000  # rows per representation of the store "big": a job runs for seconds


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`repalign serve` with the stores ``zoo`` (small) and ``big``; checks schedules twice a
    second. Yields its URL."""
    folder = tmp_path_factory.mktemp("served")
    make_store(folder / "stores" / "zoo")
    rng = np.random.default_rng(0)
    for name in ("a-s0.fc", "a-s1.fc", "b-s0.fc", "b-s1.fc"):
        values = rng.standard_normal((BIG_ROWS, 32)).astype(np.float32)
        write_representation(folder / "stores" / "big", name, np.arange(BIG_ROWS), values,
                             shard_rows=BIG_ROWS // 8)  # fmt: skip
    with repalign_serve(folder, REPALIGN_SCHEDULER_SECONDS="0.5") as url:
        yield url


@pytest.fixture(scope="module")
def browser(served):
    """Headless Chromium, 1280 px wide, signed in to the served service."""
    with chromium_page() as page:
        page.resize(1280, 900)
        sign_in_with_the_form(page, served)
        yield page


# What the browser shows of a job page
READ_JOB_PAGE = """(() => ({
  url: location.href,
  loaded: document.readyState === "complete",
  status: document.querySelector("#summary .status")?.textContent ?? null,
  refresh: document.querySelector('meta[http-equiv="refresh"]')?.content ?? null,
  stage: document.getElementById("stage")?.textContent ?? null,
  progress: [...document.querySelectorAll("#progress progress")].map(p => [p.value, p.max]),
  rows: [...document.querySelectorAll("#result-table tbody tr")].map(
    tr => [...tr.cells].map(td => td.textContent)),
  headings: [...document.querySelectorAll("#result-table th a")].map(a => a.textContent),
  frames: [...document.querySelectorAll("iframe.heatmap")].map(f => f.getAttribute("src")),
  log: document.getElementById("log-tail")?.textContent ?? "",
}))()"""


def read_until(browser, expression, done, timeout=120):
    """What ``expression`` reads in the page once ``done`` holds of it, while the page may be
    reloading itself."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = browser.evaluate(expression)
            if done(value):
                return value
        except RuntimeError:  # evaluated while the page was being replaced
            value = None
        assert time.monotonic() < deadline, f"not there after {timeout} s: {value}"
        time.sleep(0.3)


def job_record(url, job_id):
    return httpx.get(f"{url}/v1/jobs/{job_id}", headers=AUTH, timeout=30).json()


def assert_png(path, min_width):
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width and image.height > 0
        image.verify()


def test_a_running_job_page_shows_progress_then_refreshes_to_its_results(served, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    spec = {"store": "big", "measures": [{"name": "cka"}, {"name": "procrustes"}],
            "experiment": "job-page-browser"}  # fmt: skip
    job_id = submitted_job(served, spec)
    deadline = time.monotonic() + 120
    job = job_record(served, job_id)
    while job["status"] == "queued" or (job["status"] == "running" and job["progress"] is None):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = job_record(served, job_id)
    assert job["status"] == "running", f"the job ended before it could be watched: {job}"

    browser.goto(f"{served}/jobs/{job_id}")
    running = browser.evaluate(READ_JOB_PAGE)
    assert running["status"] == "running", running
    assert running["refresh"] == "3" and running["stage"] == job["progress"]["stage"]
    ((done, total),) = running["progress"]
    assert total == job["progress"]["total"] and job["progress"]["done"] <= done <= total
    assert running["rows"] == [] and "[service] attempt started" in running["log"]
    browser.screenshot(SCREENSHOTS / "job-running.png")

    # no reload from here: the page refreshes itself until the job has ended
    finished = read_until(browser, READ_JOB_PAGE,
                          lambda page: page["status"] != "running" and page["loaded"])  # fmt: skip
    assert finished["status"] == "succeeded", finished["log"]
    assert finished["url"] == f"{served}/jobs/{job_id}" and finished["refresh"] is None
    assert len(finished["rows"]) == 10 * 2  # 4 representations: 10 pairs, of 2 measures
    assert finished["headings"][:6] == ["rep_a", "rep_b", "measure", "kernel", "estimator", "value"]
    assert {(row[0], row[1]) for row in finished["rows"]} == {
        (a, b) for a in ("a-s0.fc", "a-s1.fc", "b-s0.fc", "b-s1.fc")
        for b in ("a-s0.fc", "a-s1.fc", "b-s0.fc", "b-s1.fc") if a <= b
    }  # fmt: skip
    heatmaps = ("cka-linear-biased", "procrustes-linear")
    assert finished["frames"] == [f"/jobs/{job_id}/heatmaps/{name}.html" for name in heatmaps]
    browser.screenshot(SCREENSHOTS / "job-finished.png")
    assert_png(SCREENSHOTS / "job-running.png", min_width=1200)
    assert_png(SCREENSHOTS / "job-finished.png", min_width=1200)

    # the heatmap's own script runs under its policy (sandboxed, allowed by hash)
    browser.goto(f"{served}{finished['frames'][0]}")
    assert browser.evaluate("document.querySelectorAll('#cells rect').length") == 10


def test_the_schedule_page_lists_its_run_and_links_to_the_run_page(served, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    fires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=5)
    body = {"cron": f"{fires.second} {fires.minute} {fires.hour} * * *", "timezone": "UTC",
            "spec": {"store": "zoo", "measures": [{"name": "cka"}],
                     "experiment": "schedule-page-browser"}}  # fmt: skip
    created = httpx.post(f"{served}/v1/schedules", json=body, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    schedule = created.json()
    next_run = datetime.datetime.fromisoformat(schedule["next_run_at"])
    assert next_run - datetime.datetime.now(datetime.UTC) < datetime.timedelta(seconds=10), (
        "the schedule was created too late to fire this minute"
    )
    deadline = time.monotonic() + 60
    while True:  # until the schedule has queued its run
        jobs = httpx.get(f"{served}/v1/jobs", headers=AUTH, timeout=30).json()
        runs = [job for job in jobs if job["schedule_id"] == schedule["id"]]
        if runs:
            break
        assert time.monotonic() < deadline, "the schedule queued no run"
        time.sleep(0.3)
    (run,) = runs
    run = finished_job(served, job_id=run["id"])
    assert run["status"] == "succeeded", run

    browser.goto(f"{served}/schedules/{schedule['id']}")
    page = browser.evaluate("""(() => ({
      runs: [...document.querySelectorAll("#runs tbody tr")].map(tr => ({
        id: tr.id, href: tr.querySelector("a").getAttribute("href"),
        status: tr.querySelector(".status").textContent})),
      cron: document.querySelector("#summary code").textContent,
      moved: document.getElementById("moved").innerText,
    }))()""")
    assert page["runs"] == [{"id": f"job-{run['id']}", "href": f"/jobs/{run['id']}",
                             "status": "succeeded"}]  # fmt: skip
    assert page["cron"] == body["cron"]
    assert "Nothing to compare with: no previous run" in page["moved"]
    browser.screenshot(SCREENSHOTS / "schedule.png")
    assert_png(SCREENSHOTS / "schedule.png", min_width=1200)

    browser.evaluate("document.querySelector('#runs tbody a').click()")
    job_page = read_until(
        browser, READ_JOB_PAGE, lambda page: page["url"].endswith(run["id"]) and page["loaded"]
    )
    assert job_page["status"] == "succeeded" and len(job_page["rows"]) == 6  # 3 representations
