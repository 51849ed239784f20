"""ampsim on Spark: a Python data source (Spark 4) and a ``mapInArrow`` recipe (Spark 3.x).

Spark 4 (the Python Data Source API)::

    from ampsim.spark import AmpsimDataSource
    spark.dataSource.register(AmpsimDataSource)
    df = (spark.read.format("ampsim")
          .option("start", "2025-01-01").option("days", 365)
          .option("scale", 1.0).option("seed", 1).option("shards", 64)
          .load())
    df.write.partitionBy("date").parquet("s3://bucket/events")   # "date" is a column

One Spark partition per shard: shard K of N owns the devices whose index within their first day
is K modulo N, and is a pure function of (definition, K, N, days). A task that is retried or
run twice by speculative execution yields the same rows, and the N shards together are the
single-process simulation event for event, whatever N is (the dataset does not depend on it,
only the parallelism does).

Options (strings, as Spark passes them):

- ``start`` (required): day 0, ``YYYY-MM-DD``.
- ``days`` (required): days to generate from day 0.
- ``seed`` (default 1), ``scale`` (default 1.0: the default year's ~16M visitors).
- ``shards`` (default: the driver's core count): the number of partitions.
- ``scenario``: a scenario as TOML text, merged onto the embedded default; or
  ``scenario_file``: a path to one, readable where the driver runs.
- ``first_day`` (default 0): days before it are simulated but not emitted.
- ``threads`` (default 1): engine threads per task. Spark already runs a task per core.

Spark 3.x has no Python data sources; :func:`read_with_map_in_arrow` builds the same DataFrame
from ``spark.range(N)`` and ``mapInArrow`` (Spark 3.3+), one shard per row, and works on Spark 4
as well.

The DataFrame has the columns of every columnar output of ampsim (:func:`ampsim.schema`), with
``time`` as a Spark TIMESTAMP, plus ``date`` (the event's UTC date, a DATE) to partition by.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional

import pyarrow as pa

import ampsim

__all__ = [
    "AmpsimDataSource",
    "Definition",
    "read_with_map_in_arrow",
    "shard_batches",
    "spark_schema_ddl",
]


@dataclass(frozen=True)
class Definition:
    """What a shard task needs: the simulation's definition and the shape of the run.

    Picklable and small, so Spark ships it to every task.
    """

    start: str
    days: int
    seed: int = 1
    scale: float = 1.0
    scenario: Optional[str] = None
    shards: int = 1
    first_day: int = 0
    threads: int = 1
    batch_rows: int = 65536

    def check(self) -> "Definition":
        """Raises ``ValueError`` naming the option that is wrong (on the driver, before tasks)."""
        ampsim.Simulation(
            start=self.start, seed=self.seed, scale=self.scale, scenario=self.scenario
        )
        if self.days < 0:
            raise ValueError(f"days: must be at least 0, got {self.days}")
        if self.shards < 1:
            raise ValueError(f"shards: must be at least 1, got {self.shards}")
        if not 0 <= self.first_day <= self.days:
            raise ValueError(f"first_day: must be in 0..days ({self.days}), got {self.first_day}")
        if self.threads < 1:
            raise ValueError(f"threads: must be at least 1, got {self.threads}")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows: must be at least 1, got {self.batch_rows}")
        return self

    @staticmethod
    def from_options(options: Dict[str, str]) -> "Definition":
        """A definition from Spark's reader options (see the module's doc)."""
        opts = {k.lower(): v for k, v in options.items()}

        def number(name: str, kind: Any, default: Any) -> Any:
            raw = opts.get(name)
            if raw is None:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"option {name}: want a {kind.__name__}, got {raw!r}") from None

        for required in ("start", "days"):
            if required not in opts:
                raise ValueError(f'option {required} is required, e.g. .option("{required}", ...)')
        scenario = opts.get("scenario")
        path = opts.get("scenario_file")
        if scenario is not None and path is not None:
            raise ValueError("options scenario and scenario_file: give one, not both")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    scenario = f.read()
            except OSError as e:
                raise ValueError(f"option scenario_file: {e}") from None
        return Definition(
            start=opts["start"],
            days=number("days", int, 0),
            seed=number("seed", int, 1),
            scale=number("scale", float, 1.0),
            scenario=scenario,
            shards=number("shards", int, os.cpu_count() or 1),
            first_day=number("first_day", int, 0),
            threads=number("threads", int, 1),
            batch_rows=number("batch_rows", int, 65536),
        ).check()


def _spark_type(t: pa.DataType) -> str:
    if pa.types.is_string(t):
        return "STRING"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    raise TypeError(f"no Spark type for the Arrow type {t}")  # a new column kind: map it here


def spark_schema_ddl() -> str:
    """The DataFrame's schema as a Spark DDL string: :func:`ampsim.schema` plus ``date``."""
    cols = [
        f"`{f.name}` {_spark_type(f.type)}{'' if f.nullable else ' NOT NULL'}"
        for f in ampsim.schema()
    ]
    cols.append("`date` DATE NOT NULL")
    return ", ".join(cols)


