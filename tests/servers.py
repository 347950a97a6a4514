"""Real servers for tests: a throwaway PostgreSQL and a headless Chromium.

`chromium_dump_dom` loads one page; `chromium_page` drives a page over the DevTools protocol
(navigate, type, click, evaluate script), as a user would, without a WebDriver.

Both come from system packages (Debian's ``postgresql`` and ``chromium``), which
``make test`` installs through ``.ci/system-packages``. A missing binary raises
`MissingSystemPackage`, whose message says so.
"""

import fcntl
import glob
import json
import os
import pwd
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
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
def chromium_page(*, timeout=60):
    """Start headless Chromium with one blank page; yield it as a `ChromiumPage`; close it.

    The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    it reads commands on its file descriptor 3 and answers on 4, as NUL-terminated JSON), so
    neither a WebDriver nor a debugging port is needed. Flags as in `chromium_dump_dom`, and
    ``--no-proxy-server`` so that local addresses are reached directly.
    """
    with tempfile.TemporaryDirectory(prefix="repalign-chromium-") as profile:
        log = Path(profile) / "stderr.txt"
        commands_read, commands_write = os.pipe()
        answers_read, answers_write = os.pipe()
        # copies above 4, so that putting them on 3 and 4 in the child overwrites neither
        child_in = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(answers_write, fcntl.F_DUPFD, 10)
        os.close(commands_read)
        os.close(answers_write)

        def onto_3_and_4():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--no-proxy-server", "--no-first-run",
                 f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                preexec_fn=onto_3_and_4, pass_fds=(3, 4),
            )  # fmt: skip
        os.close(child_in)
        os.close(child_out)
        browser = _DevToolsPipe(process, commands_write, answers_read, log, timeout)
        try:
            target = browser.call("Target.createTarget", url="about:blank")["targetId"]
            session = browser.call("Target.attachToTarget", targetId=target, flatten=True)
            page = ChromiumPage(browser, session["sessionId"])
            page.call("Page.enable")
            yield page
        finally:
            browser.close()


class ChromiumPage:
    """One page of a browser started by `chromium_page`."""

    def __init__(self, browser, session):
        self.browser, self.session = browser, session

    def call(self, method, **params):
        """Send a DevTools command to the page; its result."""
        return self.browser.call(method, session=self.session, **params)

    def goto(self, url):
        """Load ``url`` and wait for its load event (images included)."""
        self.call("Page.navigate", url=url)
        self.wait_for_load()

    def wait_for_load(self):
        """Wait for the next load event of the page, e.g. after a click that submits a form."""
        self.browser.event("Page.loadEventFired", self.session)

    def type(self, text):
        """Type ``text`` into the focused element, as the keyboard would insert it."""
        self.call("Input.insertText", text=text)

    def evaluate(self, expression):
        """The value of a JavaScript expression (a promise is awaited), as JSON gives it."""
        answer = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression!r} raised: {answer['exceptionDetails']}")
        return answer["result"].get("value")


class _DevToolsPipe:
    """Commands to a browser and its answers and events, over the pipe of `chromium_page`."""

    def __init__(self, process, commands, answers, log, timeout):
        self.process, self.commands, self.log, self.timeout = process, commands, log, timeout
        self.last_id = 0
        self.pending = []  # messages read but not yet asked for
        self.messages = queue.Queue()
        threading.Thread(target=self._read, args=(answers,), daemon=True).start()

    def _read(self, answers):
        buffer = b""
        with open(answers, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                *complete, buffer = (buffer + chunk).split(b"\0")
                for message in complete:
                    self.messages.put(json.loads(message))
        self.messages.put(None)  # the browser closed its end

    def call(self, method, session=None, **params):
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        number = self.last_id
        answer = self._next(lambda m: m.get("id") == number, method)
        if "error" in answer:
            raise RuntimeError(f"DevTools {method} failed: {answer['error']}")
        return answer["result"]

    def event(self, method, session):
        return self._next(lambda m: m.get("method") == method and m.get("sessionId") == session,
                          method)  # fmt: skip

    def _next(self, wanted, what):
        for i, message in enumerate(self.pending):
            if wanted(message):
                return self.pending.pop(i)
        try:
            while True:
                message = self.messages.get(timeout=self.timeout)
                if message is None:
                    raise RuntimeError(f"chromium exited while waiting for {what}{self._stderr()}")
                if wanted(message):
                    return message
                self.pending.append(message)
        except queue.Empty:
            raise TimeoutError(
                f"no {what} from chromium in {self.timeout} s{self._stderr()}"
            ) from None

    def _stderr(self):
        return f"; its stderr:\n{self.log.read_text(errors='replace')[-4000:]}"

    def close(self):
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        finally:
            os.close(self.commands)
            try:
                self.process.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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
