"""A fault-injecting HTTP proxy for S3 tests: put it between a client and an S3 server (moto, ...).

Every request the client sends is numbered; :class:`Rule` objects decide which ones meet a fault
instead of (or after) being forwarded upstream:

``"503"``          answer ``503 SlowDown`` without forwarding (throttling)
``"500"``          answer ``500 InternalError`` without forwarding
``"reset"``        reset the connection without forwarding and without any answer
``"reset_after"``  forward the request (it lands upstream), then reset instead of answering
``"stall"``        never answer (the client's read timeout fires); not forwarded
``"stall_after"``  forward, then never answer
``"truncate"``     forward, answer the headers and half the body, then close the connection

Every request is logged (:class:`Entry`), including whether it reached the server and what the
server answered, so a test can count what really landed: :meth:`FaultProxy.landed_puts`.
Only loopback addresses are involved; the proxy stops with :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import select
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

ACTIONS = ("503", "500", "reset", "reset_after", "stall", "stall_after", "truncate")
FORWARDED = (None, "reset_after", "stall_after", "truncate")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>faultproxy</RequestId></Error>"
)


@dataclass
class Rule:
    """Which requests meet ``action``.

    Requests are counted per rule among those it matches (``methods``, ``path_contains``). A request
    meets the fault when its count is in ``at`` or, failing that, with probability ``fraction``
    (from the proxy's seeded random generator). ``limit`` caps how many faults the rule injects.
    """

    action: str
    at: frozenset[int] = frozenset()
    fraction: float = 0.0
    methods: frozenset[str] | None = None
    path_contains: str | None = None
    limit: int | None = None
    seen: int = 0
    injected: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault {self.action!r}; choose from {ACTIONS}")

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path_contains is None or self.path_contains in path


@dataclass
class Entry:
    """One request the proxy received."""

    number: int
    method: str
    key: str  # the URL path, decoded, without the leading "/" (bucket/key for path-style S3)
    query: str
    if_match: str | None
    if_none_match: str | None
    action: str | None  # the fault met, or None
    status: int | None = None  # what the server answered (None: not forwarded or no answer)
    body_md5: str | None = None
    txn: str | None = None  # the "txn" of a JSON document body, if any

    @property
    def forwarded(self) -> bool:
        """The request reached the server."""
        return self.action in FORWARDED

    @property
    def landed(self) -> bool:
        """The server performed it successfully (whatever the client heard)."""
        return self.forwarded and self.status is not None and 200 <= self.status < 300


@dataclass
class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that forwards to ``upstream`` and injects faults (see the module)."""

    upstream: str
    seed: int = 0
    rules: list[Rule] = field(default_factory=list)
    log: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        self._upstream_host = parts.hostname or "127.0.0.1"
        self._upstream_port = parts.port or 80
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> str:
        """Start serving; return the proxy's endpoint URL."""
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self.endpoint

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving; stalled connections are released."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def add(
        self,
        action: str,
        *,
        at: Iterable[int] = (),
        fraction: float = 0.0,
        methods: Iterable[str] | None = None,
        path_contains: str | None = None,
        limit: int | None = None,
    ) -> Rule:
        """Add a :class:`Rule` and return it (its ``injected`` counts the faults it caused)."""
        rule = Rule(
            action,
            at=frozenset(at),
            fraction=fraction,
            methods=None if methods is None else frozenset(methods),
            path_contains=path_contains,
            limit=limit,
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop every rule (the log stays)."""
        with self._lock:
            self.rules.clear()

    # ------------------------------------------------------------------ what happened

    def entries(self, method: str | None = None, key_contains: str | None = None) -> list[Entry]:
        """The logged requests, optionally only of one method or whose key contains a text."""
        with self._lock:
            items = list(self.log)
        return [
            e
            for e in items
            if (method is None or e.method == method) and (key_contains is None or key_contains in e.key)
        ]

    def faults(self) -> Counter[str]:
        """How many requests met each fault."""
        return Counter(e.action for e in self.entries() if e.action is not None)

    def landed_puts(self) -> Counter[tuple[str, str | None]]:
        """How many times each (key, body MD5) was written successfully at the server."""
        return Counter((e.key, e.body_md5) for e in self.entries("PUT") if e.landed and not e.query)

    def landed_txns(self) -> Counter[tuple[str, str]]:
        """How many times each (key, document ``txn``) was written successfully at the server."""
        return Counter((e.key, e.txn) for e in self.entries("PUT") if e.landed and e.txn is not None)

    # ------------------------------------------------------------------ used by the handler

    def _decide(self, method: str, path: str) -> str | None:
        with self._lock:
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                rule.seen += 1
                if rule.limit is not None and rule.injected >= rule.limit:
                    continue
                hit = rule.seen in rule.at or (rule.fraction > 0 and self._random.random() < rule.fraction)
                if hit:
                    rule.injected += 1
                    return rule.action
        return None

    def _record(self, entry: Entry) -> None:
        with self._lock:
            entry.number = len(self.log) + 1
            self.log.append(entry)


def _txn_of(body: bytes) -> str | None:
    if not body.startswith(b"{"):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    txn = value.get("txn") if isinstance(value, dict) else None
    return txn if isinstance(txn, str) else None


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Quiet: the proxy's own log is :attr:`FaultProxy.log`."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET  # noqa: N815

    # ------------------------------------------------------------------ the request

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        parts = urlsplit(self.path)
        action = self.owner._decide(self.command, parts.path)
        entry = Entry(
            number=0,
            method=self.command,
            key=unquote(parts.path).lstrip("/"),
            query=parts.query,
            if_match=self.headers.get("If-Match"),
            if_none_match=self.headers.get("If-None-Match"),
            action=action,
        )
        if self.command == "PUT":
            entry.body_md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
            entry.txn = _txn_of(body)
        self.owner._record(entry)
        if action == "503":
            self._answer_error(503, "SlowDown", "Please reduce your request rate.")
        elif action == "500":
            self._answer_error(500, "InternalError", "We encountered an internal error. Please try again.")
        elif action == "reset":
            self._reset()
        elif action == "stall":
            self._stall()
        else:
            status, reason, headers, data = self._forward(body)
            entry.status = status
            if action == "reset_after":
                self._reset()
            elif action == "stall_after":
                self._stall()
            elif action == "truncate" and len(data) > 1:
                self._answer(status, reason, headers, data, cut=len(data) // 2)
            else:
                self._answer(status, reason, headers, data)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        owner = self.owner
        conn = http.client.HTTPConnection(owner._upstream_host, owner._upstream_port, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            conn.close()

    # ------------------------------------------------------------------ answers and faults

    def _answer(
        self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes, cut: int | None = None
    ) -> None:
        self.send_response_only(status, reason)
        length = None
        for name, value in headers:
            low = name.lower()
            if low == "content-length":
                length = value
            if low not in _HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", length or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD" or status in (204, 304):
            return
        if cut is None:
            self.wfile.write(data)
            return
        self.wfile.write(data[:cut])
        self.wfile.flush()
        self.close_connection = True  # a FIN after half the body: the client reads a short body
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _answer_error(self, status: int, code: str, message: str) -> None:
        data = _ERROR_XML.format(code=code, message=message).encode()
        self._answer(status, code, [("Content-Type", "application/xml")], data)

    def _reset(self) -> None:
        """Close the connection with a TCP reset and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _stall(self) -> None:
        """Answer nothing until the client hangs up (its read timeout) or the proxy stops."""
        sock = self.connection
        while not self.owner._stopping.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    break
            except OSError:
                break
        self._reset()


def count_by_key(entries: Iterable[Entry]) -> Counter[str]:
    """How many of ``entries`` there are per key."""
    return Counter(e.key for e in entries)
