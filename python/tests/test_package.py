"""The Python package: its events are the engine's, as every other output gives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest

import ampsim
from conftest import batches_to_table, canonical, digest, generate_out, read_tree

START = "2025-01-06"


def test_the_schema_is_the_parquet_files_schema(work: Path):
    generate_out(work / "out", START, 2, 0.002)
    f = next((work / "out").glob("date=*/*.parquet"))
    assert pq.read_schema(f).remove_metadata() == ampsim.schema().remove_metadata()
    assert ampsim.schema().field("time").type == pa.timestamp("ms", tz="UTC")
    assert ampsim.schema().field("price").type == pa.float64()


def test_events_equal_generate_out_for_whole_and_shard(work: Path):
    """The wheel and `ampsim generate --out` (the Rust single process) write the same rows, in
    the same order, for the whole simulation and for one shard."""
    sim = ampsim.Simulation(start=START, seed=3, scale=0.005)
    for shard in ("0/1", "1/3"):
        out = work / shard.replace("/", "-of-")
        generate_out(out, START, 8, 0.005, seed=3, shard=shard)
        mine = batches_to_table(sim.events(8, shard=shard, batch_rows=1000))
        # The files as written, day by day in date order, each in the order of its rows.
        written = pa.concat_tables(
            pq.read_table(f).cast(ampsim.schema())
            for f in sorted(out.glob("date=*/*.parquet"))
        )
        assert mine.num_rows == written.num_rows > 1000
        # Stream order is time order (ties between devices go by the engine's device number,
        # which the device_id string does not show, so only time is checked here).
        times = mine.column("time").cast(pa.int64()).to_pylist()
        assert all(a <= b for a, b in zip(times, times[1:])), shard
        assert mine.equals(written), shard
        assert canonical(mine).equals(read_tree(out)), shard


def test_shards_add_up_to_the_whole_and_batches_do_not_matter():
    sim = ampsim.Simulation(start=START, seed=5, scale=0.005)
    whole = batches_to_table(sim.events(6))
    parts = [batches_to_table(sim.events(6, shard=(k, 4), batch_rows=333)) for k in range(4)]
    assert sum(p.num_rows for p in parts) == whole.num_rows
    assert canonical(pa.concat_tables(parts)).equals(canonical(whole))
    devices = [set(p.column("device_id").to_pylist()) for p in parts]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not devices[i] & devices[j], "a device in two shards"
    # The thread count changes nothing.
    assert batches_to_table(sim.events(6, threads=1)).equals(whole)
    # Another seed is another simulation.
    other = ampsim.Simulation(start=START, seed=6, scale=0.005)
    assert digest(batches_to_table(other.events(6))) != digest(whole)


def test_first_day_skips_days_without_changing_the_rest():
    sim = ampsim.Simulation(start=START, seed=1, scale=0.005)
    whole = batches_to_table(sim.events(5))
    tail = batches_to_table(sim.events(5, first_day=3))
    cut = pa.scalar(datetime(2025, 1, 9, tzinfo=timezone.utc), pa.timestamp("ms", tz="UTC"))
    expected = whole.filter(pa.compute.greater_equal(whole.column("time"), cut))
    assert tail.num_rows == expected.num_rows > 0
    assert tail.equals(expected)


def test_events_equal_the_servers_stream_events(server, work: Path):
    """The same definition on the server, read through StreamEvents (`ampsim events` is a
    StreamEvents client printing HTTP V2 JSON lines), gives exactly the wheel's events. 40 days:
    trials end (converted, expired) within them, so typed property values (numbers as JSON
    numbers, in both) are compared too."""
    server.cli("create", "--id", "py", "--seed", "7", "--start", START, "--scale", "0.006")
    server.cli("generate", "--simulation", "py", "--days", "40")
    lines = server.cli("events", "--simulation", "py").stdout.splitlines()
    streamed = [json.loads(line) for line in lines]

    sim = ampsim.Simulation(start=START, seed=7, scale=0.006)
    mine = batches_to_table(sim.events(40)).to_pylist()
    assert len(mine) == len(streamed) > 5000
    typed = 0
    for row, theirs in zip(mine, streamed):
        row = {k: v for k, v in row.items() if v is not None}
        row["time"] = int(row["time"].timestamp() * 1000)
        row["event_properties"] = json.loads(row["event_properties"])
        row["user_properties"] = json.loads(row["user_properties"])
        for k in ("groups", "group_properties"):
            if k in row:
                row[k] = json.loads(row[k])
        typed += any(isinstance(v, int) for v in theirs["event_properties"].values())
        assert row == theirs
    assert typed > 0, "trials ended in the range: some streamed properties are numbers"


def test_scenario_api_and_errors_name_what_is_wrong():
    text = ampsim.default_scenario()
    assert "[trials" in text
    assert ampsim.validate_scenario("") == text
    custom = ampsim.validate_scenario('name = "mine"\n')
    assert 'name = "mine"' in custom
    with pytest.raises(ampsim.ScenarioError) as e:
        ampsim.validate_scenario("[trials.conversion_rate]\nself_service = 1.5\n")
    assert e.value.path == "trials.conversion_rate.self_service"
    assert "trials.conversion_rate.self_service" in str(e.value)
    assert isinstance(e.value, ValueError)
    sim = ampsim.Simulation(start=START, scenario='name = "mine"\n')
    assert sim.scenario == custom
    assert len(sim.definition_tag) == 16
    assert sim.definition_tag != ampsim.Simulation(start=START).definition_tag

    for kwargs, needle in [
        (dict(start="2025-13-01"), "start"),
        (dict(start=START, scale=-1), "scale"),
        (dict(start=START, scale=float("nan")), "scale"),
        (dict(start=START, scale=ampsim.MAX_SCALE * 2), "scale"),
        (dict(start=START, scenario="[nope]\n"), "nope"),
    ]:
        with pytest.raises(ValueError, match=needle):
            ampsim.Simulation(**kwargs)
    sim = ampsim.Simulation(start=START, scale=0.001)
    for kwargs, needle in [
        (dict(days=3, shard="3/3"), "shard"),
        (dict(days=3, shard="a/b"), "shard"),
        (dict(days=3, shard=(0, 0)), "shard"),
        (dict(days=3, shard=1.5), "shard"),
        (dict(days=3, first_day=4), "first_day"),
        (dict(days=3, batch_rows=0), "batch_rows"),
        (dict(days=3, threads=0), "threads"),
    ]:
        with pytest.raises(ValueError, match=needle):
            sim.events(**kwargs)


def _peak_rss_kib(days: int) -> tuple[int, int]:
    """Peak RSS of a fresh interpreter that reads `days` days of a simulation, and the Arrow
    bytes it read."""
    code = f"""
