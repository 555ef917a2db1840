"""``tensorboard --logdir`` started as a user runs it, on 127.0.0.1 and a free port, for the browser tests."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_tensorboard(logdir: Path, log_path: Path, timeout: float = 90.0) -> Iterator[str]:
    """Run TensorBoard on ``logdir`` until the ``lrp`` plugin is listed as enabled; yield its base URL.

    TensorBoard's output goes to ``log_path``; the test fails with its tail when the server exits or the
    plugin is not enabled within ``timeout`` seconds. The server is stopped when the block ends.
    """
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    with Path(log_path).open("w") as log:
        process = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/data/plugins_listing", timeout=2) as response:
                        if json.loads(response.read()).get("lrp", {}).get("enabled"):
                            break
                except (OSError, ValueError):
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("TensorBoard did not start: " + Path(log_path).read_text()[-2000:])
                time.sleep(0.25)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
