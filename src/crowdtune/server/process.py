"""Running ``crowdtune serve`` as a subprocess: for load tests and the server benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def crowdtune_command() -> list[str]:
    """The ``crowdtune`` console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("crowdtune")
    return [str(script)] if script.exists() else [sys.executable, "-m", "crowdtune.cli"]


def start_server(
    url: str,
    port: int,
    *,
    log: Path | None = None,
    rate_limit: int = 100_000_000,
    options: Sequence[str] = (),
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """``crowdtune serve`` on database ``url`` and ``port``, returned once it answers HTTP.

    ``options`` are more options of ``crowdtune serve`` (``["--max-body-bytes", "5000000"]``,
    ``["--workers", "2"]``). The server runs in a process group of its own, so that
    :func:`kill_server` ends all its processes at once.
    Its output is appended to ``log`` (discarded without one). Raises ``RuntimeError`` with the
    log's tail when the server exits or does not answer within ``timeout`` seconds.
    """
    command = [*crowdtune_command(), "serve", "--db", url, "--port", str(port),
               "--rate-limit", str(rate_limit), *options]  # fmt: skip
    if log is None:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    else:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def tail() -> str:
        return log.read_text(errors="replace")[-2000:] if log is not None else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"crowdtune serve exited with {process.returncode}: {tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    kill_server(process)
    raise RuntimeError(f"crowdtune serve did not answer within {timeout:.0f} s: {tail()}")


def kill_server(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process of a server from :func:`start_server` (``--workers N`` runs
    several) at once, as a power cut would stop them, and wait for the first to exit."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server (kill it after 10 s) and wait for it to exit."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            kill_server(process)
