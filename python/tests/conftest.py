"""Shared helpers of the Python package's tests: the ampsim binary, a server, digests.

The binary is $AMPSIM_BIN (default: target/release/ampsim of this repository); run.sh builds
nothing, it is given what `cargo test --release` built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("AMPSIM_BIN", REPO / "target" / "release" / "ampsim"))

# The canonical order of a table: time, device_id, event id (the stream itself breaks ties of
# time by the engine's device number, which device_id strings do not show).
ORDER = [("time", "ascending"), ("device_id", "ascending"), ("event_id", "ascending")]


def run(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Runs the ampsim binary; fails the test with its stderr if it fails."""
    p = subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=timeout, **kw
    )
    if p.returncode != 0:
        pytest.fail(f"ampsim {' '.join(args)} exited {p.returncode}:\n{p.stderr}")
    return p


def generate_out(out: Path, start: str, days: int, scale: float, seed: int = 1, shard: str = "0/1"):
    """`ampsim generate --out` (the Rust single-process writer) into `out`."""
    run(
        "generate", "--out", str(out), "--start", start, "--days", str(days),
        "--scale", str(scale), "--seed", str(seed), "--shard", shard, "--quiet",
    )


def read_tree(out: Path) -> pa.Table:
    """Every Parquet file of a `generate --out` tree (or a Spark output), as one table without
    the partition column, in stream order."""
    t = ds.dataset(str(out), format="parquet", partitioning="hive").to_table()
    if "date" in t.column_names:
        t = t.drop_columns(["date"])
    return t.sort_by(ORDER)


def canonical(t: pa.Table) -> pa.Table:
    """A table in ampsim's Arrow schema (time in ms, UTC) and stream order, without `date`."""
    if "date" in t.column_names:
        t = t.drop_columns(["date"])
    import ampsim

    return t.cast(ampsim.schema()).sort_by(ORDER)


def digest(t: pa.Table) -> str:
    """SHA-256 over the rows of a table in stream order, every column's value by name."""
    h = hashlib.sha256()
    t = canonical(t)
    for batch in t.to_batches(max_chunksize=10_000):
        for row in batch.to_pylist():
            row["time"] = int(row["time"].timestamp() * 1000)
            h.update(json.dumps(row, sort_keys=True).encode())
            h.update(b"\n")
    return h.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ampsim serve` on a free loopback port with a temporary database."""

    def __init__(self, work: Path):
        self.addr = f"http://127.0.0.1:{free_port()}"
        self.log = open(work / "server.log", "w")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--listen", self.addr.removeprefix("http://"),
             "--db", str(work / "ampsim.db")],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"ampsim serve exited: {(work / 'server.log').read_text()}")
            if subprocess.run([str(BIN), "list", "--server", self.addr],
                              capture_output=True).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail("ampsim serve was not ready after 30 s")
            time.sleep(0.1)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run(*args, "--server", self.addr)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def work() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ampsim-pytest."))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server(work: Path) -> Iterator[Server]:
    s = Server(work)
    yield s
    s.stop()


def batches_to_table(batches: Iterable[pa.RecordBatch]) -> pa.Table:
    import ampsim

    return pa.Table.from_batches(list(batches), schema=ampsim.schema())
