"""ampsim: deterministic synthetic Amplitude events of a B2B SaaS funnel, generated in-process.

A :class:`Simulation` is a definition (scenario, seed, start date, population scale); the same
definition always gives the same events, in any process. Its :meth:`Simulation.events` returns
a ``pyarrow.RecordBatchReader`` over one shard's events, day after day, in the schema of every
columnar output of ampsim (the Parquet files of ``ampsim generate --out`` and ``ampsim export``)::

    import ampsim
    sim = ampsim.Simulation(start="2025-01-01", seed=1, scale=0.01)
    reader = sim.events(days=30)                 # the whole simulation
    part = sim.events(days=30, shard="2/8")      # shard 2 of 8: the 8 shards add up to the whole
    table = reader.read_all()                    # or: for batch in reader: ...

Shard K of N owns the devices whose index within their first day is K modulo N, and a shard is
a pure function of (definition, K, N, days). Memory holds the shard's users, one day's compact
records and a few rendered batches, whatever the number of days.

``ampsim.spark`` has a Spark 4 data source (``spark.read.format("ampsim")``) and a
``mapInArrow`` recipe for Spark 3.x.

Ground truth: :meth:`Simulation.labels` returns a ``pyarrow.RecordBatchReader`` over one
shard's users after a number of days (the rows of ``ampsim export --format labels``): latent
intent and its first touch's mean, identification, and each trial's decision with the
probability its outcome was drawn with; the schema's metadata ``ampsim.effects`` holds the true
effect parameters as JSON::

    labels = sim.labels(days=30).read_all()
"""

from ._ampsim import (  # noqa: F401  (re-exported)
    ENGINE_VERSION,
    MAX_SCALE,
    ScenarioError,
    Simulation,
    default_scenario,
    schema,
    validate_scenario,
)

__all__ = [
    "ENGINE_VERSION",
    "MAX_SCALE",
    "ScenarioError",
    "Simulation",
    "default_scenario",
    "schema",
    "validate_scenario",
]