def _spark_arrow_schema() -> pa.Schema:
    """The Arrow schema Spark's JVM side expects for :func:`spark_schema_ddl`: timestamps in
    microseconds, dates as date32."""
    fields = []
    for f in ampsim.schema():
        t = pa.timestamp("us", tz="UTC") if pa.types.is_timestamp(f.type) else f.type
        fields.append(pa.field(f.name, t, f.nullable))
    fields.append(pa.field("date", pa.date32(), False))
    return pa.schema(fields)


def shard_batches(d: Definition, shard: int) -> Iterator[pa.RecordBatch]:
    """The record batches of shard ``shard`` of ``d.shards``, in Spark's Arrow types: a pure
    function of its arguments (the body of every task)."""
    sim = ampsim.Simulation(start=d.start, seed=d.seed, scale=d.scale, scenario=d.scenario)
    reader = sim.events(
        d.days,
        shard=(shard, d.shards),
        first_day=d.first_day,
        batch_rows=d.batch_rows,
        threads=d.threads,
    )
    target = _spark_arrow_schema()
    for batch in reader:
        time = batch.column("time").cast(pa.timestamp("us", tz="UTC"))
        date = batch.column("time").cast(pa.date32())
        arrays = [time if f.name == "time" else batch.column(f.name) for f in ampsim.schema()]
        yield pa.RecordBatch.from_arrays(arrays + [date], schema=target)


try:  # The data source needs Spark 4; the recipe below needs only pyspark 3.3+.
    from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
except ImportError:  # pragma: no cover - exercised only without Spark 4
    DataSource = DataSourceReader = InputPartition = None  # type: ignore[assignment,misc]


if DataSource is not None:

    class _ShardPartition(InputPartition):  # type: ignore[misc,valid-type]
        """One Spark partition: one shard."""

        def __init__(self, shard: int):
            super().__init__(shard)
            self.shard = shard

    class _AmpsimReader(DataSourceReader):  # type: ignore[misc,valid-type]
        def __init__(self, definition: Definition):
            self.definition = definition

        def partitions(self):
            return [_ShardPartition(k) for k in range(self.definition.shards)]

        def read(self, partition):
            yield from shard_batches(self.definition, partition.shard)

    class AmpsimDataSource(DataSource):  # type: ignore[misc,valid-type]
        """``spark.read.format("ampsim")``: one partition per shard (see the module's doc)."""

        @classmethod
        def name(cls) -> str:
            return "ampsim"

        def schema(self) -> str:
            return spark_schema_ddl()

        def reader(self, schema):
            return _AmpsimReader(Definition.from_options(dict(self.options)))

else:  # pragma: no cover

    class AmpsimDataSource:  # type: ignore[no-redef]
        """Needs Spark 4 (pyspark.sql.datasource); use :func:`read_with_map_in_arrow` on 3.x."""

        def __init__(self, *args: Any, **kwargs: Any):
            raise ImportError(
                "ampsim.spark.AmpsimDataSource needs pyspark 4 (pyspark.sql.datasource); "
                "on Spark 3.x use ampsim.spark.read_with_map_in_arrow"
            )


def read_with_map_in_arrow(spark: Any, **options: Any):
    """The same DataFrame as ``spark.read.format("ampsim")``, built with ``mapInArrow``
    (Spark 3.3+): ``spark.range(shards)`` in one partition per row, each row's shard generated
    by the task that holds it. Takes the data source's options as keyword arguments.
    """
    d = Definition.from_options({k: str(v) for k, v in options.items() if v is not None})

    def tasks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            for shard in b.column("id").to_pylist():
                yield from shard_batches(d, shard)

    return spark.range(0, d.shards, 1, d.shards).mapInArrow(tasks, spark_schema_ddl())
