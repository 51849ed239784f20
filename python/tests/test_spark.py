"""Spark: the data source and the mapInArrow recipe on local[2] give the single-process events.

The single process is `ampsim generate --out --shard 0/1` (Rust); Spark writes Parquet with
N tasks, one per shard, and the two trees hold the same rows.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from conftest import digest, generate_out, read_tree

START = "2025-01-06"
DAYS = 10
SCALE = 0.01


@pytest.fixture(scope="module")
def spark():
    # Spark's Python workers must import ampsim: run them with this interpreter.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    started = time.monotonic()
    s = (
        SparkSession.builder.master("local[2]")
        .appName("ampsim-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    print(f"\nSpark session started in {time.monotonic() - started:.1f} s")
    from ampsim.spark import AmpsimDataSource

    s.dataSource.register(AmpsimDataSource)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("single") / "out"
    started = time.monotonic()
    generate_out(out, START, DAYS, SCALE)
    print(f"\nampsim generate --out (single process): {time.monotonic() - started:.2f} s")
    return digest(read_tree(out))


def test_the_data_source_writes_the_single_process_events(spark, single_process, work: Path):
    started = time.monotonic()
    df = (
        spark.read.format("ampsim")
        .option("start", START)
        .option("days", DAYS)
        .option("scale", SCALE)
        .option("seed", 1)
        .option("shards", 7)
        .load()
    )
    assert df.rdd.getNumPartitions() == 7
    df.write.partitionBy("date").parquet(str(work / "spark"))
    print(f"\nSpark data source, 7 shards on local[2], to Parquet: {time.monotonic() - started:.2f} s")
    tree = read_tree(work / "spark")
    assert tree.num_rows > 20_000
    assert digest(tree) == single_process
    # Hive partitions by the event's UTC date, as `generate --out` lays them out.
    dates = sorted(p.name for p in (work / "spark").glob("date=*"))
    assert dates[0] == "date=2025-01-06" and dates[-1] == "date=2025-01-15" and len(dates) == DAYS


def test_the_map_in_arrow_recipe_gives_the_same_events(spark, single_process, work: Path):
    from ampsim.spark import read_with_map_in_arrow

    df = read_with_map_in_arrow(spark, start=START, days=DAYS, scale=SCALE, seed=1, shards=3)
    df.write.parquet(str(work / "recipe"))
    assert digest(read_tree(work / "recipe")) == single_process


def test_bad_options_are_named(spark):
    from pyspark.errors import PySparkException

    def reader():  # a DataFrameReader keeps its options: a new one per case
        return spark.read.format("ampsim").option("start", START)

    with pytest.raises(PySparkException, match="option days is required"):
        reader().load().count()
    with pytest.raises(PySparkException, match="option scale: want a float, got 'lots'"):
        reader().option("days", 2).option("scale", "lots").load().count()
    with pytest.raises(PySparkException, match="shards: must be at least 1"):
        reader().option("days", 2).option("shards", 0).load().count()
    with pytest.raises(PySparkException, match="trials.conversion_rate.self_service"):
        (reader().option("days", 2)
         .option("scenario", "[trials.conversion_rate]\nself_service = 2.0\n")
         .load().count())
    with pytest.raises(PySparkException, match="start"):
        reader().option("days", 2).option("start", "yesterday").load().count()
