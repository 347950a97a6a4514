"""The status page at / (services/page.py): signing in, what it shows, escaping, the heatmap
route; and the page in a real headless Chromium against `repalign serve`.

The TestClient tests log MLflow runs directly (`log_alignment_run`) and write job records
into the service's database; the browser test runs a real job submitted over HTTP.
"""

import hashlib
import os
import subprocess
import sys
import time
import urllib.parse
from contextlib import contextmanager

import httpx
import pytest
from fastapi.testclient import TestClient

from repalign.errors import RepalignError
from repalign.tracking import heatmap_png, log_alignment_run
from services import page
from services.db import Job, now
from services.main import create_app
from services.settings import Settings
from tests.servers import chromium_page, free_port
from tests.test_service import make_store
from tests.test_tracking import alignment_table

pytestmark = pytest.mark.slow  # the page in a browser and a served job

TOKEN = "page-token-5f0c2b7e91"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE_EXPERIMENT = '<script>alert("experiment")</script>'
HOSTILE_ERROR = 'exit status 1: <script>alert("job")</script>\nsecond line of the log'


def settings_for(folder, **overrides):
    if not (folder / "stores" / "zoo").exists():
        make_store(folder / "stores" / "zoo")  # a schedule's spec must run on it
    return Settings(api_tokens=[TOKEN], store_roots=[folder / "stores"],
                    state_dir=folder / "state", **overrides)  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A service with a succeeded job whose run has a heatmap, a failed job with a hostile
    error, a run in an experiment with a hostile name, and a schedule."""
    folder = tmp_path_factory.mktemp("page")
    settings = settings_for(folder)
    with TestClient(create_app(settings)) as client:
        table = alignment_table(configurations=[("cka", "linear", "biased")])
        runs = {}
        for experiment in ("page-test", HOSTILE_EXPERIMENT):
            artifacts = folder / f"artifacts-{len(runs)}"
            runs[experiment] = log_alignment_run(table, params={}, summary={},
                                                 experiment=experiment,
                                                 tracking_uri=settings.tracking,
                                                 artifact_location=str(artifacts))  # fmt: skip
        finished = {"kind": "alignment", "spec": {"store": "zoo"}, "finished_at": now(),
                    "attempts": 1}  # fmt: skip
        succeeded = Job(status="succeeded", mlflow_run_id=runs["page-test"], **finished)
        failed = Job(status="failed", error=HOSTILE_ERROR, **finished)
        with client.app.state.service.sessions.begin() as session:
            session.add_all([succeeded, failed])
        body = {"cron": "30 4 * * 1", "timezone": "Europe/Rome",
                "spec": {"store": "zoo", "measures": [{"name": "cka"}]}}  # fmt: skip
        schedule = client.post("/v1/schedules", json=body, headers=AUTH).json()
        yield {"client": client, "settings": settings, "runs": runs, "succeeded": succeeded.id,
               "failed": failed.id, "schedule": schedule}  # fmt: skip


@pytest.fixture
def client(service):
    """The service's client with no cookie before or after the test."""
    service["client"].cookies.clear()
    yield service["client"]
    service["client"].cookies.clear()


def sign_in(client, token=TOKEN):
    return client.post("/login", data={"token": token}, follow_redirects=False)


def heatmap_sources(text):
    """The src of each heatmap <img> of the page."""
    return [part.split('"', 1)[0] for part in text.split('<img class="heatmap" src="')[1:]]


def test_without_a_session_the_page_is_only_a_login_form(client, service):
    response = client.get("/")
    assert response.status_code == 200
    assert '<form class="login" method="post" action="/login">' in response.text
    assert 'name="token" type="password"' in response.text
    for hidden in (service["succeeded"], service["failed"], service["schedule"]["id"],
                   *service["runs"].values(), "page-test", "<img"):  # fmt: skip
        assert hidden not in response.text
    run = service["runs"]["page-test"]
    heatmap = client.get(f"/ui/heatmaps/{run}/cka-linear-biased.png")
    assert heatmap.status_code == 401 and heatmap.headers["www-authenticate"] == "Bearer"
    wrong_bearer = client.get("/", headers={"Authorization": "Bearer nope"})
    assert wrong_bearer.status_code == 401 and "nope" not in wrong_bearer.text
    assert client.get(f"/ui/heatmaps/{run}/cka-linear-biased.png",
                      headers={"Authorization": "Bearer nope"}).status_code == 401  # fmt: skip
    client.cookies.set(page.COOKIE, f"{int(time.time()) + 3600}.{'0' * 64}")  # forged
    assert '<form class="login"' in client.get("/").text


def test_a_wrong_token_gets_401_and_the_form_again(client):
    response = sign_in(client, "wrong-token-a1b2c3")
    assert response.status_code == 401
    assert '<form class="login"' in response.text and "not valid" in response.text
    assert "wrong-token-a1b2c3" not in response.text
    assert "set-cookie" not in response.headers
    assert sign_in(client, "").status_code == 401


