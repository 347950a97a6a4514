"""Real servers for tests: a throwaway PostgreSQL and a headless Chromium.

Both come from system packages (Debian's ``postgresql`` and ``chromium``), which
``make test`` installs through ``.ci/system-packages``. A missing binary raises
`MissingSystemPackage`, whose message says so.
"""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path

INSTALL_HINT = "`make test` installs it (.ci/system-packages, as root)"

# initdb refuses to run as root: as root, the server runs as this user, which Debian's
# postgresql package creates (and postgres_server() creates when the binaries came without it)
SERVER_USER = "postgres"

# what the server role and the database created for the tests are called
SUPERUSER = "postgres"


class MissingSystemPackage(FileNotFoundError):
    """A binary that a system package provides is not installed."""


def postgres_bindir():
    """The folder holding ``initdb``, ``pg_ctl`` and ``createdb``.

    Looks in PATH first, then in Debian's ``/usr/lib/postgresql/<version>/bin`` (newest
    version first), which Debian does not put in PATH.
    """
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).resolve().parent
    installed = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if installed:
        newest = max(installed, key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
        return Path(newest).parent
    raise MissingSystemPackage(
        "PostgreSQL's initdb was found neither in PATH nor in /usr/lib/postgresql/*/bin; "
        f"{INSTALL_HINT}."
    )


def chromium_binary():
    """The path of a Chromium that runs headless (``chromium`` or ``chromium-browser``)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path is not None:
            return path
    raise MissingSystemPackage(f"Neither chromium nor chromium-browser is in PATH; {INSTALL_HINT}.")


def chromium_dump_dom(url, *, timeout=60):
    """The DOM that headless Chromium holds for `url` once the page has loaded, as HTML.

    Scripts run, so the DOM shows what they changed. ``--no-sandbox`` lets it run as root
    (CI runs as root), and ``--disable-dev-shm-usage`` keeps it alive where /dev/shm is a
    small tmpfs, as in containers. The profile lives in a temporary folder.
    """
    with tempfile.TemporaryDirectory(prefix="repalign-chromium-") as profile:
        completed = subprocess.run(
            [
                chromium_binary(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if completed.returncode != 0:
        raise RuntimeError(
            f"chromium --dump-dom {url} exited with {completed.returncode}; "
            f"stderr:\n{completed.stderr[-4000:]}"
        )
    return completed.stdout


@contextmanager
def postgres_server(*, database="test", timeout=30):
    """Start a throwaway PostgreSQL server; yield its SQLAlchemy URL; stop and delete it.

    The cluster lives in a new temporary folder. The server listens on 127.0.0.1 only, on a
    free port, with its unix socket in that folder; authentication is ``trust``. Durability
    is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): nothing outlives the
    context. On exit, also after an error, the server is stopped and the folder deleted.

    Parameters
    ----------
    database : str, default="test"
        Name of the database created for the caller.
    timeout : int, default=30
        Seconds each of initdb, start and stop may take.

    Yields
    ------
    str
        ``postgresql+psycopg://postgres@127.0.0.1:PORT/DATABASE``.

    Raises
    ------
    MissingSystemPackage
        If ``initdb`` is not installed.
    """
    bindir = postgres_bindir()
    as_user = _unprivileged_prefix()
    root = Path(tempfile.mkdtemp(prefix="repalign-postgres-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    port = _free_port()
    initdb = [*as_user, bindir / "initdb", f"--pgdata={data}", f"--username={SUPERUSER}"]
    pg_ctl = [*as_user, bindir / "pg_ctl", f"--pgdata={data}", "--wait", f"--timeout={timeout}"]
    createdb = [
        bindir / "createdb",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--username={SUPERUSER}",
    ]
    try:
        sockets.mkdir()
        if as_user:
            shutil.chown(root, SERVER_USER, SERVER_USER)
            shutil.chown(sockets, SERVER_USER, SERVER_USER)
        _run(
            [*initdb, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            timeout=timeout,
            cwd=root,
        )
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{sockets}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        _run([*pg_ctl, f"--log={log}", "start"], timeout=timeout + 5, cwd=root, log=log)
        _run([*createdb, database], timeout=timeout, cwd=root, log=log)
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{database}"
    finally:
        try:
            if (data / "postmaster.pid").exists():
                _run([*pg_ctl, "--mode=fast", "stop"], timeout=timeout + 5, cwd=root, log=log)
        finally:
            shutil.rmtree(root)


def _unprivileged_prefix():
    """The command prefix that runs the server as `SERVER_USER` when we are root; else []."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:  # binaries from elsewhere than Debian's package: make the user once
        _run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            timeout=30,
        )
    return ["runuser", "-u", SERVER_USER, "--"]


def _free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command, *, timeout, cwd=None, log=None):
    """Run `command`; on failure raise with its output and the tail of the server `log`."""
    command = [str(part) for part in command]
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        server_log = log.read_text()[-4000:] if log is not None and log.exists() else ""
        raise RuntimeError(
            f"{' '.join(command)} exited with {completed.returncode}:\n"
            f"{completed.stdout}{completed.stderr}"
            + (f"\nserver log:\n{server_log}" if server_log else "")
        )
    return completed
