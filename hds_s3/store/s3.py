"""An object store in an S3 bucket (AWS S3, MinIO, SeaweedFS, LocalStack, moto...).

This is the only module of hds_s3 that imports boto3 and botocore. Every botocore failure is
translated by one table (:func:`_translate`) into the errors of :mod:`hds_s3.errors`, keeping the
botocore exception as ``__cause__``:

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
any other ``ClientError``, connection, endpoint,      :class:`~hds_s3.errors.StorageError`
credential or timeout error
====================================================  =======================================

Servers disagree about an ``If-Match`` write on a missing key (SeaweedFS answers 412, AWS may
answer 404, DESIGN section 9), so a failed ``If-Match`` put is followed by a HEAD that decides
between :class:`~hds_s3.errors.NotFoundError` and :class:`~hds_s3.errors.ConflictError`.

Etags are returned without the surrounding double quotes S3 puts on them (for a simple PUT that is
the MD5 hex of the content, exactly what the memory and local stores return) and are quoted again
when sent back as ``If-Match``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session
from botocore.config import Config
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

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

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
_RETRYABLE_CONFLICT_CODES = frozenset({"ConditionalRequestConflict"})
_BUCKET_MISSING_CODES = frozenset({"NoSuchBucket"})
_RANGE_CODES = frozenset({"InvalidRange", "416"})


class _RetryableConflict(Exception):
    """Internal: the server answered 409 ConditionalRequestConflict; the put may be tried again."""

    def __init__(self, cause: botocore.exceptions.ClientError) -> None:
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


class S3Store:
    """Objects under ``s3://bucket/prefix``, with conditional writes mapped onto S3 preconditions.

    The boto3 client is created on first use (never at import or construction, so ``moto`` can be
    started first), once, under a lock; boto3 clients are thread-safe, so one store may be shared by
    threads.

    The endpoint is ``endpoint_url`` if given, else the environment variable ``HDS_S3_ENDPOINT_URL``,
    else ``AWS_ENDPOINT_URL``, else AWS itself. With a custom endpoint, path-style addressing is used.
    Credentials come from the arguments when given, else from boto3's standard chain (environment,
    profile, instance role...). botocore retries transient failures (standard mode, 5 attempts).

    Args:
        bucket: the bucket name; it must exist (see :meth:`create_bucket`).
        prefix: a key prefix inside the bucket (``""`` or ``"a/b"``; slashes at either end are
            ignored); every key of this store lives under ``<prefix>/``.
        endpoint_url: an S3-compatible endpoint such as ``http://127.0.0.1:9000``.
        region_name: the AWS region; defaults to boto3's configuration (``us-east-1`` for a custom
            endpoint when none is configured).
        client: a ready boto3 S3 client to use instead of creating one (endpoint, region and
            credential arguments are then ignored).
        aws_access_key_id: access key id, instead of the standard credential chain.
        aws_secret_access_key: secret access key, instead of the standard credential chain.
        aws_session_token: session token for temporary credentials.

    Raises:
        ValidationError: the bucket name is empty or the prefix contains an empty component.
    """

    #: How many times a put answered with 409 ConditionalRequestConflict is attempted in all.
    conflict_attempts: int = 5
    #: Upper bound, in seconds, of the jittered exponential wait between those attempts.
    conflict_max_wait: float = 1.0
    #: Base, in seconds, of that wait.
    conflict_wait_multiplier: float = 0.05

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
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValidationError(f"S3 bucket name {bucket!r} is not valid: give a bare bucket name")
        prefix = prefix.strip("/")
        if prefix and any(part == "" for part in prefix.split("/")):
            raise ValidationError(f"S3 prefix {prefix!r} contains an empty path component ('//')")
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
        self._client: Any | None = client
        self._client_given = client is not None
        self._client_lock = threading.Lock()

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
            "retries": {"mode": "standard", "max_attempts": 5},
            "max_pool_connections": 32,
        }
        if self._endpoint_url:
            options["s3"] = {"addressing_style": "path"}
        try:
            core = botocore.session.Session()
            core.register_component("data_loader", _shared_loader())
            credentials = {k: v for k, v in self._credentials.items() if v}
            session = boto3.session.Session(botocore_session=core, **credentials)
            return session.client(
                "s3", endpoint_url=self._endpoint_url, region_name=region, config=Config(**options)
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise StorageError(
                f"{self.url}: cannot create an S3 client for endpoint {self.endpoint_url or 'AWS'}: "
                + self._scrub(str(exc))
            ) from exc

    def _scrub(self, text: str) -> str:
        """Remove anything secret (keys, token, endpoint userinfo) from a message we did not write."""
        if self._endpoint_url and self._endpoint_url != self.endpoint_url:
            text = text.replace(self._endpoint_url, str(self.endpoint_url))
        for name in ("aws_secret_access_key", "aws_session_token"):
            value = self._credentials.get(name)
            if value:
                text = text.replace(value, "***")
        return text

    def _full_key(self, key: str) -> str:
        return self._key_prefix + key

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
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"} or status == 403:
                return StorageError(
                    f"{what}: access denied ({code or status}); check the credentials and their permissions"
                )
            if status == 404:
                return NotFoundError(f"{what}: not found ({code})")
            detail = f"{code or 'error'} (HTTP {status})" if status else code or "error"
            return StorageError(
                self._scrub(f"{what}: S3 answered {detail}{': ' + message if message else ''}")
            )
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageError(
                f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionError):
            return StorageError(
                f"{what}: cannot reach the S3 endpoint {self.endpoint_url or 'of AWS'} "
                f"({type(exc).__name__}); is the server running?"
            )
        return StorageError(self._scrub(f"{what}: {type(exc).__name__}: {exc}"))

    def _call(self, op: str, key: str | None, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except HdsError:
            raise
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._translate(exc, op, key) from exc

    def _raise(self, exc: BaseException, op: str, key: str | None) -> NoReturn:
        raise self._translate(exc, op, key) from exc

    # ------------------------------------------------------------------ the protocol

    def get(self, key: str) -> tuple[bytes, str]:
        """Return the bytes and etag of ``key``.

        Raises:
            NotFoundError: no object has this key.
            StorageError: S3 failed or cannot be reached, or the bucket does not exist.
        """

        def run() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self._bucket, Key=self._full_key(key))
            with response["Body"] as body:
                data = body.read()
            return data, _strip_etag(response.get("ETag", ""))

        return self._call("get", key, run)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes of ``key`` from offset ``start`` (fewer at its end) with an HTTP Range.

        Raises:
            NotFoundError: no object has this key.
            ValidationError: ``start`` or ``length`` is negative.
            StorageError: S3 failed or cannot be reached.
        """
        if start < 0 or length < 0:
            raise ValidationError(
                f"{self._what('get_range', key)}: start={start} and length={length} must be >= 0"
            )
        if length == 0:
            self.head(key)
            return b""

        def run() -> bytes:
            try:
                response = self.client.get_object(
                    Bucket=self._bucket, Key=self._full_key(key), Range=f"bytes={start}-{start + length - 1}"
                )
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) in _RANGE_CODES or _http_status(exc) == 416:
                    return b""  # the object exists; the range starts at or past its end
                raise
            with response["Body"] as body:
                data: bytes = body.read()
            # A server that ignores Range answers 200 with the whole object.
            if (
                response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200
                and "ContentRange" not in response
            ):
                data = data[start : start + length]
            return data

        return self._call("get_range", key, run)

    def head(self, key: str) -> ObjectInfo:
        """Return the size and etag of ``key``.

        Raises:
            NotFoundError: no object has this key.
            StorageError: S3 failed or cannot be reached.
        """

        def run() -> ObjectInfo:
            response = self.client.head_object(Bucket=self._bucket, Key=self._full_key(key))
            return ObjectInfo(
                key, int(response.get("ContentLength", 0)), _strip_etag(response.get("ETag", ""))
            )

        return self._call("head", key, run)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write ``key`` and return its new etag; see :meth:`hds_s3.store.base.ObjectStore.put`.

        ``if_none_match`` sends ``If-None-Match: *``; ``if_match`` sends ``If-Match: "<etag>"``.
        A 409 ConditionalRequestConflict is retried with jittered exponential backoff. When a
        conditional put fails after botocore had to resend it (e.g. the first response was lost) and
        the object now holds exactly these bytes, the earlier attempt is taken to have succeeded.

        Raises:
            ConflictError: the precondition failed (the object is unchanged), or the server kept
                answering 409 ConditionalRequestConflict.
            NotFoundError: ``if_match`` was given and the key does not exist.
            ValidationError: contradictory preconditions or an empty key.
            StorageError: S3 failed or cannot be reached, or the bucket does not exist.
        """
        check_put_args(key, if_none_match, if_match)
        body = bytes(data)
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": self._full_key(key), "Body": body}
        if if_none_match:
            params["IfNoneMatch"] = "*"
        if if_match is not None:
            params["IfMatch"] = _quote_etag(if_match)

        def attempt() -> str:
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
        try:
            return retrying(attempt)
        except _RetryableConflict as exc:
            raise self._translate(exc.cause, "put", key) from exc.cause
        except botocore.exceptions.ClientError as exc:
            conditional = if_none_match or if_match is not None
            code, status = _error_code(exc), _http_status(exc)
            lost_precondition = code in _PRECONDITION_CODES or status == 412
            missing = (code in _NOT_FOUND_CODES or status == 404) and code not in _BUCKET_MISSING_CODES
            if conditional and (lost_precondition or (missing and if_match is not None)):
                return self._resolve_failed_condition(exc, key, body, if_match)
            self._raise(exc, "put", key)
        except botocore.exceptions.BotoCoreError as exc:
            self._raise(exc, "put", key)

    def _resolve_failed_condition(
        self, exc: botocore.exceptions.ClientError, key: str, body: bytes, if_match: str | None
    ) -> str:
        """Decide what a 412 (or a 404 on If-Match) means; return the etag only if the put in fact succeeded.

        Raises:
            NotFoundError: ``if_match`` was given and the key does not exist.
            ConflictError: the precondition failed.
            StorageError: the HEAD that decides failed.
        """
        try:
            current = self.head(key)
        except NotFoundError:
            if if_match is not None:
                raise NotFoundError(f"{self._what('put', key)}: no object to replace (If-Match)") from exc
            raise self._translate(exc, "put", key) from exc
        if _retry_attempts(exc) > 0 and current.etag == content_etag(body):
            return current.etag  # botocore resent a put whose first attempt landed: the object is ours
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
        is yielded.

        Raises:
            StorageError: S3 failed or cannot be reached, or the bucket does not exist.
        """
        items = self._list_pages(prefix)
        if self._lists_in_key_order():
            return items
        return iter(sorted(items, key=lambda info: info.key))

    def _lists_in_key_order(self) -> bool:
        endpoint = str(getattr(getattr(self.client, "meta", None), "endpoint_url", "") or "")
        host = urlsplit(endpoint).hostname or ""
        return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))

    def _list_pages(self, prefix: str) -> Iterator[ObjectInfo]:
        cut = len(self._key_prefix)

        def pages() -> Iterator[dict[str, Any]]:
            paginator = self.client.get_paginator("list_objects_v2")
            return iter(paginator.paginate(Bucket=self._bucket, Prefix=self._full_key(prefix)))

        page_iter = self._call("list", prefix, pages)
        while True:
            page = self._call("list", prefix, lambda: next(page_iter, None))
            if page is None:
                return
            for item in page.get("Contents", ()) or ():
                yield ObjectInfo(
                    item["Key"][cut:], int(item.get("Size", 0)), _strip_etag(item.get("ETag", ""))
                )

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error.

        Raises:
            StorageError: S3 failed or cannot be reached, or the bucket does not exist.
        """
        try:
            self.client.delete_object(Bucket=self._bucket, Key=self._full_key(key))
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return
            self._raise(exc, "delete", key)
        except botocore.exceptions.BotoCoreError as exc:
            self._raise(exc, "delete", key)

    # ------------------------------------------------------------------ helpers for tests and examples

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist yet (idempotent); meant for tests and examples.

        Raises:
            StorageError: the bucket cannot be created (e.g. the name is taken by another account).
        """
        params: dict[str, Any] = {"Bucket": self._bucket}
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**params)
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
            raise StorageError(
                f"{self.url}: cannot create bucket {self._bucket!r}: {code or _http_status(exc)}"
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:
            self._raise(exc, "create_bucket", None)

    # ------------------------------------------------------------------ dunder

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self._endpoint_url else ""
        return f"S3Store(bucket={self._bucket!r}, prefix={self._prefix!r}{endpoint})"

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


__all__ = ["ENDPOINT_ENV", "S3Store"]
