"""Start moto's ThreadedMotoServer on 127.0.0.1 (free port), print its endpoint, run until stdin closes."""

from __future__ import annotations

import logging
import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    try:
        sys.stdin.read()  # returns when the parent closes our stdin (or dies)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