import resource, ampsim
r = ampsim.Simulation(start="{START}", scale=0.05).events({days}, batch_rows=8192, threads=1)
n = sum(b.nbytes for b in r)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, n)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, nbytes = out.stdout.split()
    return int(rss), int(nbytes)


def test_memory_does_not_grow_with_the_days_read():
    """A reader holds users, a day's compact records and a few batches, never what it has
    handed out: reading 40 days takes little more memory than 5, though it reads 8x the bytes."""
    rss5, bytes5 = _peak_rss_kib(5)
    rss40, bytes40 = _peak_rss_kib(40)
    assert bytes40 > 6 * bytes5
    grown = (rss40 - rss5) * 1024
    assert grown < bytes40 / 4, (rss5, rss40, bytes40)


def test_the_wheel_is_one_abi3_wheel_for_cpython_3_9_on():
    """run-tests.sh built the wheel as `pip install .` does; it is tagged abi3 from 3.9, and the
    installed extension is the abi3 one."""
    wheel = Path(os.environ["AMPSIM_WHEEL"]).name
    assert "-cp39-abi3-" in wheel, wheel
    ext = Path(ampsim._ampsim.__file__).name
    assert ext.endswith(".abi3.so"), ext
    assert ampsim.ENGINE_VERSION >= 1


def test_labels_equal_the_servers_export_and_shards_add_up(server, work: Path):
    """`Simulation.labels` gives the rows of `ampsim export --format labels` for the same
    definition (the server's ground truth of every user), with the same schema and effects
    metadata; the labels of 3 shards add up to the whole, and batch sizes do not matter."""
    server.cli("create", "--id", "lab", "--seed", "7", "--start", START, "--scale", "0.006")
    server.cli("generate", "--simulation", "lab", "--days", "40")
    server.cli("export", "--simulation", "lab", "--format", "labels", "--out", str(work / "l"))
    theirs = pq.read_table(work / "l" / "lab_labels.parquet")

    sim = ampsim.Simulation(start=START, seed=7, scale=0.006)
    reader = sim.labels(40, batch_rows=5000)
    mine = reader.read_all()
    assert mine.schema.names == theirs.schema.names
    assert mine.schema.metadata[b"ampsim.effects"] == theirs.schema.metadata[b"ampsim.effects"]
    effects = json.loads(mine.schema.metadata[b"ampsim.effects"])
    assert effects["engine_version"] == ampsim.ENGINE_VERSION

    def rows(t: pa.Table) -> list:
        return sorted(t.to_pylist(), key=lambda r: r["device_id"])

    whole = rows(mine)
    assert len(whole) == theirs.num_rows > 1000
    assert whole == rows(theirs)
    decided = [r for r in whole if r["p_convert"] is not None]
    assert len(decided) > 10 and all(0 < r["p_convert"] < 1 for r in decided)
    assert sum(r["identified"] for r in whole) > 50

    parts = [rows(sim.labels(40, shard=f"{k}/3").read_all()) for k in range(3)]
    assert sorted(sum(parts, []), key=lambda r: r["device_id"]) == whole
    assert all(len(p) > 0 for p in parts)
    with pytest.raises(ValueError, match="days"):
        sim.labels(0)
