"""Benchmark: the same simulation to Parquet by one process and by PySpark on local[2].

    python python/benchmarks/bench_spark.py [--scale 0.1] [--days 30] [--shards 2,4,8] [--bin target/release/ampsim]

Prints, for one definition: `ampsim generate --out` (the Rust single process), the Python
reader alone (pyarrow batches, no writing), Spark's own costs (session start-up; a job of the
same number of tasks that writes nothing of substance), and the Spark data source writing the
events as Parquet with N shards. Figures only: nothing is asserted. Needs pyspark, a Java
runtime and the ampsim package (python/run-tests.sh's virtualenv has them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ampsim
import pyarrow.dataset as ds

START = "2025-01-01"


def timed(fn):
    t = time.monotonic()
    out = fn()
    dt = time.monotonic() - t
    return dt, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--shards", default="2,4,8")
    p.add_argument("--bin", default=str(Path(__file__).resolve().parents[2] / "target/release/ampsim"))
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ampsim-bench-spark."))
    try:
        print(f"definition     start {START}, {a.days} days, scale {a.scale}, seed 1; {os.cpu_count()} cores")
        dt, _ = timed(lambda: subprocess.run(
            [a.bin, "generate", "--out", str(work / "single"), "--start", START,
             "--days", str(a.days), "--scale", str(a.scale), "--quiet"],
            check=True, capture_output=True))
        events = ds.dataset(str(work / "single"), format="parquet", partitioning="hive").count_rows()
        print(f"generate --out {dt:6.2f} s  {events / dt:>10,.0f} events/s  ({events:,} events, Rust, one process)")

        sim = ampsim.Simulation(start=START, scale=a.scale)
        dt, n = timed(lambda: sum(b.num_rows for b in sim.events(a.days)))
        print(f"python reader  {dt:6.2f} s  {n / dt:>10,.0f} events/s  (pyarrow batches, all cores, no writing)")

        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        from pyspark.sql import SparkSession

        dt, spark = timed(lambda: (
            SparkSession.builder.master("local[2]").appName("ampsim-bench")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()))
        spark.sparkContext.setLogLevel("ERROR")
        print(f"spark start    {dt:6.2f} s  (local[2] session)")
        from ampsim.spark import AmpsimDataSource

        spark.dataSource.register(AmpsimDataSource)
        def source(n_shards: int):
            return (spark.read.format("ampsim").option("start", START).option("days", a.days)
                    .option("scale", a.scale).option("shards", n_shards).load())

        # The JVM's first jobs run cold (class loading, JIT): one untimed job warms it up.
        dt, _ = timed(lambda: source(2).write.format("noop").mode("overwrite").save())
        print(f"spark warm-up  {dt:6.2f} s  (the first job, untimed below)")
        for n_shards in [int(x) for x in a.shards.split(",")]:
            # Spark's own cost for n tasks that start a Python worker and write a file each.
            dt0, _ = timed(lambda: spark.range(0, n_shards, 1, n_shards)
                           .mapInArrow(lambda it: it, "id BIGINT")
                           .write.mode("overwrite").parquet(str(work / "empty")))
            dt1, _ = timed(lambda: source(n_shards).write.format("noop").mode("overwrite").save())
            out = work / f"spark{n_shards}"
            dt, _ = timed(lambda: source(n_shards).write.partitionBy("date").parquet(str(out)))
            rows = ds.dataset(str(out), format="parquet", partitioning="hive").count_rows()
            assert rows == events, (rows, events)
            print(f"spark {n_shards:>2} shards {dt:6.2f} s  {events / dt:>10,.0f} events/s to Parquet "
                  f"(partitionBy date); the source alone {dt1:.2f} s ({events / dt1:,.0f} events/s); "
                  f"{n_shards} tasks writing nothing {dt0:.2f} s")
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
