"""The warehouse example (examples/duckdb): the report's series computed in DuckDB from the
Parquet export alone equal GetReport's (`ampsim report --json`), number for number."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "duckdb_series", REPO / "examples" / "duckdb" / "series.py"
)
duckdb_series = importlib.util.module_from_spec(spec)
spec.loader.exec_module(duckdb_series)


def test_duckdb_over_the_parquet_export_gives_the_reports_series(server, work: Path):
    # One device per person: the SQL counts devices as Amplitude counts users, and the report
    # counts people; a second device that never logs in is a user of its own to Amplitude (the
    # labels' second_device_id names its person), so with second devices the two differ by
    # those devices.
    scenario = work / "one-device.toml"
    scenario.write_text("[second_devices]\nprobability = 0.0\n")
    server.cli(
        "create", "--id", "wh", "--seed", "4", "--start", "2025-01-06", "--scale", "0.02",
        "--scenario", str(scenario),
    )
    server.cli("generate", "--simulation", "wh", "--days", "63")
    server.cli("export", "--simulation", "wh", "--format", "parquet", "--out", str(work / "x"))
    report = json.loads(server.cli("report", "--simulation", "wh", "--json").stdout)
    theirs = report["series"]
    mine = duckdb_series.series(str(work / "x" / "*.parquet"))

    assert mine["first_date"] == theirs["first_date"] == "2025-01-06"
    assert mine["days"] == report["days"] == 63
    # Sessions by channel and day (a channel with no session on a day is 0 there).
    for s in theirs["daily_sessions"]:
        assert mine["daily_sessions"].get(s["name"], [0] * 63) == s["values"], s["name"]
    assert set(mine["daily_sessions"]) <= {s["name"] for s in theirs["daily_sessions"]}
    assert sum(sum(v) for v in mine["daily_sessions"].values()) > 30_000
    # The funnel.
    assert mine["funnel"] == {s["name"]: s["users"] for s in theirs["funnel"]}
    assert mine["funnel"]["paid"] > 0
    # Weekly retention, cohort by cohort.
    assert mine["retention"] == [
        {"users": c["users"], "active": c["active"]} for c in theirs["retention"]
    ]
    assert len(mine["retention"]) == 9
    # Trial conversion by path and activation level (groups with no closed trial are absent).
    assert mine["conversion"] == {
        c["name"]: {"trials": c["trials"], "converted": c["converted"]}
        for c in theirs["conversion"]
        if c["trials"] > 0
    }
    assert sum(c["trials"] for c in mine["conversion"].values()) > 40
