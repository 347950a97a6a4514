"""What the API shows of the server (docs/design.md §10): never the tracking password, and the
``out`` a job really wrote to, not the one submitted."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.db import Job, JobKind, JobStatus
from services.main import create_app
from tests.stand_in_repalign import FAILS_ENV, StandInLauncher
from tests.test_service import AUTH, alignment_spec, make_store, settings_for, wait_for


class _EmptyTracking(BaseHTTPRequestHandler):
    """An MLflow tracking server that knows nothing: every REST call answers ``{}``."""

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *arguments):
        pass


@pytest.fixture
def tracking_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyTracking)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_no_response_carries_the_tracking_password(tmp_path, tracking_server):
    uri = f"http://user:secret-password@127.0.0.1:{tracking_server}"
    settings = settings_for(tmp_path, tracking_uri=uri)
    with TestClient(create_app(settings)) as client:
        with client.app.state.service.sessions.begin() as session:
            job = Job(kind=JobKind.ALIGNMENT, spec={}, status=JobStatus.SUCCEEDED,
                      mlflow_run_id="0123abcd")  # fmt: skip
            session.add(job)
        link = f"http://user@127.0.0.1:{tracking_server}/#/runs/0123abcd"
        record = client.get(f"/v1/jobs/{job.id}", headers=AUTH)
        assert record.json()["mlflow_link"] == link
        listed = client.get("/v1/jobs", headers=AUTH)
        assert [j["mlflow_link"] for j in listed.json()] == [link]
        page = client.get("/", headers=AUTH)
        assert f'href="{link}"' in page.text  # the page links with the same function
        for response in (record, listed, page, client.get("/openapi.json")):
            assert "secret-password" not in response.text


@pytest.mark.parametrize("fails", [False, True])
def test_a_job_log_and_error_never_carry_the_tracking_password(
    tmp_path, tracking_server, monkeypatch, fails
):
    """The password goes to the job on its command line, which the log records, and a job
    may print its tracking URI (an unreachable server, say) as the line its error quotes."""
    if fails:
        monkeypatch.setenv(FAILS_ENV, "1")
    uri = f"http://user:secret-password@127.0.0.1:{tracking_server}"
    make_store(tmp_path / "stores" / "zoo")
    with TestClient(create_app(settings_for(tmp_path, tracking_uri=uri))) as client:
        runner = client.app.state.service.runner
        runner.launcher = StandInLauncher(runner.settings.state_dir.resolve())
        submitted = client.post("/v1/jobs", json=alignment_spec(), headers=AUTH)
        job = wait_for(client, submitted.json()["id"])
        log = client.get(f"/v1/jobs/{job['id']}/logs", headers=AUTH)
        listed = client.get("/v1/jobs", headers=AUTH)
    assert job["status"] == ("failed" if fails else "succeeded"), job
    public = f"http://user@127.0.0.1:{tracking_server}"
    assert f"--tracking-uri {public}" in log.text  # the command line, without the password
    if fails:
        assert public in job["error"]
    for text in (json.dumps(job), log.text, listed.text):
        assert "secret-password" not in text


@pytest.mark.slow
def test_the_recorded_out_is_the_folder_the_job_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # as the service tests run their jobs
    settings = settings_for(tmp_path)
    make_store(tmp_path / "stores" / "zoo")
    elsewhere = tmp_path / "elsewhere"
    with TestClient(create_app(settings)) as client:
        submitted = client.post("/v1/jobs", json=alignment_spec(out=str(elsewhere)), headers=AUTH)
        assert submitted.status_code == 201
        job = wait_for(client, submitted.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    out = Path(job["spec"]["out"])
    assert (out / "alignment.parquet").is_file() and (out / "run.json").is_file()
    assert not elsewhere.exists()
