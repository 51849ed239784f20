"""The report's series from the Parquet export, in DuckDB (examples/duckdb/report.sql).

    ampsim export --simulation demo --format parquet --out export
    python examples/duckdb/series.py 'export/*.parquet'

prints the daily sessions by channel (totals), the funnel, weekly retention and trial
conversion as JSON, in the shape of GetReport's `series` (`ampsim report --json`), which they
equal. Needs only the `duckdb` package.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb

SQL = Path(__file__).with_name("report.sql")


def queries(sql: str) -> tuple[str, dict[str, str]]:
    """The file's setup (everything before the first `-- name:`) and its named queries."""
    setup, *named = sql.split("-- name: ")
    out = {}
    for block in named:
        name, _, body = block.partition("\n")
        out[name.strip()] = body
    return setup, out


def series(files: str) -> dict:
    """The report's series of the export files matching `files` (a glob)."""
    con = duckdb.connect()
    quoted = files.replace("'", "''")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{quoted}')")
    setup, named = queries(SQL.read_text())
    code = "\n".join(line for line in setup.splitlines() if not line.lstrip().startswith("--"))
    for stmt in code.split(";"):
        if stmt.strip():
            con.execute(stmt)
    (first_day, days) = con.execute("SELECT first_day::VARCHAR, days FROM span").fetchone()

    daily: dict[str, list[int]] = {}
    for channel, day, n in con.execute(named["daily_sessions"]).fetchall():
        daily.setdefault(channel, [0] * days)[day] = n

    visited, identified, trial, paid = con.execute(named["funnel"]).fetchone()
    funnel = {"visited": visited, "identified": identified, "started a trial": trial, "paid": paid}

    retention: dict[int, dict] = {}
    for cohort, week, users in con.execute(named["retention"]).fetchall():
        c = retention.setdefault(cohort, {"users": 0, "active": []})
        if week < 0:
            c["users"] = users
        else:
            c["active"].append(users)

    conversion = {
        name: {"trials": trials, "converted": converted}
        for name, trials, converted in con.execute(named["conversion"]).fetchall()
    }
    return {
        "first_date": first_day,
        "days": days,
        "daily_sessions": daily,
        "funnel": funnel,
        "retention": [retention[k] for k in sorted(retention)],
        "conversion": conversion,
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    s = series(sys.argv[1])
    s["daily_sessions"] = {k: sum(v) for k, v in s["daily_sessions"].items()}
    print(json.dumps(s, indent=2))
