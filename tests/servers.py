"""The S3 server launchers for the test fixtures: ``localstack/s3servers.py``, loaded from its file.

One implementation serves both the fixtures and the command line (``python localstack/s3servers.py``),
so the flags that make ``weed mini`` and LocalStack start without Docker live in one place.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PATH = Path(__file__).resolve().parents[1] / "localstack" / "s3servers.py"
_NAME = "hds_s3_test_servers"


def _load() -> ModuleType:
    module = sys.modules.get(_NAME)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    if spec is None or spec.loader is None:  # pragma: no cover - the file is part of the repository
        raise ImportError(f"cannot load the server launchers from {_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


_servers = _load()

S3Server = _servers.S3Server
SeaweedServer = _servers.S3Server
ServerUnavailable: type[RuntimeError] = _servers.ServerUnavailable
find_weed = _servers.find_weed
find_localstack_python = _servers.find_localstack_python
free_ports = _servers.free_ports
start_localstack = _servers.start_localstack
start_seaweedfs = _servers.start_seaweedfs
start_server = _servers.start_server
wait_writable = _servers.wait_writable
launcher_module = _servers
