"""The HTTP service (`services`) with its real parts: job processes of the `repalign` command
line, a SQLite MLflow store, a SQLite or PostgreSQL database.

The job processes run their passes in process, as a service with no Ray cluster runs small
jobs (one test's jobs join the session's Ray through ``--ray-address``); the tests of the
queue, restart and cancel run `tests.stand_in_repalign` in their place, and a real job runs on
each database. PostgreSQL repeats the tests whose subject is what the database keeps (jobs,
schedules)."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from jobs.alignment import run_alignment
from repalign.spec import parse_spec
from repalign.store import write_representation
from services.main import create_app
from services.settings import Settings
from tests.servers import free_port
from tests.stand_in_repalign import (
    HANGS_ENV,
    LEDGER_ENV,
    SECONDS_ENV,
    STAGE,
    StandInLauncher,
)

pytestmark = pytest.mark.slow  # the service with job processes and servers

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MEASURES = [{"name": "cka"}, {"name": "cka", "estimator": "song"}, {"name": "procrustes"}]


def make_store(path, names=("m0.fc1", "m0.fc2", "m1.fc1"), rows=400, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, 5))
    for i, name in enumerate(names):
        values = base @ rng.standard_normal((5, 4 + i)) + 0.3 * rng.standard_normal((rows, 4 + i))
        write_representation(path, name, np.arange(rows), values.astype(np.float32))
    return path


def settings_for(tmp_path, **overrides):
    roots = tmp_path / "stores"
    roots.mkdir(exist_ok=True)
    content = {
        "api_tokens": [TOKEN, "second-token"],
        "store_roots": [roots],
        "state_dir": tmp_path / "state",
        "max_running": 2,
        "scheduler_seconds": 0.2,
        **overrides,
    }
    return Settings(**content)


def fresh_state(tmp_path, empty_mlflow_store):
    """The service's state folder, holding a copy of the empty MLflow store."""
    (tmp_path / "state").mkdir()
    shutil.copy(empty_mlflow_store, tmp_path / "state" / "mlflow.db")


@pytest.fixture
def service(request, tmp_path, empty_mlflow_store):
    """The service in-process, on SQLite, or (parametrized "postgresql") on a fresh database
    of the session's PostgreSQL server; no Ray cluster, so its small jobs run in process."""
    overrides = {}
    if getattr(request, "param", "sqlite") == "postgresql":
        overrides["database_url"] = fresh_database(
            request.getfixturevalue("postgres_url"), tmp_path
        )
    fresh_state(tmp_path, empty_mlflow_store)
    settings = settings_for(tmp_path, **overrides)
    make_store(tmp_path / "stores" / "zoo")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    with TestClient(create_app(settings)) as client:
        assert client.app.state.service.engine.dialect.name == getattr(request, "param", "sqlite")
        yield client, tmp_path


def fresh_database(server_url, tmp_path):
    import sqlalchemy

    name = f"service_{tmp_path.name.lower().replace('-', '_')}"[:60]
    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


