"""The real servers of tests/servers.py work, and leave nothing behind.

These tests do not skip when a system package is missing: `make test` installs PostgreSQL
and Chromium, and if that ever breaks, these fail where the fixtures that use them would skip.
"""

import functools
import http.server
import socket
import tempfile
import threading
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from tests import servers
from tests.servers import (
    MissingSystemPackage,
    chromium_binary,
    chromium_dump_dom,
    postgres_bindir,
    postgres_server,
)

pytestmark = pytest.mark.slow  # PostgreSQL servers and a browser


def port_is_open(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_using(folder):
    """Processes whose command line mentions `folder` (the postmaster names its data folder)."""
    return [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any(str(folder) in arg for arg in p.info["cmdline"] or ())
    ]


@pytest.fixture
def created_folders(monkeypatch):
    """The folders that tempfile.mkdtemp creates during the test."""
    created = []
    mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args, **kwargs):
        created.append(Path(mkdtemp(*args, **kwargs)))
        return created[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    return created


def test_postgres_server_stores_rows_then_stops_and_deletes_its_folder(created_folders):
    with postgres_server(database="jobs") as url:
        engine = sa.create_engine(url)
        jobs = sa.Table(
            "jobs",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("state", sa.String(20), nullable=False),
        )
        with engine.begin() as conn:
            jobs.create(conn)
            conn.execute(jobs.insert(), [{"id": 1, "state": "queued"}])
        with engine.connect() as conn:
            assert conn.execute(sa.select(jobs.c.state).where(jobs.c.id == 1)).scalar_one() == (
                "queued"
            )
            assert conn.dialect.name == "postgresql"
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "jobs"
            data = Path(conn.execute(sa.text("SHOW data_directory")).scalar_one())
        engine.dispose()
        port = engine.url.port
        assert engine.url.host == "127.0.0.1"
        assert port_is_open(port)
        assert data.is_dir()

    [folder] = created_folders
    assert data.parent == folder
    assert not port_is_open(port)
    assert not folder.exists()
    assert processes_using(folder) == []


def test_postgres_server_stops_and_deletes_its_folder_when_start_up_fails(created_folders):
    # createdb fails here, after the server is up: "postgres" exists in every new cluster
    with pytest.raises(RuntimeError, match='database "postgres" already exists'):
        with postgres_server(database="postgres"):
            pytest.fail("postgres_server yielded although createdb failed")

    [folder] = created_folders
    assert not folder.exists()
    assert processes_using(folder) == []


def test_postgres_server_stops_and_deletes_its_folder_when_the_body_raises(created_folders):
    with pytest.raises(KeyError, match="from the body"):
        with postgres_server() as url:
            port = sa.make_url(url).port
            raise KeyError("from the body")

    [folder] = created_folders
    assert not port_is_open(port)
    assert not folder.exists()
    assert processes_using(folder) == []


def test_postgres_url_fixture_serves_its_database(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "test"
    engine.dispose()


def test_postgres_bindir_names_the_install_script_when_initdb_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(servers.glob, "glob", lambda pattern: [])
    with pytest.raises(MissingSystemPackage, match=r"initdb .*\.ci/system-packages"):
        postgres_bindir()


@pytest.fixture
def page_server(tmp_path):
    """An http.server on 127.0.0.1 serving `tmp_path`; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path)
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        thread.join()


def test_headless_chromium_runs_the_page_script(tmp_path, page_server):
    # the text appears only if JavaScript runs: the HTML holds neither "status: 42" nor 42
    (tmp_path / "status.html").write_text(
        "<!doctype html><html><body><p id='status'>no script ran</p><script>"
        "document.getElementById('status').textContent = 'status: ' + 6 * 7;"
        "</script></body></html>"
    )
    dom = chromium_dump_dom(f"{page_server}/status.html")
    assert '<p id="status">status: 42</p>' in dom
    assert "no script ran" not in dom


def test_chromium_binary_names_the_install_script_when_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingSystemPackage, match=r"chromium .*\.ci/system-packages"):
        chromium_binary()


def test_chromium_dump_dom_reports_a_failed_browser(monkeypatch):
    monkeypatch.setattr(servers, "chromium_binary", lambda: "false")
    with pytest.raises(RuntimeError, match="exited with 1"):
        chromium_dump_dom("about:blank")