def test_signing_in_sets_a_signed_cookie_and_shows_jobs_schedules_and_heatmaps(client, service):
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    digest = hashlib.sha256(TOKEN.encode())
    for secret in (TOKEN, digest.hexdigest(), digest.digest().hex()):
        assert secret not in cookie
    text = client.get("/").text
    assert TOKEN not in text
    row = text.split(f'<tr id="job-{service["succeeded"]}">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="status status-succeeded">succeeded</td>' in row
    assert service["runs"]["page-test"] in row  # the MLflow run id
    assert "mlflow ui --backend-store-uri sqlite:///" in text  # the tracking store is a file
    schedule = service["schedule"]
    row = text.split(f'<tr id="schedule-{schedule["id"]}">', 1)[1].split("</tr>", 1)[0]
    assert "<code>30 4 * * 1</code>" in row and "Europe/Rome" in row
    assert schedule["next_run_at"][:10] in row
    sources = heatmap_sources(text)
    assert len(sources) == 2  # one per experiment
    expected = f"/ui/heatmaps/{service['runs']['page-test']}/cka-linear-biased.png"
    assert expected in sources
    for source in sources:
        image = client.get(source)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content.startswith(PNG_SIGNATURE) and len(image.content) > 10_000
    policy = client.get("/").headers["content-security-policy"]
    assert "default-src 'none'" in policy and "img-src 'self'" in policy


def test_a_bearer_token_also_opens_the_page_and_the_heatmaps(client, service):
    text = client.get("/", headers=AUTH).text
    assert service["succeeded"] in text
    (source, *_) = heatmap_sources(text)
    assert client.get(source, headers=AUTH).content.startswith(PNG_SIGNATURE)


def test_signing_out_clears_the_cookie(client):
    sign_in(client)
    assert '<form method="post" action="/logout">' in client.get("/").text
    response = client.post("/logout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert page.COOKIE in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()
    assert page.COOKIE not in client.cookies
    assert '<form class="login"' in client.get("/").text


def test_a_session_is_refused_once_expired_or_altered_or_for_another_token():
    hashes = [hashlib.sha256(TOKEN.encode()).digest()]
    expires = int(time.time()) + 60
    value = page.session_value(hashes[0], expires)
    assert page.session_is_valid(value, hashes)
    assert not page.session_is_valid(value, hashes, moment=expires)
    later = value.replace(str(expires), str(expires + 10**6), 1)  # expiry pushed back
    assert not page.session_is_valid(later, hashes)
    assert not page.session_is_valid(value[:-1] + ("0" if value[-1] != "0" else "1"), hashes)
    assert not page.session_is_valid(value, [hashlib.sha256(b"another token").digest()])
    for malformed in (None, "", "abc", ".", f"{expires}"):
        assert not page.session_is_valid(malformed, hashes)


def test_every_value_on_the_page_is_escaped(client, service):
    text = client.get("/", headers=AUTH).text
    assert "<script" not in text.lower()
    assert "exit status 1: &lt;script&gt;alert(&#34;job&#34;)&lt;/script&gt;" in text
    assert "second line of the log" not in text  # only the error's first line
    assert "&lt;script&gt;alert(&#34;experiment&#34;)&lt;/script&gt;" in text


def test_an_unknown_run_or_heatmap_is_404_and_no_other_artifact_is_served(client, service):
    run = service["runs"]["page-test"]
    for path in (f"/ui/heatmaps/{'0' * 32}/cka-linear-biased.png",
                 f"/ui/heatmaps/{run}/cka-rbf-biased.png", f"/ui/heatmaps/{run}/summary.png",
                 f"/ui/heatmaps/{run}/..%2Fsummary.png"):  # fmt: skip
        assert client.get(path, headers=AUTH).status_code == 404, path


def test_heatmap_png_names_what_it_cannot_find(service):
    uri, run = service["settings"].tracking, service["runs"]["page-test"]
    assert heatmap_png(run, "cka-linear-biased", tracking_uri=uri).startswith(PNG_SIGNATURE)
    with pytest.raises(RepalignError, match=r"run_id must name a run .*got '0+'"):
        heatmap_png("0" * 32, "cka-linear-biased", tracking_uri=uri)
    with pytest.raises(
        RepalignError,
        match=r"one of the heatmaps .*\(cka-linear-biased, cka-linear-biased-models\); got ",
    ):
        heatmap_png(run, "../summary", tracking_uri=uri)


@pytest.mark.parametrize(
    ("tracking", "shown"),
    [("https://alice:s3cret@mlflow.example.org/", 'href="https://alice@mlflow.example.org/#/runs/'),
     ("postgresql://alice:s3cret@db.example.org/mlflow",
      "mlflow ui --backend-store-uri postgresql://alice@db.example.org/mlflow")],
)  # fmt: skip
def test_mlflow_links_hide_passwords_and_an_unreachable_mlflow_leaves_the_rest(
    tmp_path, monkeypatch, caplog, tracking, shown
):
    def unreachable(*, tracking_uri):  # as MLflow's REST client fails, the URI in its message
        raise ConnectionError(f"API request to {tracking_uri}api/2.0/mlflow failed")

    monkeypatch.setattr("services.main.prepare_store", lambda uri: None)  # nothing to reach
    monkeypatch.setattr(page, "latest_heatmaps", unreachable)
    with TestClient(create_app(settings_for(tmp_path, tracking_uri=tracking))) as client:
        with client.app.state.service.sessions.begin() as session:
            job = Job(kind="alignment", spec={}, status="succeeded", mlflow_run_id="a" * 32)
            session.add(job)
        text = client.get("/", headers=AUTH).text
    assert f'<tr id="job-{job.id}">' in text
    assert shown in text and "a" * 32 in text
    assert "MLflow could not be read" in text
    assert "s3cret" not in text and "s3cret" not in caplog.text


# -- in a real browser -----------------------------------------------------------------------


@contextmanager
def repalign_serve(folder, **env):
    """`repalign serve` on a free port of 127.0.0.1, in ``folder``, reading the stores of
    ``folder/stores``, with ``env`` added to its environment; yields its URL."""
    port = free_port()
    env = {**os.environ, "REPALIGN_API_TOKENS": TOKEN, "RAY_AUTH_MODE": "disabled", **env}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "repalign", "serve", "--port", str(port),
               "--store-root", str(folder / "stores"), "--max-running", "1",
               "--state-dir", str(folder / "state")]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with open(folder / "serve.log", "wb") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            alive = process.poll() is None and time.monotonic() < deadline
            assert alive, (folder / "serve.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert TOKEN not in (folder / "serve.log").read_text()


@pytest.fixture
def served(tmp_path):
    """`repalign serve` in ``tmp_path``, with the store ``zoo``; yields its URL."""
    make_store(tmp_path / "stores" / "zoo")
    with repalign_serve(tmp_path) as url:
        yield url


def submitted_job(url, spec):
    """Submit ``spec`` over HTTP; the new job's id."""
    created = httpx.post(f"{url}/v1/jobs", json=spec, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def finished_job(url, spec=None, timeout=300, *, job_id=None):
    """The record of job ``job_id``, or of a job of ``spec`` submitted over HTTP, once it has
    finished."""
    job_id = job_id or submitted_job(url, spec)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=AUTH, timeout=30).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def sign_in_with_the_form(browser, url):
    """Sign in to the service at ``url`` as a person does: the token typed into the form at /,
    which is submitted; returns once / has loaded again, signed in."""
    browser.goto(f"{url}/")
    assert browser.evaluate("document.querySelector('form.login') !== null")
    browser.evaluate("document.getElementById('token').focus()")
    browser.type(TOKEN)
    browser.evaluate("document.querySelector('form.login button').click()")
    browser.wait_for_load()  # POST /login, 303, GET / and its images


# What the browser shows, read in the page: the job's row, and each heatmap as the browser
# decoded it (its size, and how many colours a sample of its pixels has: a blank image has 1),
# and whether the page's style applied (the Content-Security-Policy allows it by its hash).
READ_PAGE = """(async () => {
  const row = document.getElementById(%s);
  const images = await Promise.all([...document.querySelectorAll("img.heatmap")].map(
    async (img) => {
      await img.decode();
      const canvas = document.createElement("canvas");
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      const context = canvas.getContext("2d");
      context.drawImage(img, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      const colours = new Set();
      for (let i = 0; i < pixels.length; i += 4 * 97) colours.add(pixels.slice(i, i + 3).join());
      return {src: img.getAttribute("src"), width: img.naturalWidth,
              height: img.naturalHeight, colours: colours.size};
    }));
  return {url: location.href, cookie: document.cookie, text: document.body.innerText,
          status: row && row.querySelector(".status").textContent, images,
          styled: getComputedStyle(document.querySelector("table")).borderCollapse};
})()"""


def test_the_page_in_headless_chromium_shows_a_finished_job_and_its_heatmap(served):
    spec = {"store": "zoo", "measures": [{"name": "cka"}], "experiment": "browser-test"}
    job = finished_job(served, spec)
    assert job["status"] == "succeeded", httpx.get(
        f"{served}/v1/jobs/{job['id']}/logs", headers=AUTH
    ).text
    with chromium_page() as browser:
        sign_in_with_the_form(browser, served)
        shown = browser.evaluate(READ_PAGE % repr(f"job-{job['id']}"))
        assert urllib.parse.urlsplit(shown["url"]).path == "/"
        assert shown["status"] == "succeeded"
        assert job["id"] in shown["text"] and job["mlflow_run_id"] in shown["text"]
        assert "browser-test" in shown["text"] and TOKEN not in shown["text"]
        assert shown["cookie"] == ""  # HttpOnly: no script can read the session
        assert shown["styled"] == "collapse"
        (image,) = shown["images"]
        assert image["src"] == f"/ui/heatmaps/{job['mlflow_run_id']}/cka-linear-biased.png"
        assert image["width"] > 200 and image["height"] > 200
        assert image["colours"] > 10
        browser.evaluate("document.querySelector('form[action=\"/logout\"] button').click()")
        browser.wait_for_load()
        assert browser.evaluate("document.querySelector('form.login') !== null")
        assert browser.evaluate("document.querySelectorAll('img').length") == 0
