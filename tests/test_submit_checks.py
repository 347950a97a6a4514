"""Bad job specs are refused at submit, with nothing started (docs/design.md §10): through the
API (422 naming the field, 404 for a missing store) and `repalign run` (exit 2, one line,
before Ray); the library's memory plan covers what the engine allocates."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient

from jobs.tasks import NeighborState
from repalign.approx import RandomFourierFeatures
from repalign.preflight import JobCheckError, MissingStoreError, check_job, planned_memory
from repalign.spec import parse_spec
from repalign.stats import GramState
from repalign.store import open_store
from repalign.store.format import MANIFEST
from services.main import create_app
from tests.test_service import AUTH, alignment_spec, make_store, settings_for

GIB = 2**30
ROWS = 400  # make_store's rows: n of the store "zoo"


@pytest.fixture
def client(tmp_path):
    """The service in-process (no job is expected to start), its worker given 4 GiB."""
    settings = settings_for(tmp_path, worker_memory=4 * GIB)
    make_store(tmp_path / "stores" / "zoo")
    with TestClient(create_app(settings)) as client:
        yield client


def rff(features):
    return {"name": "cka", "kernel": "rbf", "approx": "rff", "features": features}


def nystrom(features):
    return {"name": "cka", "kernel": "rbf", "approx": "nystrom", "features": features}


BAD = [
    ({"store": "no-such-store"}, 404, "store"),
    ({"measures": [{"name": "mmd2", "against": "no-such-store"}]}, 404, "measures.0.against"),
    ({"representations": ["m0.*", "m9.*"]}, 422, "representations.1"),
    ({"representations": ["m0.fc3"]}, 422, "representations.0"),
    ({"measures": [{"name": "cka"}, {"name": "mutual_knn", "k": ROWS}]}, 422, "measures.1.k"),
    ({"measures": [{"name": "cknna", "k": ROWS + 5}]}, 422, "measures.0.k"),
    # the example: 10⁸ features of 3 representations
    ({"measures": [rff(100_000_000)]}, 422, "measures.0.features"),
    ({"measures": [rff(1000)]}, 422, "measures.0.features"),  # not a multiple of 16 blocks
    # Nyström's kernel columns are rows: as many as the rows is the exact kernel, slower
    ({"measures": [nystrom(ROWS)]}, 422, "measures.0.features"),
    # ... and its default, 1,024 features, against ROWS
    (
        {"measures": [{"name": "cka", "kernel": "rbf", "approx": "nystrom"}]},
        422,
        "measures.0.features",
    ),
]


@pytest.mark.parametrize(("change", "code", "field"), BAD)
def test_a_spec_that_cannot_run_is_refused_at_submit_and_nothing_starts(
    client, tmp_path, change, code, field
):
    response = client.post("/v1/jobs", json=alignment_spec(**change), headers=AUTH)
    assert response.status_code == code, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: ")
    assert str(tmp_path) not in detail  # the server's folders stay on the server
    assert client.get("/v1/jobs", headers=AUTH).json() == []
    assert client.app.state.service.runner.handles == {}
    assert not (tmp_path / "state" / "jobs").exists()


def test_a_schedule_that_cannot_run_is_refused(client):
    body = {"cron": "0 2 * * *", "spec": alignment_spec(representations=["zz*"])}
    response = client.post("/v1/schedules", json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("representations.0: ")
    assert client.get("/v1/schedules", headers=AUTH).json() == []


def test_the_worker_memory_decides(tmp_path):
    """One spec, two workers: the one with less memory than the plan refuses it."""
    store = make_store(tmp_path / "zoo")
    spec = parse_spec({"store": str(store), "out": "x", "measures": [rff(16 * 1024)]})
    names = ["m0.fc1", "m0.fc2", "m1.fc1"]
    need = max(n.bytes for n in planned_memory(spec, open_store(store), names, 2**40))
    check_job(spec, memory_bytes=need)
    with pytest.raises(JobCheckError, match=r"^measures\.0\.features: .* GiB .* than the worker"):
        check_job(spec, memory_bytes=need - 1)


def test_the_memory_plan_covers_what_the_engine_allocates(tmp_path):
    """Each pass's plan is at least the arrays its process holds at once, built here as the
    engine builds them (`jobs.alignment`), and at most a few times more."""
    store_path = make_store(tmp_path / "zoo", rows=300)
    store = open_store(store_path)
    names = list(store.representations)
    dims = [store[name].dim for name in names]
    measures = [{"name": "cka"}, rff(64), {"name": "mutual_knn", "k": 7}]
    spec = parse_spec({"store": str(store_path), "out": "x", "measures": measures})
    plans = {need.field: need.bytes for need in planned_memory(spec, store, names, 2**40)}

    moments = 2 * GramState(dims)._upper.nbytes  # the sum and one unit's part, untiled
    maps = [RandomFourierFeatures(d, 64, 1.0, seed=0) for d in dims]
    features = 2 * GramState([64] * len(dims))._upper.nbytes + sum(m._weights.nbytes for m in maps)
    rng = np.random.default_rng(0)
    found = NeighborState({name: [(0, rng.integers(0, 300, (300, 7)), rng.random((300, 7)))]
                           for name in names})  # fmt: skip
    neighbours = sum(part.nbytes for name in names for part in found.neighbors(name))
    for field, allocated in [("representations", moments), ("measures.1.features", features),
                             ("measures.2.k", neighbours)]:  # fmt: skip
        assert allocated <= plans[field] <= 4 * allocated, field


def test_a_damaged_manifest_is_not_reported_as_a_missing_store(tmp_path):
    store = make_store(tmp_path / "zoo")
    (store / "m0.fc1" / MANIFEST).write_text("{")
    spec = parse_spec({"store": str(store), "out": "x", "measures": [{"name": "cka"}]})
    with pytest.raises(JobCheckError, match=r"^store: .*manifest") as caught:
        check_job(spec, memory_bytes=GIB)
    assert not isinstance(caught.value, MissingStoreError)


def assert_refused_before_ray(command, cases, out):
    """Each ``(arguments, field)`` of ``cases`` makes ``repalign COMMAND`` exit 2 with one line
    naming the field, before Ray (which, if started, would fail to join) and before OUT."""
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}
    for arguments, field in cases:
        done = subprocess.run(
            [sys.executable, "-m", "repalign", command, "--out", str(out), *arguments],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"repalign {command}: error: {field}"), lines
        assert not out.exists()


@pytest.mark.slow
def test_repalign_run_refuses_before_ray_with_exit_2_and_one_line(tmp_path):
    store = make_store(tmp_path / "zoo")
    cases = [
        (["--store", str(tmp_path / "nope"), "--measure", "cka"], "store: "),
        (["--store", str(store), "--measure", "mutual_knn,k=400"], "measures.0.k: "),
        (
            ["--store", str(store), "--measure", "cka", "--representations", "x*"],
            "representations.0: ",
        ),
        (
            ["--store", str(store), "--measure", "cka:rbf,approx=rff,features=100000000"],
            "measures.0.features: ",
        ),
    ]
    assert_refused_before_ray("run", cases, tmp_path / "out")


@pytest.mark.slow
def test_repalign_stitch_refuses_before_ray_with_exit_2_and_one_line(tmp_path):
    store = make_store(tmp_path / "zoo")
    cases = [
        (["--store", str(tmp_path / "nope"), "--pair", "a.x", "b.x"], "store: "),
        (["--store", str(store), "--pair", "nope.x", "nope.y"], "pairs.0.source: "),
    ]
    assert_refused_before_ray("stitch", cases, tmp_path / "out")


@pytest.mark.slow
def test_a_job_never_writes_over_results_not_yet_logged_and_names_the_run_it_replaces(tmp_path):
    """A second job into the same OUT says which MLflow run keeps the results it replaced; a
    job into an OUT whose results wait for `repalign sync` (the tracking server was down) is
    refused, exit 2, before it writes anything there."""
    from jobs.sync import record_pending
    from repalign.contract import PENDING_UPLOAD_FILE, RUN_FILE

    store, out = make_store(tmp_path / "zoo"), tmp_path / "out"
    command = [sys.executable, "-m", "repalign", "run", "--store", str(store), "--out", str(out),
               "--measure", "cka", "--quiet"]  # fmt: skip

    def job():
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)

    first = job()
    assert first.returncode == 0, first.stderr
    assert "replaced" not in first.stdout
    logged = json.loads((out / RUN_FILE).read_text())["run_id"]
    second = job()
    assert second.returncode == 0, second.stderr
    assert f"replaced the results of an earlier job in {out}; its MLflow run {logged}" in (
        second.stdout
    )
    record_pending(out, "alignment", tracking_uri="http://127.0.0.1:1", experiment="repalign")
    kept = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    refused = job()
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"repalign run: error: out: {out} holds an earlier job's")
    assert f"`repalign sync {out}`" in refused.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == kept
    assert (out / PENDING_UPLOAD_FILE).exists()
