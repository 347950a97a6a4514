"""Real servers for tests: a throwaway PostgreSQL and a headless Chromium.

`chromium_dump_dom` loads one page; `chromium_page` drives a page over the DevTools protocol
(navigate, type, click, evaluate script, take a screenshot), as a user would, without a
WebDriver.

Both come from system packages (Debian's ``postgresql`` and ``chromium``), which
``make test`` installs through ``.ci/system-packages``. A missing binary raises
`MissingSystemPackage`, whose message says so.
"""

import base64
import fcntl
import glob
import json
import os
import pwd
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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
        self.browser.forget("Page.loadEventFired", self.session)
        self.call("Page.navigate", url=url)
        self.wait_for_load()

    def wait_for_load(self):
        """Wait for the next load event of the page, e.g. after a click that submits a form."""
        self.browser.event("Page.loadEventFired", self.session)

    def type(self, text):
        """Type ``text`` into the focused element, as the keyboard would insert it."""
        self.call("Input.insertText", text=text)

    def resize(self, width, height):
        """Lay the page out in a window of ``width`` × ``height`` CSS pixels."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def screenshot(self, path):
        """Save the whole page as a PNG file at ``path``. The window is made as tall as the
        page for the shot, then put back: Chromium draws a frame that runs in a process of
        its own (a sandboxed <iframe>) only inside the window."""
        width, height, page_height = self.evaluate(
            "[innerWidth, innerHeight, document.documentElement.scrollHeight]"
        )
        self.resize(width, max(height, page_height))
        try:
            shot = self.call("Page.captureScreenshot", format="png")
        finally:
            self.resize(width, height)
        Path(path).write_bytes(base64.b64decode(shot["data"]))

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

    def forget(self, method, session):
        """Drop the events ``method`` of ``session`` that came and were not waited for (a page
        that refreshed itself fired load events), so that the next wait is for a new one."""
        while True:
            try:
                message = self.messages.get_nowait()
            except queue.Empty:
                break
            if message is None:  # the browser closed: leave that for `_next` to report
                self.messages.put(None)
                break
            self.pending.append(message)
        self.pending = [
            m
            for m in self.pending
            if not (m.get("method") == method and m.get("sessionId") == session)
        ]

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
    port = free_port()
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


TEST_PORTS = range(20_000, 32_000)
"""Where the test servers listen: above Ray's worker ports (10002–19999) and below Linux's
ephemeral range (32768–60999), from which the kernel takes the local port of every outgoing
connection. A port chosen by binding to port 0 lies in that range, and while the server that
was to listen on it starts, any process's connection could take it: a Ray node whose agent
port was taken so died, and its dashboard with it."""
_given_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now, from this test process's share of
    `TEST_PORTS` (pytest-xdist workers get disjoint shares) and never given out before."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    share = TEST_PORTS[worker :: int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))]
    for port in random.sample(share, len(share)):
        if port in _given_ports:
            continue
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise RuntimeError(f"no free port left in {share}")


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


class MlflowServer:
    """An ``mlflow server`` subprocess on 127.0.0.1 that can be stopped and started again on
    the same port with the same stores (see `mlflow_server`)."""

    def __init__(self, backend_url, artifact_root, log, *, timeout):
        self.backend_url, self.artifact_root = backend_url, str(artifact_root)
        self.log, self.timeout = Path(log), timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        """Start the server and wait until ``/health`` answers."""
        if self.process is not None:
            raise RuntimeError(f"the MLflow server at {self.url} is already running")
        # the server's background job runner (huey consumers) is not needed for tracking
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1",
                 "--backend-store-uri", self.backend_url,
                 "--artifacts-destination", self.artifact_root, "--serve-artifacts"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"mlflow server exited at start; its log:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(
            f"mlflow server not healthy in {self.timeout} s; its log:\n{self._log_tail()}"
        )

    def stop(self):
        """Stop the server and its worker processes (its whole process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            self.process.wait()
        finally:
            self.process = None

    def _log_tail(self):
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def mlflow_server(backend_url, artifact_root, *, timeout=60):
    """Start ``mlflow server`` on 127.0.0.1 with a SQL backend store; yield it; stop it.

    Artifacts are proxied (``--serve-artifacts --artifacts-destination artifact_root``): new
    experiments get the artifact root ``mlflow-artifacts:/``, so clients upload and download
    over HTTP and need no access to ``artifact_root``. One worker; the server's job runner is
    off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``).

    Parameters
    ----------
    backend_url : str
        SQLAlchemy URL of the backend store, e.g. ``sqlite:////tmp/x/mlflow.db`` or
        `postgres_server`'s URL.
    artifact_root : path-like
        Folder the server keeps artifacts in.
    timeout : int, default=60
        Seconds a start (until ``/health`` answers) or a stop may take.

    Yields
    ------
    MlflowServer
        ``url`` (``http://127.0.0.1:PORT``), ``stop()``, and ``start()`` to start it again on
        the same port with the same stores. The server's output goes to ``mlflow-server.log``
        beside ``artifact_root``.
    """
    server = MlflowServer(
        backend_url,
        artifact_root,
        Path(artifact_root).parent / "mlflow-server.log",
        timeout=timeout,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- a Ray cluster of two nodes -----------------------------------------------------------------

RAY_CLUSTER_ENV = {
    "RAY_AUTH_MODE": "disabled",
    # the GCS declares a killed node dead within ~2 s, not the default ~30 s
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class RayCluster:
    """A head node and worker nodes started by `ray_cluster`, each its own ``ray start``.

    Attributes
    ----------
    gcs_address : str
        ``127.0.0.1:PORT``, for ``ray.init(address=...)`` and ``ray start --address``.
    dashboard_url : str
        ``http://127.0.0.1:PORT``, for `ray.job_submission.JobSubmissionClient`.
    head_node_id : str
    worker_node_ids : list of str
        Ray node ids of the workers; a worker's changes when it is restarted.
    """

    def __init__(self, root, ray, env, timeout, workers, object_store_bytes):
        self.root, self._ray, self._env, self._timeout = root, ray, env, timeout
        self._object_store_bytes = object_store_bytes
        self.gcs_address = f"127.0.0.1:{free_port()}"
        self.dashboard_url = f"http://127.0.0.1:{free_port()}"
        self.head_node_id = None
        self.worker_node_ids = [None] * workers
        self._head = None
        self._workers = [None] * workers
        self._workers_started = 0

    @property
    def worker_node_id(self):
        """The first worker's node id."""
        return self.worker_node_ids[0]

    def start_head(self):
        self._head = self._start(
            "head",
            [
                "--head",
                f"--port={self.gcs_address.split(':')[1]}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_url.rsplit(':', 1)[1]}",
                f"--ray-client-server-port={free_port()}",
                '--resources={"head": 1}',
            ],
        )
        self.head_node_id = self._wait_for_node("head")

    def restart_worker(self, index=0):
        """Start worker node ``index`` (again, after `kill_worker`); returns its new node id."""
        if self._workers[index] is not None:
            raise RuntimeError(f"worker node {index} is running; kill_worker({index}) first")
        self._workers_started += 1
        resource = f"worker-{index}"
        self._workers[index] = self._start(
            f"worker-{self._workers_started}",
            [f"--address={self.gcs_address}", f'--resources={{"{resource}": 1}}'],
        )
        self.worker_node_ids[index] = self._wait_for_node(resource)
        return self.worker_node_ids[index]

    def kill_worker(self, index=0):
        """SIGKILL every process of worker node ``index`` (its raylet, object store, workers),
        as when a machine is lost; returns once the cluster has declared the node dead."""
        dead = self.worker_node_ids[index]
        _kill_group(self._workers[index])
        self._workers[index] = None
        deadline = time.monotonic() + self._timeout
        while dead in self._alive_nodes():
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {dead} still alive {self._timeout} s after its kill")
            time.sleep(0.2)

    def stop(self):
        for process in (*self._workers, self._head):
            if process is not None:
                _kill_group(process)
        # whatever left its process group (Ray's workers do) still names our folder
        _kill_processes_naming(str(self.root))

    def _start(self, name, options):
        log = open(self.root / f"{name}.log", "wb")  # the children write it
        command = [
            self._ray,
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            f"--object-store-memory={self._object_store_bytes}",
            f"--temp-dir={self.root / 'ray'}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--disable-usage-stats",
            *options,
        ]
        with log:
            return subprocess.Popen(  # in its folder: Ray jobs run where the node was started
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self.root,
                start_new_session=True,
            )

    def _alive_nodes(self):
        """Node id -> custom resources of each alive node, from the dashboard's state API."""
        from ray.util.state import list_nodes

        try:
            nodes = list_nodes(address=self.dashboard_url, timeout=5, raise_on_missing_output=False)
        except Exception:  # the dashboard is starting
            return {}
        return {n.node_id: n.resources_total for n in nodes if n.state == "ALIVE"}

    def _wait_for_node(self, resource):
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            for node_id, resources in self._alive_nodes().items():
                if resource in resources:
                    return node_id
            for process in (self._head, *self._workers):
                if process is not None and process.poll() is not None:
                    break
            else:
                time.sleep(0.5)
                continue
            break
        logs = "\n".join(
            f"{log.name}:\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.root.glob("*.log"))
        )
        raise RuntimeError(f"no alive Ray node with resource {resource!r}; logs:\n{logs}")


@contextmanager
def ray_cluster(*, workers=1, object_store_bytes=100_000_000, timeout=90):
    """Start a Ray cluster of 1 + ``workers`` nodes on 127.0.0.1, each with an object store of
    ``object_store_bytes``; yield it as a `RayCluster`; stop it.

    The head (``ray start --head``, 1 CPU, custom resource ``head``) runs the GCS and the
    dashboard, hence the Jobs API; each worker (``ray start --address``, 1 CPU, custom
    resource ``worker-i``) joins it. Each is ``ray start --block`` in its own process group,
    so that a worker alone can be killed and started again; every port is chosen free, and
    the temporary folder is new, so that the cluster clashes with no other Ray on this machine
    (such as the tests' own local one). Ray still tells a job's driver the GCS address with
    this machine's own IP in place of 127.0.0.1 (its ``canonicalize_bootstrap_address``). On
    exit the two process groups are killed, then any process left that names the folder, and
    the folder is deleted; ``ray stop`` is never used, as it would stop every Ray of the
    machine.
    """
    root = Path(tempfile.mkdtemp(prefix="repalign-ray-"))
    ray = Path(sys.executable).parent / "ray"
    env = {**os.environ, **RAY_CLUSTER_ENV}
    env.pop("RAY_ADDRESS", None)
    cluster = RayCluster(root, str(ray), env, timeout, workers, object_store_bytes)
    try:
        cluster.start_head()
        for index in range(workers):
            cluster.restart_worker(index)
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _kill_group(process):
    """SIGKILL the process group of ``process`` (a ``ray start --block``) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _kill_processes_naming(text):
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in process.info["cmdline"] or ()):
                process.kill()
        except psutil.Error:
            pass
