"""An object store in an S3 bucket (AWS S3, MinIO, SeaweedFS, LocalStack, moto...).

This is the only module of hds_s3 that imports boto3 and botocore. Every botocore failure is
translated by one table (:func:`_translate`) into the errors of :mod:`hds_s3.errors`, keeping the
botocore exception as ``__cause__`` (a redacted stand-in when its text would show a secret):

====================================================  =======================================
what the server or botocore reports                   what the caller gets
====================================================  =======================================
404, ``NoSuchKey``, ``NotFound``                      :class:`~hds_s3.errors.NotFoundError`
``NoSuchBucket``                                      :class:`~hds_s3.errors.StorageError`
                                                      (naming the bucket: create it)
412, ``PreconditionFailed``                           :class:`~hds_s3.errors.ConflictError`
409 ``ConditionalRequestConflict``                    retried with jittered backoff, then
                                                      :class:`~hds_s3.errors.ConflictError`
416 ``InvalidRange`` on a ranged read                 ``b""`` (the range starts past the end)
500, 502, 503, 504, ``SlowDown`` and other throttling, retried (below), then
connection resets, connect and read timeouts          :class:`~hds_s3.errors.StorageError`
any other ``ClientError``, endpoint or credential     :class:`~hds_s3.errors.StorageError`
error
====================================================  =======================================

Transient faults are retried by botocore's own retry modes (``standard`` by default, or
``adaptive``, which also slows the client down while it is throttled) with jittered exponential
backoff, at most ``max_attempts`` attempts per request, each bounded by ``connect_timeout`` and
``read_timeout``; on top of that no new attempt starts once ``retry_budget`` seconds have passed
since the request began. A body that breaks off while it is read (botocore does not retry those) is
fetched again under the same limits.

A resent conditional PUT must not be reported as lost when its first attempt landed and only the
answer was lost: when a conditional put fails after botocore had to resend it, and the object now
holds exactly these bytes, the earlier attempt is taken to have succeeded (the bytes are compared
by etag, or read back when the etag is not an MD5, as with SSE-KMS). Every document hds_s3 writes
carries a unique ``txn``, so equal bytes mean this very write. Servers disagree about an
``If-Match`` write on a missing key (SeaweedFS answers 412, AWS may answer 404, docs/design.md section 9),
so a failed ``If-Match`` put is followed by a HEAD that decides between
:class:`~hds_s3.errors.NotFoundError` and :class:`~hds_s3.errors.ConflictError`.

Server-side encryption: ``sse="AES256"`` (SSE-S3) or ``sse="aws:kms"`` (SSE-KMS, with an optional
``sse_kms_key_id``; ``"aws:kms:dsse"`` too) is sent with every PUT. Without arguments they come from
``HDS_S3_SSE`` and ``HDS_S3_SSE_KMS_KEY_ID``, and :meth:`S3Store.from_url` reads them from the URL
query (``s3://bucket/prefix?sse=aws:kms&sse_kms_key_id=alias/hds``).

Keys are checked before they reach S3: no empty, ``.`` or ``..`` component, no leading ``/``, no
control character, at most 1024 bytes with the prefix; so nothing a caller passes can leave the
store's prefix, even on a server or proxy that normalises ``..`` in URL paths.

Secrets never reach a message: the secret key, the session token and a password in the endpoint
URL are replaced by ``***`` in every error this module raises, in the ``__cause__`` it chains, and
in the log records of botocore, boto3 and urllib3 (which, at DEBUG level, print request headers
including ``X-Amz-Security-Token``).

Etags are returned without the surrounding double quotes S3 puts on them (for a simple PUT that is
the MD5 hex of the content, exactly what the memory and local stores return) and are quoted again
when sent back as ``If-Match``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import boto3
import botocore.credentials
import botocore.exceptions
import botocore.loaders
import botocore.session
from botocore.config import Config
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from hds_s3.errors import ConflictError, HdsError, NotFoundError, StorageError, ValidationError
from hds_s3.store.base import ObjectInfo, check_put_args, content_etag

_T = TypeVar("_T")

_loader: botocore.loaders.Loader | None = None
_loader_lock = threading.Lock()


def _shared_loader() -> botocore.loaders.Loader:
    """One botocore data loader for every store: parsing the S3 service model once saves ~50 ms a client."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        return _loader


#: Environment variable naming the S3 endpoint (read before ``AWS_ENDPOINT_URL``).
ENDPOINT_ENV = "HDS_S3_ENDPOINT_URL"
#: Environment variable giving the server-side encryption of every PUT (``AES256``, ``aws:kms``).
SSE_ENV = "HDS_S3_SSE"
#: Environment variable giving the KMS key (id, ARN or alias) for ``aws:kms`` encryption.
SSE_KMS_KEY_ENV = "HDS_S3_SSE_KMS_KEY_ID"

SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")
RETRY_MODES = ("standard", "adaptive")

#: Defaults of the transient-fault limits (see :class:`S3Store`).
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_RETRY_BUDGET = 120.0

MAX_KEY_BYTES = 1024

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
_RETRYABLE_CONFLICT_CODES = frozenset({"ConditionalRequestConflict"})
_BUCKET_MISSING_CODES = frozenset({"NoSuchBucket"})
_RANGE_CODES = frozenset({"InvalidRange", "416"})
_DENIED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})

_DEADLINE = "hds_s3_retry_deadline"
_REDACTED = "***"
# Header values that are secrets wherever botocore prints a request (headers dict, canonical request,
# presigned query string).
_TOKEN_VALUE = re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)([^'\"\s,}&]+)")
_LOGGER_ROOTS = ("botocore", "boto3", "urllib3", "s3transfer")


#: Shorter values are not treated as secrets: they would match ordinary words ("test").
MIN_SECRET_CHARS = 8


def _scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if len(secret) >= MIN_SECRET_CHARS and secret in text:
            text = text.replace(secret, _REDACTED)
    return _TOKEN_VALUE.sub(lambda m: m.group(1) + _REDACTED, text)


class _SecretFilter(logging.Filter):
    """Rewrites log records of botocore, boto3 and urllib3 so that no known secret is in them."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if len(v) >= MIN_SECRET_CHARS}
        with self._lock:
            if not new <= self._secrets:
                self._secrets = self._secrets | new

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's business
            return True
        clean = _scrub_text(text, secrets)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _scrub_text(logging.Formatter().formatException(record.exc_info), secrets)
        elif record.exc_text:
            record.exc_text = _scrub_text(record.exc_text, secrets)
        return True


_SECRET_FILTER = _SecretFilter()


def _guard_logs(secrets: Iterable[str]) -> None:
    """Remember ``secrets`` and put the scrubbing filter on every botocore/boto3/urllib3 logger."""
    _SECRET_FILTER.add(secrets)
    for name in ("botocore", "boto3", "urllib3", *list(logging.Logger.manager.loggerDict)):
        if name.split(".", 1)[0] not in _LOGGER_ROOTS:
            continue
        logger = logging.getLogger(name)
        if _SECRET_FILTER not in logger.filters:
            logger.addFilter(_SECRET_FILTER)


class _RedactedCause(Exception):
    """Stands in, as ``__cause__``, for a botocore exception whose text showed a secret."""


class _RetryableConflict(Exception):
    """Internal: the server answered 409 ConditionalRequestConflict; the put may be tried again."""

    def __init__(self, cause: botocore.exceptions.ClientError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _BodyReadFailed(Exception):
    """Internal: the response body broke off while it was read; the GET may be sent again."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "") or "")


def _http_status(exc: botocore.exceptions.ClientError) -> int:
    meta = exc.response.get("ResponseMetadata", {})
    try:
        return int(meta.get("HTTPStatusCode", 0) or 0)
    except (TypeError, ValueError):
        return 0


def _retry_attempts(exc: botocore.exceptions.ClientError) -> int:
    meta = exc.response.get("ResponseMetadata", {})
    try:
        return int(meta.get("RetryAttempts", 0) or 0)
    except (TypeError, ValueError):
        return 0


def _modified(value: object) -> float | None:
    """An S3 ``LastModified`` (botocore gives an aware datetime) as epoch seconds; None when absent."""
    return value.timestamp() if isinstance(value, datetime) else None


def _strip_etag(etag: str) -> str:
    return etag[1:-1] if len(etag) >= 2 and etag[0] == '"' and etag[-1] == '"' else etag


def _quote_etag(etag: str) -> str:
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def _redact_url(url: str | None) -> str | None:
    """Drop any ``user:password@`` part of an endpoint URL so it can be shown."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _url_secrets(url: str | None) -> list[str]:
    """The password (and the whole userinfo) of ``user:password@host`` in an endpoint URL."""
    if not url:
        return []
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rsplit("@", 1)[0]
    found = [userinfo]
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    return found


def _number(name: str, value: str | float, kind: type[int] | type[float], minimum: float) -> Any:
    """Parse a positive option value (from an argument, the environment or a URL query)."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValidationError(f"S3 option {name}={value!r} is not a number") from None
    if number < minimum:
        raise ValidationError(f"S3 option {name}={value!r} must be at least {minimum}")
    return number


def check_key(key: str, *, is_prefix: bool = False) -> str:
    """Return ``key`` if it is safe to use under a store prefix.

    Refused: a leading ``/``, an empty (``//``), ``.`` or ``..`` component, a control character
    (NUL included) and text that is not valid Unicode. A prefix may be empty or end with ``/``; a key
    may not.

    Raises:
        ValidationError: the key could name something outside the prefix, or is malformed.
    """
    if not isinstance(key, str):
        raise ValidationError(f"object key {key!r} is not a string")
    if not key and is_prefix:
        return key
    parts = key.split("/")
    if is_prefix and len(parts) > 1 and parts[-1] == "":
        parts = parts[:-1]
    bad = next((p for p in parts if p in ("", ".", "..")), None)
    if bad is not None:
        raise ValidationError(
            f"object key {key!r} has an empty, '.' or '..' component (or a leading or trailing '/'); "
            "keys come from hds_s3.format.layout and cannot leave the store's prefix"
        )
    ch = next((c for c in key if unicodedata.category(c) in ("Cc", "Cs")), None)
    if ch is not None:
        raise ValidationError(f"object key {key!r} contains the character {ch!r}, which keys may not hold")
    return key


class S3Store:
    """Objects under ``s3://bucket/prefix``, with conditional writes mapped onto S3 preconditions.

    The boto3 client is created on first use (never at import or construction, so ``moto`` can be
    started first), once, under a lock; boto3 clients are thread-safe, so one store may be shared by
    threads.

    The endpoint is ``endpoint_url`` if given, else the environment variable ``HDS_S3_ENDPOINT_URL``,
    else ``AWS_ENDPOINT_URL``, else AWS itself. With a custom endpoint, path-style addressing is used.
    Credentials come from the arguments when given, else from boto3's standard chain (environment,
    profile, instance role...).

    Args:
        bucket: the bucket name; it must exist (see :meth:`create_bucket`).
        prefix: a key prefix inside the bucket (``""`` or ``"a/b"``; slashes at either end are
            ignored); every key of this store lives under ``<prefix>/``.
        endpoint_url: an S3-compatible endpoint such as ``http://127.0.0.1:9000``.
        region_name: the AWS region; defaults to boto3's configuration (``us-east-1`` for a custom
            endpoint when none is configured).
        client: a ready boto3 S3 client to use instead of creating one (endpoint, region, credential,
            timeout and retry arguments are then ignored: the client's own configuration applies).
        aws_access_key_id: access key id, instead of the standard credential chain.
        aws_secret_access_key: secret access key, instead of the standard credential chain.
        aws_session_token: session token for temporary credentials.
        sse: server-side encryption sent with every PUT: ``"AES256"`` (SSE-S3), ``"aws:kms"``
            (SSE-KMS) or ``"aws:kms:dsse"``; default ``HDS_S3_SSE``, else none (the bucket's default).
        sse_kms_key_id: the KMS key for ``aws:kms``; default ``HDS_S3_SSE_KMS_KEY_ID``, else the
            account's S3 key.
        retry_mode: botocore's retry mode, ``"standard"`` or ``"adaptive"``; default
            ``AWS_RETRY_MODE``, else ``"standard"``.
        max_attempts: attempts per request, the first included (transient faults: 5xx, throttling,
            resets, timeouts); default ``AWS_MAX_ATTEMPTS``, else 8.
        connect_timeout: seconds to wait for a connection (default 10).
        read_timeout: seconds to wait for each read from the socket (default 60).
        retry_budget: no new attempt of a request starts once this many seconds have passed since
            it began (default 120).

    Raises:
        ValidationError: the bucket name is empty, the prefix contains an empty component, or an
            encryption or retry option is not valid.
    """

    #: How many times a put answered with 409 ConditionalRequestConflict is attempted in all.
    conflict_attempts: int = 5
    #: Upper bound, in seconds, of the jittered exponential wait between those attempts.
    conflict_max_wait: float = 1.0
    #: Base, in seconds, of that wait.
    conflict_wait_multiplier: float = 0.05
    #: Base and upper bound, in seconds, of the wait before fetching a broken-off body again.
    body_retry_wait: float = 0.05
    body_retry_max_wait: float = 2.0

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        retry_mode: str | None = None,
        max_attempts: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retry_budget: float | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValidationError(f"S3 bucket name {bucket!r} is not valid: give a bare bucket name")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self._bucket = bucket
        self._prefix = prefix
        self._key_prefix = f"{prefix}/" if prefix else ""
        self._endpoint_url = (
            endpoint_url or os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL") or None
        )
        self._region_name = region_name
        self._credentials = {
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
        }
        self._secrets: tuple[str, ...] = tuple(
            v for v in (aws_secret_access_key, aws_session_token, *_url_secrets(self._endpoint_url)) if v
        )
        self._sse, self._sse_kms_key_id = self._encryption(sse, sse_kms_key_id)
        mode = retry_mode or os.environ.get("AWS_RETRY_MODE") or "standard"
        if mode not in RETRY_MODES:
            raise ValidationError(f"S3 retry_mode {mode!r} is not one of {', '.join(RETRY_MODES)}")
        self._retry_mode = mode
        attempts = max_attempts if max_attempts is not None else os.environ.get("AWS_MAX_ATTEMPTS")
        self._max_attempts: int = (
            _number("max_attempts", attempts, int, 1) if attempts is not None else DEFAULT_MAX_ATTEMPTS
        )
        self._connect_timeout: float = _number(
            "connect_timeout",
            DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
            float,
            0,
        )
        self._read_timeout: float = _number(
            "read_timeout", DEFAULT_READ_TIMEOUT if read_timeout is None else read_timeout, float, 0
        )
        self._retry_budget: float = _number(
            "retry_budget", DEFAULT_RETRY_BUDGET if retry_budget is None else retry_budget, float, 0
        )
        self._client: Any | None = client
        self._client_given = client is not None
        self._client_lock = threading.Lock()

    @staticmethod
    def _encryption(sse: str | None, kms_key: str | None) -> tuple[str | None, str | None]:
        sse = sse if sse is not None else os.environ.get(SSE_ENV) or None
        kms_key = kms_key if kms_key is not None else os.environ.get(SSE_KMS_KEY_ENV) or None
        if sse is not None and sse not in SSE_MODES:
            raise ValidationError(
                f"S3 server-side encryption {sse!r} is not one of {', '.join(SSE_MODES)} ({SSE_ENV})"
            )
        if kms_key and not (sse or "").startswith("aws:kms"):
            raise ValidationError(
                f"a KMS key ({SSE_KMS_KEY_ENV}) needs sse='aws:kms' or 'aws:kms:dsse', not {sse!r}"
            )
        return sse, kms_key

    _URL_OPTIONS = (
        "sse",
        "sse_kms_key_id",
        "region",
        "retry_mode",
        "max_attempts",
        "connect_timeout",
        "read_timeout",
        "retry_budget",
    )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Store:
        """Open ``s3://bucket[/prefix][?option=value&...]``; ``kwargs`` go to the constructor.

        Options: ``sse``, ``sse_kms_key_id`` (also ``kms_key_id``), ``region``, ``retry_mode``,
        ``max_attempts``, ``connect_timeout``, ``read_timeout``, ``retry_budget`` (see the class).
        Credentials are never taken from a URL.

        Raises:
            ValidationError: not an ``s3://`` URL, no bucket, an unknown option or a bad value.
        """
        scheme, sep, rest = url.strip().partition("://")
        if not sep or scheme.lower() not in ("s3", "s3a"):
            raise ValidationError(f"{url!r} is not an s3://bucket[/prefix] URL")
        location, _, query = rest.partition("?")
        bucket, _, prefix = location.partition("/")
        if not bucket:
            raise ValidationError(f"store URL {url!r} has no bucket name")
        options: dict[str, Any] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            name = {"kms_key_id": "sse_kms_key_id", "region": "region_name"}.get(name, name)
            if name not in cls._URL_OPTIONS and name != "region_name":
                raise ValidationError(
                    f"store URL {url!r}: unknown option {name!r}; accepted: {', '.join(cls._URL_OPTIONS)}"
                )
            if name == "max_attempts":
                options[name] = _number(name, value, int, 1)
            elif name in ("connect_timeout", "read_timeout", "retry_budget"):
                options[name] = _number(name, value, float, 0)
            else:
                options[name] = value
        options.update(kwargs)
        return cls(bucket, prefix.strip("/"), **options)

    # ------------------------------------------------------------------ plumbing

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` (``s3://bucket`` without a prefix); never contains credentials."""
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket, without slashes at either end (``""`` for none)."""
        return self._prefix

    @property
    def endpoint_url(self) -> str | None:
        """The custom endpoint in use, or ``None`` for AWS (credentials in it are removed)."""
        return _redact_url(self._endpoint_url)

    @property
    def sse(self) -> str | None:
        """The server-side encryption sent with every PUT, or ``None``."""
        return self._sse

    @property
    def sse_kms_key_id(self) -> str | None:
        """The KMS key sent with every PUT under ``aws:kms``, or ``None``."""
        return self._sse_kms_key_id

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use.

        Raises:
            StorageError: boto3 cannot build a client from the configuration.
        """
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    client = self._client = self._make_client()
        return client

    def _make_client(self) -> Any:
        region = self._region_name
        if (
            region is None
            and self._endpoint_url
            and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        ):
            region = "us-east-1"
        options: dict[str, Any] = {
            "retries": {"mode": self._retry_mode, "total_max_attempts": self._max_attempts},
            "connect_timeout": self._connect_timeout,
            "read_timeout": self._read_timeout,
            "max_pool_connections": 32,
        }
        if self._endpoint_url:
            options["s3"] = {"addressing_style": "path"}
        _guard_logs(self._secrets)
        try:
            core = botocore.session.Session()
            core.register_component("data_loader", _shared_loader())
            credentials = {k: v for k, v in self._credentials.items() if v}
            session = boto3.session.Session(botocore_session=core, **credentials)
            self._remember_secrets(session)
            client = session.client(
                "s3", endpoint_url=self._endpoint_url, region_name=region, config=Config(**options)
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            failure: BaseException = exc
        else:
            events = client.meta.events
            events.register_first("before-call.s3", self._start_clock, unique_id="hds-s3-retry-clock")
            events.register_first("needs-retry.s3", self._within_budget, unique_id="hds-s3-retry-budget")
            _guard_logs(())  # loggers botocore created while building the client
            return client
        raise StorageError(
            f"{self.url}: cannot create an S3 client for endpoint {self.endpoint_url or 'AWS'}: "
            + self._scrub(str(failure))
        ) from self._safe_cause(failure)

    def _remember_secrets(self, session: Any) -> None:
        """Add the secret key and token the credential chain resolved (environment, profile...).

        Refreshable credentials (roles, SSO) are left alone rather than fetched early; their token
        is still scrubbed from log records by its header name.
        """
        try:
            found = session.get_credentials()
            if found is None or isinstance(found, botocore.credentials.RefreshableCredentials):
                return
            frozen = found.get_frozen_credentials()
        except Exception:  # noqa: BLE001 - no credentials yet is reported by the first request
            return
        if frozen is not None:
            values = [v for v in (frozen.secret_key, frozen.token) if v]
            self._secrets = tuple(dict.fromkeys((*self._secrets, *values)))
            _guard_logs(values)

    def _start_clock(self, context: dict[str, Any] | None = None, **_: Any) -> None:
        """Hook for botocore's ``before-call``: the request's retry budget starts now."""
        if context is not None:
            context.setdefault(_DEADLINE, time.monotonic() + self._retry_budget)

    def _within_budget(self, request_dict: dict[str, Any] | None = None, **_: Any) -> bool | None:
        """Hook for botocore's ``needs-retry`` (runs first): ``False`` (no retry) once the budget is spent.

        ``None`` leaves the decision, and the backoff, to botocore's retry mode.
        """
        context = (request_dict or {}).get("context") or {}
        deadline = context.get(_DEADLINE)
        if deadline is not None and time.monotonic() >= deadline:
            return False
        return None

    def _scrub(self, text: str) -> str:
        """Remove anything secret (keys, token, endpoint userinfo) from a message we did not write."""
        if self._endpoint_url and self._endpoint_url != self.endpoint_url:
            text = text.replace(self._endpoint_url, str(self.endpoint_url))
        return _scrub_text(text, self._secrets)

    def _safe_cause(self, exc: BaseException) -> BaseException:
        """``exc``, or a stand-in carrying its scrubbed text when that text shows a secret."""
        text = str(exc)
        clean = self._scrub(text)
        if clean == text:
            return exc
        return _RedactedCause(f"{type(exc).__name__}: {clean}")

    def _full_key(self, key: str, *, is_prefix: bool = False) -> str:
        full = self._key_prefix + check_key(key, is_prefix=is_prefix)
        try:
            size = len(full.encode("utf-8"))
        except UnicodeEncodeError:  # pragma: no cover - check_key refuses surrogates
            raise ValidationError(f"object key {key!r} is not valid Unicode") from None
        if size > MAX_KEY_BYTES:
            raise ValidationError(
                f"{self._what('key', key)}: {size} bytes with the prefix; S3 allows {MAX_KEY_BYTES}"
            )
        return full

    def _what(self, op: str, key: str | None) -> str:
        return f"{self.url}: {op}" if key is None else f"{self.url}: {op} {key!r}"

    def _translate(self, exc: BaseException, op: str, key: str | None) -> HdsError:
        """Map a botocore failure onto our errors (the one error table of the package)."""
        what = self._what(op, key)
        if isinstance(exc, botocore.exceptions.ClientError):
            code = _error_code(exc)
            status = _http_status(exc)
            message = str(exc.response.get("Error", {}).get("Message", "") or "")
            if code in _BUCKET_MISSING_CODES:
                return StorageError(
                    f"{what}: bucket {self._bucket!r} does not exist"
                    f"{' at ' + str(self.endpoint_url) if self._endpoint_url else ''}; create it first "
                    "(e.g. S3Store.create_bucket() or 'aws s3 mb')"
                )
            if code in _NOT_FOUND_CODES or (status == 404 and not code):
                return NotFoundError(f"{what}: no such object")
            if code in _PRECONDITION_CODES or status == 412:
                return ConflictError(f"{what}: precondition failed, the object changed or exists already")
            if code in _RETRYABLE_CONFLICT_CODES:
                return ConflictError(f"{what}: a concurrent conditional write kept conflicting ({code})")
            if code in _DENIED_CODES or status == 403:
                return StorageError(
                    f"{what}: access denied ({code or status}); check the credentials and their permissions"
                )
            if status == 404:
                return NotFoundError(f"{what}: not found ({code})")
            detail = f"{code or 'error'} (HTTP {status})" if status else code or "error"
            retries = _retry_attempts(exc)
            tried = f" after {retries + 1} attempts" if retries else ""
            return StorageError(
                f"{what}: S3 answered {detail}{tried}{': ' + self._scrub(message) if message else ''}"
            )
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageError(
                f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionError):
            return StorageError(
                f"{what}: cannot reach the S3 endpoint {self.endpoint_url or 'of AWS'} "
                f"({type(exc).__name__}, {self._max_attempts} attempts at most); is the server running?"
            )
        return StorageError(f"{what}: {type(exc).__name__}: {self._scrub(str(exc))}")

    def _fail(self, exc: BaseException, op: str, key: str | None) -> HdsError:
        """The error to raise for ``exc``, with a secret-free ``__cause__`` (raise it outside ``except``)."""
        error = self._translate(exc, op, key)
        error.__cause__ = self._safe_cause(exc)
        error.__suppress_context__ = True
        return error

    def _call(self, op: str, key: str | None, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except HdsError:
            raise
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            failure: BaseException = exc
        raise self._fail(failure, op, key)

    def _reading(self, fn: Callable[[], _T]) -> Callable[[], _T]:
        """Wrap a GET whose body read is marked by :class:`_BodyReadFailed`: send it again then."""

        def run() -> _T:
            retrying = Retrying(
                retry=retry_if_exception_type(_BodyReadFailed),
                stop=stop_after_attempt(self._max_attempts) | stop_after_delay(self._retry_budget),
                wait=wait_random_exponential(multiplier=self.body_retry_wait, max=self.body_retry_max_wait),
                reraise=True,
            )
            try:
                return retrying(fn)
            except _BodyReadFailed as exc:
                failure = exc.cause
            raise failure

        return run

    @staticmethod
    def _read_body(response: dict[str, Any]) -> bytes:
        # botocore's StreamingBody.read (not the raw stream its `with` gives) checks the length and
        # turns a broken connection into ResponseStreamingError / ReadTimeoutError.
        body = response["Body"]
        try:
            data: bytes = body.read()
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise _BodyReadFailed(exc) from exc
        finally:
            body.close()
        return data

    # ------------------------------------------------------------------ the protocol

    def get(self, key: str) -> tuple[bytes, str]:
        """Return the bytes and etag of ``key``.

        Raises:
            NotFoundError: no object has this key.
            ValidationError: the key could leave the prefix (see :func:`check_key`).
            StorageError: S3 failed or cannot be reached (after the retries), or the bucket does
                not exist.
        """
        full = self._full_key(key)

        def run() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self._bucket, Key=full)
            data = self._read_body(response)
            return data, _strip_etag(response.get("ETag", ""))

        return self._call("get", key, self._reading(run))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes of ``key`` from offset ``start`` (fewer at its end) with an HTTP Range.

        Raises:
            NotFoundError: no object has this key.
            ValidationError: ``start`` or ``length`` is negative, or the key could leave the prefix.
            StorageError: S3 failed or cannot be reached (after the retries).
        """
        if start < 0 or length < 0:
            raise ValidationError(
                f"{self._what('get_range', key)}: start={start} and length={length} must be >= 0"
            )
        full = self._full_key(key)
        if length == 0:
            self.head(key)
            return b""

        def run() -> bytes:
            try:
                response = self.client.get_object(
                    Bucket=self._bucket, Key=full, Range=f"bytes={start}-{start + length - 1}"
                )
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) in _RANGE_CODES or _http_status(exc) == 416:
                    return b""  # the object exists; the range starts at or past its end
                raise
            data = self._read_body(response)
            # A server that ignores Range answers 200 with the whole object.
            if (
                response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200
                and "ContentRange" not in response
            ):
                data = data[start : start + length]
            return data

        return self._call("get_range", key, self._reading(run))

    def head(self, key: str) -> ObjectInfo:
        """Return the size, etag and last-modified time of ``key``.

        Raises:
            NotFoundError: no object has this key.
            ValidationError: the key could leave the prefix.
            StorageError: S3 failed or cannot be reached (after the retries).
        """
        full = self._full_key(key)

        def run() -> ObjectInfo:
            response = self.client.head_object(Bucket=self._bucket, Key=full)
            return ObjectInfo(
                key,
                int(response.get("ContentLength", 0)),
                _strip_etag(response.get("ETag", "")),
                _modified(response.get("LastModified")),
            )

        return self._call("head", key, run)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write ``key`` and return its new etag; see :meth:`hds_s3.store.base.ObjectStore.put`.

        ``if_none_match`` sends ``If-None-Match: *``; ``if_match`` sends ``If-Match: "<etag>"``; the
        store's server-side encryption settings go with it. Transient faults are retried (see the
        module docstring); a 409 ConditionalRequestConflict is retried with jittered exponential
        backoff. When a conditional put fails after it had to be sent again (e.g. the first
        response was lost) and the object now holds exactly these bytes, the earlier attempt is
        taken to have succeeded: it is neither reported as a conflict nor written twice.

        Raises:
            ConflictError: the precondition failed (the object is unchanged), or the server kept
                answering 409 ConditionalRequestConflict.
            NotFoundError: ``if_match`` was given and the key does not exist.
            ValidationError: contradictory preconditions, an empty key or one that could leave the
                prefix.
            StorageError: S3 failed or cannot be reached (after the retries), the credentials may
                not write, or the bucket does not exist.
        """
        check_put_args(key, if_none_match, if_match)
        body = bytes(data)
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": self._full_key(key), "Body": body}
        if if_none_match:
            params["IfNoneMatch"] = "*"
        if if_match is not None:
            params["IfMatch"] = _quote_etag(if_match)
        if self._sse:
            params["ServerSideEncryption"] = self._sse
            if self._sse_kms_key_id:
                params["SSEKMSKeyId"] = self._sse_kms_key_id
        sent = 0

        def attempt() -> str:
            nonlocal sent
            sent += 1
            try:
                response = self.client.put_object(**params)
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) in _RETRYABLE_CONFLICT_CODES:
                    raise _RetryableConflict(exc) from exc
                raise
            etag = _strip_etag(response.get("ETag", ""))
            return etag or content_etag(body)

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, _RetryableConflict)),
            stop=stop_after_attempt(max(1, self.conflict_attempts)),
            wait=wait_random_exponential(
                multiplier=self.conflict_wait_multiplier, max=self.conflict_max_wait
            ),
            reraise=True,
        )
        failure: BaseException
        try:
            return retrying(attempt)
        except _RetryableConflict as exc:
            failure = exc.cause
        except botocore.exceptions.ClientError as exc:
            conditional = if_none_match or if_match is not None
            code, status = _error_code(exc), _http_status(exc)
            lost_precondition = code in _PRECONDITION_CODES or status == 412
            missing = (code in _NOT_FOUND_CODES or status == 404) and code not in _BUCKET_MISSING_CODES
            if conditional and (lost_precondition or (missing and if_match is not None)):
                resent = sent > 1 or _retry_attempts(exc) > 0
                return self._resolve_failed_condition(exc, key, body, if_match, resent)
            failure = exc
        except botocore.exceptions.BotoCoreError as exc:
            failure = exc
        raise self._fail(failure, "put", key)

    def _resolve_failed_condition(
        self,
        exc: botocore.exceptions.ClientError,
        key: str,
        body: bytes,
        if_match: str | None,
        resent: bool,
    ) -> str:
        """Decide what a 412 (or a 404 on If-Match) means; return the etag only if the put in fact succeeded.

        Raises:
            NotFoundError: ``if_match`` was given and the key does not exist.
            ConflictError: the precondition failed.
            StorageError: the HEAD (or GET) that decides failed.
        """
        try:
            current = self.head(key)
        except NotFoundError:
            if if_match is not None:
                raise NotFoundError(f"{self._what('put', key)}: no object to replace (If-Match)") from exc
            raise self._fail(exc, "put", key)  # noqa: B904 - _fail sets the cause
        if resent:
            # botocore sent the put again after a lost answer: is the object the bytes we sent?
            if current.etag == content_etag(body):
                return current.etag
            if current.size == len(body):  # an etag that is not an MD5 (SSE-KMS, other servers)
                try:
                    stored, etag = self.get(key)
                except NotFoundError:
                    stored, etag = b"", ""
                if stored == body:
                    return etag
        if if_match is None:
            raise ConflictError(
                f"{self._what('put', key)}: the object exists already (If-None-Match)"
            ) from exc
        raise ConflictError(
            f"{self._what('put', key)}: the object changed since it was read (If-Match {if_match!r})"
        ) from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in key order (UTF-8 binary order).

        Keys are relative to the store's prefix. AWS returns listings in key order, so they are
        streamed page by page; other servers may not (SeaweedFS lists folder by folder, putting
        ``a/b`` before ``a-c``), so their listing is read completely and sorted before the first item
        is yielded. Each page request is retried like any other.

        Raises:
            ValidationError: the prefix could leave the store's prefix.
            StorageError: S3 failed or cannot be reached (after the retries), or the bucket does
                not exist.
        """
        full = self._full_key(prefix, is_prefix=True)
        items = self._list_pages(prefix, full)
        if self._lists_in_key_order():
            return items
        return iter(sorted(items, key=lambda info: info.key))

    def _lists_in_key_order(self) -> bool:
        endpoint = str(getattr(getattr(self.client, "meta", None), "endpoint_url", "") or "")
        host = urlsplit(endpoint).hostname or ""
        return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))

    def _list_pages(self, prefix: str, full: str) -> Iterator[ObjectInfo]:
        cut = len(self._key_prefix)

        def pages() -> Iterator[dict[str, Any]]:
            paginator = self.client.get_paginator("list_objects_v2")
            return iter(paginator.paginate(Bucket=self._bucket, Prefix=full))

        page_iter = self._call("list", prefix, pages)
        while True:
            page = self._call("list", prefix, lambda: next(page_iter, None))
            if page is None:
                return
            for item in page.get("Contents", ()) or ():
                yield ObjectInfo(
                    item["Key"][cut:],
                    int(item.get("Size", 0)),
                    _strip_etag(item.get("ETag", "")),
                    _modified(item.get("LastModified")),
                )

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error.

        Raises:
            ValidationError: the key could leave the prefix.
            StorageError: S3 failed or cannot be reached (after the retries), the credentials may
                not delete, or the bucket does not exist.
        """
        full = self._full_key(key)
        failure: BaseException
        try:
            self.client.delete_object(Bucket=self._bucket, Key=full)
            return
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return
            failure = exc
        except botocore.exceptions.BotoCoreError as exc:
            failure = exc
        raise self._fail(failure, "delete", key)

    # ------------------------------------------------------------------ helpers for tests and examples

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist yet (idempotent); meant for tests and examples.

        Raises:
            StorageError: the bucket cannot be created (e.g. the name is taken by another account,
                or the credentials may not create buckets).
        """
        params: dict[str, Any] = {"Bucket": self._bucket}
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        failure: BaseException
        error: HdsError
        try:
            self.client.create_bucket(**params)
            return
        except botocore.exceptions.ClientError as exc:
            code = _error_code(exc)
            if code == "BucketAlreadyOwnedByYou":
                return
            if code == "BucketAlreadyExists":
                try:
                    self.client.head_bucket(Bucket=self._bucket)
                    return
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                    pass
            error = StorageError(
                f"{self.url}: cannot create bucket {self._bucket!r}: {code or _http_status(exc)}"
            )
            failure = exc
        except botocore.exceptions.BotoCoreError as exc:
            error = self._fail(exc, "create_bucket", None)
            failure = exc
        error.__cause__ = self._safe_cause(failure)
        raise error

    # ------------------------------------------------------------------ dunder

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self._endpoint_url else ""
        sse = f", sse={self._sse!r}" if self._sse else ""
        return f"S3Store(bucket={self._bucket!r}, prefix={self._prefix!r}{endpoint}{sse})"

    def __getstate__(self) -> dict[str, Any]:
        if self._client_given:
            raise TypeError(
                f"{self!r} was given a boto3 client and cannot be pickled; construct it without `client=`"
            )
        state = self.__dict__.copy()
        state["_client"] = None
        state["_client_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client_lock = threading.Lock()


__all__ = ["ENDPOINT_ENV", "SSE_ENV", "SSE_KMS_KEY_ENV", "S3Store", "check_key"]