both_databases = pytest.mark.parametrize("service", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def stand_in(service, monkeypatch):
    """The service of `service`, its jobs run by the stand-in; `STAND_IN_SECONDS` each unless
    the test sets it."""
    client, _ = service
    monkeypatch.setenv(SECONDS_ENV, "1")
    service_state = client.app.state.service.runner.settings.state_dir.resolve()
    client.app.state.service.runner.launcher = StandInLauncher(service_state)
    return service


def wait_for(client, job_id, statuses=("succeeded", "failed", "cancelled"), timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def alignment_spec(store="zoo", **extra):
    return {"store": store, "measures": MEASURES, "experiment": "service-test", **extra}


# -- authentication and input checks ---------------------------------------------------------


def test_every_endpoint_but_healthz_needs_a_valid_token(service):
    client, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    for method, path in [("get", "/v1/jobs"), ("post", "/v1/jobs"), ("get", "/v1/stores"),
                         ("get", "/v1/schedules"), ("get", "/metrics"),
                         ("get", "/v1/matrices?experiment=x"),
                         ("get", "/v1/models?experiment=x")]:  # fmt: skip
        missing = getattr(client, method)(path)
        assert missing.status_code == 401, path
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = getattr(client, method)(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, path
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer second-token"}).json() == []


def test_bad_specs_and_stores_are_refused(service):
    client, tmp_path = service
    bad = client.post("/v1/jobs", json=alignment_spec(measures=[{"name": "ckaa"}]), headers=AUTH)
    assert bad.status_code == 422 and "measures.0.name" in bad.json()["detail"]
    unknown = client.post("/v1/jobs", json=alignment_spec(colour="red"), headers=AUTH)
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]
    kind = client.post("/v1/jobs", json={"kind": "sorting", "store": "zoo"}, headers=AUTH)
    assert kind.status_code == 422 and "kind" in kind.json()["detail"]
    outside = tmp_path / "elsewhere"
    make_store(outside)
    (tmp_path / "stores" / "sneaky").symlink_to(outside)
    for store in ("../elsewhere", str(outside), "sneaky", "zoo/../../elsewhere"):
        refused = client.post("/v1/jobs", json=alignment_spec(store=store), headers=AUTH)
        assert refused.status_code == 403, store
        assert "store" in refused.json()["detail"]
    against = alignment_spec(measures=[{"name": "mmd2", "against": str(outside)}])
    assert client.post("/v1/jobs", json=against, headers=AUTH).status_code == 403
    huge = {"store": "zoo", "measures": MEASURES, "representations": ["x" * 100] * 20_000}
    assert client.post("/v1/jobs", json=huge, headers=AUTH).status_code == 413
    assert client.get("/v1/jobs", headers=AUTH).json() == []  # nothing was queued
    response = client.get("/v1/stores/../elsewhere/representations", headers=AUTH)
    assert response.status_code in (403, 404)
    assert client.get("/v1/stores/sneaky/representations", headers=AUTH).status_code == 403


def test_no_token_appears_in_responses_or_logs(service):
    client, tmp_path = service
    job = client.post("/v1/jobs", json=alignment_spec(), headers=AUTH).json()
    wait_for(client, job["id"])
    paths = ("/v1/jobs", f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/logs", "/metrics")
    seen = [client.get(p, headers=AUTH).text for p in paths]
    files = (tmp_path / "state").rglob("*")
    seen += [p.read_text(errors="replace") for p in files if p.suffix in (".txt", ".json")]
    assert not any(TOKEN in text or "second-token" in text for text in seen)


# -- jobs --------------------------------------------------------------------------------------


@both_databases
def test_a_job_submitted_over_http_equals_repalign_run(service):
    client, tmp_path = service
    created = client.post("/v1/jobs", json=alignment_spec(), headers=AUTH)
    assert created.status_code == 201
    job = wait_for(client, created.json()["id"])
    assert job["status"] == "succeeded", client.get(f"/v1/jobs/{job['id']}/logs", headers=AUTH).text
    assert job["mlflow_run_id"] and job["attempts"] == 1 and job["finished_at"]
    records = client.get(f"/v1/jobs/{job['id']}/result", headers=AUTH).json()
    spec = parse_spec({**alignment_spec(), "store": str(tmp_path / "stores" / "zoo"),
                       "out": str(tmp_path / "direct")})  # fmt: skip
    expected = run_alignment(spec, quiet=True).table.to_pylist()
    assert len(records) == len(expected) == 3 * 6
    for got, want in zip(records, expected, strict=True):
        assert {k: got[k] for k in ("rep_a", "rep_b", "measure", "estimator", "n", "status")} == {
            k: want[k] for k in ("rep_a", "rep_b", "measure", "estimator", "n", "status")
        }
        assert got["value"] == pytest.approx(want["value"], rel=1e-12)
    parquet = client.get(f"/v1/jobs/{job['id']}/result?format=parquet", headers=AUTH)
    assert pq.read_table(pa.BufferReader(parquet.content)).to_pylist() == records
    csv = client.get(f"/v1/jobs/{job['id']}/result?format=csv", headers=AUTH).text
    assert csv.splitlines()[0].startswith('"rep_a","rep_b","measure"')
    assert len(csv.splitlines()) == 1 + len(records)
    logs = client.get(f"/v1/jobs/{job['id']}/logs", headers=AUTH).text
    assert "attempt started" in logs and job["mlflow_run_id"] in logs
    matrix = client.get(
        "/v1/matrices?experiment=service-test&measure=cka&kernel=linear&estimator=song",
        headers=AUTH,
    ).json()
    assert matrix["run_id"] == job["mlflow_run_id"]
    assert matrix["names"] == ["m0.fc1", "m0.fc2", "m1.fc1"]
    song = {(r["rep_a"], r["rep_b"]): r["value"] for r in records if r["estimator"] == "song"}
    assert matrix["values"][0][2] == pytest.approx(song[("m0.fc1", "m1.fc1")])
    models = client.get("/v1/models?experiment=service-test&estimator=song", headers=AUTH).json()
    assert models["run_id"] == job["mlflow_run_id"]
    (pair,) = models["models"]  # m0 (two layers) and m1 (one)
    across = [v for (a, b), v in song.items() if a.split(".")[0] != b.split(".")[0]]
    assert (pair["model_a"], pair["model_b"], pair["layer_pairs"]) == ("m0", "m1", 2)
    assert pair["value"] == max(across)
    stores = client.get("/v1/stores", headers=AUTH).json()
    assert [s["name"] for s in stores] == ["zoo"] and stores[0]["representations"] == 3
    reps = client.get("/v1/stores/zoo/representations", headers=AUTH).json()
    assert {r["name"]: r["dim"] for r in reps} == {"m0.fc1": 4, "m0.fc2": 5, "m1.fc1": 6}


@both_databases
def test_a_failing_job_reports_why_and_a_missing_result_is_409(service):
    client, tmp_path = service
    store = make_store(tmp_path / "stores" / "damaged")  # its manifests pass the submit checks
    (store / "m0.fc1" / "part-00000.parquet").write_bytes(b"not parquet")
    job = client.post("/v1/jobs", json=alignment_spec(store="damaged"), headers=AUTH).json()
    done = wait_for(client, job["id"])
    assert done["status"] == "failed" and "exit status" in done["error"]
    assert "part-00000.parquet" in done["error"]  # the reason, without the server's folders
    assert str(tmp_path) not in done["error"] and "--tracking-uri" not in done["error"]
    assert "--tracking-uri" in client.get(f"/v1/jobs/{job['id']}/logs", headers=AUTH).text
    assert client.get(f"/v1/jobs/{job['id']}/result", headers=AUTH).status_code == 409
    assert client.get("/v1/jobs/nope", headers=AUTH).status_code == 404


def test_cancelling_stops_a_running_job_and_a_queued_one(stand_in, monkeypatch):
    client, _ = stand_in
    monkeypatch.setenv(SECONDS_ENV, "600")
    spec = alignment_spec()
    ids = [client.post("/v1/jobs", json=spec, headers=AUTH).json()["id"] for _ in range(3)]
    running = wait_for(client, ids[0], statuses=("running",))
    deadline = time.monotonic() + 120
    while running["progress"] is None:
        assert time.monotonic() < deadline, running
        time.sleep(0.3)
        running = client.get(f"/v1/jobs/{ids[0]}", headers=AUTH).json()
    progress = running["progress"]
    assert progress["stage"] == STAGE and 0 <= progress["done"] < progress["total"]
    assert progress["fraction"] == pytest.approx(progress["done"] / progress["total"])
    pid = client.app.state.service.runner.handles[ids[0]].pid
    cancelled = client.delete(f"/v1/jobs/{ids[0]}", headers=AUTH).json()
    assert cancelled["status"] == "cancelled" and running["status"] == "running"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert client.delete(f"/v1/jobs/{ids[2]}", headers=AUTH).json()["status"] == "cancelled"
    client.delete(f"/v1/jobs/{ids[1]}", headers=AUTH)
    statuses = {j["id"]: j["status"] for j in client.get("/v1/jobs", headers=AUTH).json()}
    assert all(statuses[i] == "cancelled" for i in ids)


def test_twenty_concurrent_submissions_all_finish_within_the_limit(stand_in):
    client, _ = stand_in
    ids, errors = [], []

    def submit():
        response = client.post("/v1/jobs", json=alignment_spec(), headers=AUTH)
        (ids if response.status_code == 201 else errors).append(response)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [r.json()["id"] for r in ids]
    assert not errors and len(set(ids)) == 20
    most = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        jobs = client.get("/v1/jobs", headers=AUTH).json()
        most = max(most, sum(j["status"] == "running" for j in jobs))
        if all(j["status"] == "succeeded" for j in jobs):
            break
        assert not any(j["status"] in ("failed", "cancelled") for j in jobs)
        time.sleep(0.2)
    assert len(jobs) == 20 and all(j["status"] == "succeeded" for j in jobs)
    assert all(j["attempts"] == 1 for j in jobs)
    assert 1 <= most <= 2
    metrics = client.get("/metrics", headers=AUTH).text
    assert 'repalign_jobs{status="succeeded"} 20.0' in metrics
    (peak,) = [line for line in metrics.splitlines() if line.startswith("repalign_running_peak ")]
    peak = float(peak.split()[1])
    assert 1 <= peak <= 2


def test_openapi_documents_the_v1_routes(service):
    client, _ = service
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/logs",
                 "/v1/jobs/{job_id}/result", "/v1/matrices", "/v1/models", "/v1/stores",
                 "/v1/stores/{name}/representations", "/v1/schedules",
                 "/v1/schedules/{schedule_id}", "/healthz", "/metrics"):  # fmt: skip
        assert path in paths, path
    # the 422 it documents is the one-line error it answers, not FastAPI's list of errors
    submit = paths["/v1/jobs"]["post"]["responses"]["422"]
    assert submit["content"]["application/json"]["schema"]["$ref"].endswith("/Problem")
    bad = client.post("/v1/jobs", json={"measures": "cka"}, headers=AUTH)
    assert bad.status_code == 422 and isinstance(bad.json()["detail"], str)


@both_databases
def test_schedules_persist_and_bad_cron_is_422(service):
    client, _ = service
    body = {"cron": "0 2 * * *", "timezone": "Europe/Rome", "spec": alignment_spec()}
    created = client.post("/v1/schedules", json=body, headers=AUTH)
    assert created.status_code == 201
    schedule = created.json()
    assert schedule["next_run_at"].endswith(("+00:00", "Z")) or "T" in schedule["next_run_at"]
    bad = client.post("/v1/schedules", json={**body, "cron": "every night"}, headers=AUTH)
    assert bad.status_code == 422 and "cron" in bad.json()["detail"]
    zone = client.post("/v1/schedules", json={**body, "timezone": "Mars/Olympus"}, headers=AUTH)
    assert zone.status_code == 422 and "timezone" in zone.json()["detail"]
    listed = client.get("/v1/schedules", headers=AUTH).json()
    assert [s["id"] for s in listed] == [schedule["id"]]
    assert client.delete(f"/v1/schedules/{schedule['id']}", headers=AUTH).status_code == 204
    assert client.get("/v1/schedules", headers=AUTH).json() == []
    assert json.loads(json.dumps(listed))[0]["spec"]["measures"][0]["name"] == "cka"


# -- the service as a process: restart -------------------------------------------------------


class ServiceProcess:
    """`repalign serve` as a user runs it, on 127.0.0.1: its jobs join the Ray at
    ``ray_address``, or with ``stand_in`` are `tests.stand_in_repalign` (``env`` is added to
    the service's environment, hence its jobs')."""

    def __init__(self, tmp_path, port, *, ray_address=None, stand_in=False, env=None):
        self.tmp_path, self.port = tmp_path, port
        self.url = f"http://127.0.0.1:{port}"
        self.ray_address, self.stand_in, self.env = ray_address, stand_in, env or {}
        self.process = None

    def start(self):
        env = {**os.environ, "REPALIGN_API_TOKENS": TOKEN, "RAY_AUTH_MODE": "disabled", **self.env}
        env.pop("RAY_ADDRESS", None)
        serve = [sys.executable, "-m", "repalign", "serve"]
        if self.stand_in:
            code = "import sys, tests.stand_in_repalign as s; sys.exit(s.serve(sys.argv[1:]))"
            serve = [sys.executable, "-c", code]
        command = [*serve, "--port", str(self.port),
                   "--store-root", str(self.tmp_path / "stores"), "--max-running", "1",
                   "--state-dir", str(self.tmp_path / "state")]  # fmt: skip
        if self.ray_address:
            command += ["--ray-address", self.ray_address]
        log = open(self.tmp_path / "serve.log", "ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError((self.tmp_path / "serve.log").read_text())

    def kill(self):
        self.process.kill()
        self.process.wait()

    def get(self, path):
        return httpx.get(self.url + path, headers=AUTH, timeout=30).json()

    def post(self, path, body):
        return httpx.post(self.url + path, json=body, headers=AUTH, timeout=30)


def test_a_restarted_service_keeps_every_job_and_schedule_and_runs_each_once(
    tmp_path, empty_mlflow_store
):
    fresh_state(tmp_path, empty_mlflow_store)
    make_store(tmp_path / "stores" / "zoo")
    ledger = tmp_path / "finished-runs"
    stand_ins = {SECONDS_ENV: "3", LEDGER_ENV: str(ledger)}
    service = ServiceProcess(tmp_path, free_port(), stand_in=True, env=stand_ins).start()
    try:
        ids = [service.post("/v1/jobs", alignment_spec()).json()["id"] for _ in range(3)]
        schedule = service.post(
            "/v1/schedules", {"cron": "0 2 * * *", "spec": alignment_spec()}
        ).json()
        deadline = time.monotonic() + 120
        while service.get(f"/v1/jobs/{ids[0]}")["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        service.kill()  # mid-queue: job 0 running, jobs 1 and 2 queued
        service.start()
        assert [s["id"] for s in service.get("/v1/schedules")] == [schedule["id"]]
        deadline = time.monotonic() + 300
        while True:
            jobs = {job["id"]: job for job in service.get("/v1/jobs")}
            if all(job["status"] == "succeeded" for job in jobs.values()):
                break
            assert not any(j["status"] in ("failed", "cancelled") for j in jobs.values()), jobs
            assert time.monotonic() < deadline, jobs
            time.sleep(0.3)
        assert set(jobs) == set(ids)
        first = jobs[ids[0]]
        assert first["attempts"] in (1, 2)
        if first["attempts"] == 2:
            log = httpx.get(f"{service.url}/v1/jobs/{ids[0]}/logs", headers=AUTH).text
            assert "queued again: the service stopped while attempt 1 ran" in log
        assert [jobs[i]["attempts"] for i in ids[1:]] == [1, 1]
        # each job's run finished once: an attempt stopped by the restart logged nothing
        finished = ledger.read_text().split()
        assert sorted(finished) == sorted(j["mlflow_run_id"] for j in jobs.values())
    finally:
        service.kill()


def test_a_job_stopped_after_logging_its_run_succeeds_after_a_restart_with_that_one_run(
    tmp_path, empty_mlflow_store
):
    """The restart race: the job had marked its MLflow run FINISHED but not yet written
    run.json. Queued again, it would log a second run; the service finishes its upload."""
    from mlflow import MlflowClient

    fresh_state(tmp_path, empty_mlflow_store)
    make_store(tmp_path / "stores" / "zoo")
    ledger = tmp_path / "finished-runs"
    stand_ins = {SECONDS_ENV: "0.2", LEDGER_ENV: str(ledger), HANGS_ENV: "1"}
    service = ServiceProcess(tmp_path, free_port(), stand_in=True, env=stand_ins).start()
    try:
        job_id = service.post("/v1/jobs", alignment_spec()).json()["id"]
        deadline = time.monotonic() + 120
        while not (ledger.exists() and ledger.read_text().strip()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        service.kill()  # the job's run is FINISHED; its process waits, run.json unwritten
        service.start()
        while (job := service.get(f"/v1/jobs/{job_id}"))["status"] != "succeeded":
            assert job["status"] in ("running", "queued") and time.monotonic() < deadline, job
            time.sleep(0.2)
        (logged,) = ledger.read_text().split()
        assert job["attempts"] == 1 and job["mlflow_run_id"] == logged
        client = MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("service-test").experiment_id
        assert [run.info.run_id for run in client.search_runs([experiment])] == [logged]
        log = httpx.get(f"{service.url}/v1/jobs/{job_id}/logs", headers=AUTH).text
        assert "results complete; finishing their upload" in log
    finally:
        service.kill()


# -- nightly comparisons ---------------------------------------------------------------------


def succeeded_jobs_of(client, schedule_id):
    jobs = client.get("/v1/jobs", headers=AUTH).json()
    return [j for j in jobs if j["schedule_id"] == schedule_id and j["status"] == "succeeded"]


def test_a_schedule_computes_only_new_pairs_and_reports_the_new_representation(service):
    client, tmp_path = service
    store = tmp_path / "stores" / "zoo"
    body = {"cron": "* * * * * *", "spec": alignment_spec(experiment="nightly"), "threshold": 0.01}
    schedule = client.post("/v1/schedules", json=body, headers=AUTH).json()  # every second
    deadline = time.monotonic() + 240
    while not succeeded_jobs_of(client, schedule["id"]):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    (first,) = succeeded_jobs_of(client, schedule["id"])
    report = client.get(f"/v1/jobs/{first['id']}/changes", headers=AUTH).json()
    assert report["plan"] == "full" and report["moved"] == []
    rng = np.random.default_rng(9)
    write_representation(
        store, "m2.fc1", np.arange(400), rng.standard_normal((400, 3)).astype(np.float32)
    )
    while True:
        later = [
            j
            for j in succeeded_jobs_of(client, schedule["id"])
            if j["created_at"] > first["finished_at"]
        ]
        if later:
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    job = later[-1]
    report = client.get(f"/v1/jobs/{job['id']}/changes", headers=AUTH).json()
    assert report["plan"] == "incremental" and report["new"] == ["m2.fc1"]
    assert report["changed"] == [] and report["removed"] == []
    out = tmp_path / "state" / "jobs" / job["id"] / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["blocks_computed"] == 4  # m2.fc1 with each of the 3 others, and itself
    table = client.get(f"/v1/jobs/{job['id']}/result", headers=AUTH).json()
    assert len(table) == len(MEASURES) * 4 * 5 // 2  # a complete matrix of 4 representations
    matrix = client.get("/v1/matrices?experiment=nightly&estimator=biased", headers=AUTH).json()
    assert matrix["run_id"] == job["mlflow_run_id"] and "m2.fc1" in matrix["names"]
    # each night's values join the schedule's trend, in MLflow under its parent run
    pair = {"rep_a": "m0.fc2", "rep_b": "m0.fc1"}
    trend = client.get(f"/v1/schedules/{schedule['id']}/trend", params=pair, headers=AUTH).json()
    assert trend["pair"] == ["m0.fc1", "m0.fc2"]
    assert trend["configurations"] == ["cka.linear.biased", "cka.linear.song", "procrustes.linear"]
    nights = [point["values"]["cka.linear.biased"] for point in trend["points"]]
    for done in (first, job):
        rows = pq.read_table(tmp_path / "state" / "jobs" / done["id"] / "out" / "alignment.parquet")
        (value,) = [
            row["value"]
            for row in rows.to_pylist()
            if (row["measure"], row["estimator"]) == ("cka", "biased")
            and {row["rep_a"], row["rep_b"]} == {"m0.fc1", "m0.fc2"}
        ]
        assert value in nights
    gone = client.get(f"/v1/schedules/{schedule['id']}/trend",
                      params={"rep_a": "m0.fc1", "rep_b": "m9.fc1"}, headers=AUTH)  # fmt: skip
    assert gone.status_code == 404 and "m0.fc1 / m9.fc1 has no value" in gone.json()["detail"]
    jobs = [j for j in client.get("/v1/jobs", headers=AUTH).json() if j["schedule_id"]]
    assert sum(j["status"] in ("queued", "running") for j in jobs) <= 1  # runs never pile up
    client.delete(f"/v1/schedules/{schedule['id']}", headers=AUTH)


def test_the_client_commands_talk_to_a_running_service(tmp_path, ray_address, empty_mlflow_store):
    fresh_state(tmp_path, empty_mlflow_store)
    make_store(tmp_path / "stores" / "zoo")
    (tmp_path / "job.yaml").write_text(json.dumps(alignment_spec(experiment="from-cli")))
    service = ServiceProcess(tmp_path, free_port(), ray_address=ray_address).start()
    env = {**os.environ, "REPALIGN_URL": service.url, "REPALIGN_TOKEN": TOKEN}
    env.pop("REPALIGN_API_TOKENS", None)

    def repalign(*arguments, token=True):
        environment = env if token else {k: v for k, v in env.items() if k != "REPALIGN_TOKEN"}
        command = [sys.executable, "-m", "repalign", *arguments]
        return subprocess.run(
            command, capture_output=True, text=True, env=environment, cwd=tmp_path
        )

    try:
        submitted = repalign("submit", "job.yaml")
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        deadline = time.monotonic() + 240
        while service.get(f"/v1/jobs/{job_id}")["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert json.loads(repalign("status", job_id).stdout)["status"] == "succeeded"
        listing = repalign("status").stdout
        assert job_id in listing and "succeeded" in listing
        query = repalign("query", "--experiment", "from-cli", "--estimator", "song")
        assert query.returncode == 0, query.stderr
        lines = query.stdout.splitlines()
        assert lines[0].startswith("run ") and [line.split()[0] for line in lines[1:]] == [
            "m0.fc1", "m0.fc2", "m1.fc1"
        ]  # fmt: skip
        uri = f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
        direct = repalign(
            "query", "--experiment", "from-cli", "--estimator", "song", "--tracking-uri", uri
        )
        assert direct.stdout == query.stdout
        added = repalign("schedule", "add", "job.yaml", "--cron", "0 2 * * *", "--timezone",
                         "Europe/Rome")  # fmt: skip
        assert added.returncode == 0, added.stderr
        schedule_id = added.stdout.split()[0]
        assert schedule_id in repalign("schedule", "ls").stdout
        assert repalign("schedule", "rm", schedule_id).returncode == 0
        assert schedule_id not in repalign("schedule", "ls").stdout
        refused = repalign("status", token=False)
        assert refused.returncode != 0 and "REPALIGN_TOKEN" in refused.stderr
        missing = repalign("status", "0" * 32)
        assert missing.returncode == 1 and "HTTP 404" in missing.stderr
    finally:
        service.kill()


# -- on a Ray cluster, through the Ray Jobs API ----------------------------------------------


def test_jobs_go_to_a_ray_cluster_through_the_jobs_api(tmp_path, monkeypatch):
    """With the cluster's dashboard as its Ray address, the service submits each job with the
    Jobs API; the job runs on the cluster (its summary names the cluster's nodes)."""
    from tests.servers import ray_cluster

    # the cluster runs `python -m repalign ...`: this environment's python must be `python`
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    make_store(tmp_path / "stores" / "zoo")
    with ray_cluster() as cluster:
        settings = settings_for(tmp_path, ray_address=cluster.dashboard_url)
        with TestClient(create_app(settings)) as client:
            job_id = client.post("/v1/jobs", json=alignment_spec(), headers=AUTH).json()["id"]
            job = wait_for(client, job_id)
            logs = client.get(f"/v1/jobs/{job_id}/logs", headers=AUTH).text
            assert job["status"] == "succeeded", logs
            assert f"submitted to the Ray cluster as repalign-{job_id}-1" in logs
            assert job["mlflow_run_id"] in logs  # the cluster's log of the command
            records = client.get(f"/v1/jobs/{job_id}/result", headers=AUTH).json()
            assert len(records) == 3 * 6 and all(r["status"] == "ok" for r in records)
            summary = json.loads(
                (tmp_path / "state" / "jobs" / job_id / "out" / "summary.json").read_text()
            )
            assert set(summary["nodes"]) <= {cluster.head_node_id, cluster.worker_node_id}
            assert summary["nodes"]


def test_a_job_that_cannot_start_fails_with_the_reason_and_the_runner_goes_on(stand_in):
    client, _ = stand_in
    runner = client.app.state.service.runner
    start = runner.launcher.start

    def broken(*arguments):
        runner.launcher.start = start  # only the first start fails
        raise OSError("no space left on device")

    runner.launcher.start = broken
    first = client.post("/v1/jobs", json=alignment_spec(), headers=AUTH).json()["id"]
    failed = wait_for(client, first)
    assert failed["status"] == "failed"
    assert failed["error"] == "could not start: OSError: no space left on device"
    second = client.post("/v1/jobs", json=alignment_spec(), headers=AUTH).json()["id"]
    assert wait_for(client, second)["status"] == "succeeded"
