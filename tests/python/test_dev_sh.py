"""`./dev.sh test` in CI starts its own PostgreSQL: on BARSMITH_TEST_PORT, else on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

DEV_SH = Path(__file__).resolve().parents[2] / "dev.sh"


def pick_port(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "BARSMITH_TEST_PORT"}
    return subprocess.run([str(DEV_SH), "test-port"], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_taken_default_port_is_avoided():
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 55432))
            holder.listen()
        except OSError:
            pass  # already taken (a development server): the same situation
        assert not bindable(55432)
        res = pick_port()
        assert res.returncode == 0, res.stderr
        port = int(res.stdout)
        assert port != 55432 and bindable(port)
    finally:
        holder.close()


def test_barsmith_test_port_is_honoured_or_refused_when_taken():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert pick_port(BARSMITH_TEST_PORT=str(free)).stdout.strip() == str(free)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = pick_port(BARSMITH_TEST_PORT=str(taken.getsockname()[1]))
    assert res.returncode != 0 and "that port is taken" in res.stderr
    assert "not a port number" in pick_port(BARSMITH_TEST_PORT="abc").stderr
