"""Dask: the README's recipe (one partition per shard with dask.dataframe.from_map) reads the
whole simulation, and a Simulation pickles as its definition (what Dask, Ray and Spark do to
ship it to workers)."""

from __future__ import annotations

import pickle

import pyarrow as pa

import ampsim
from conftest import batches_to_table, digest

START = "2025-01-06"


def test_a_simulation_pickles_as_its_definition():
    sim = ampsim.Simulation(start=START, seed=9, scale=0.003, scenario='name = "pickled"\n')
    back = pickle.loads(pickle.dumps(sim))
    assert (back.start, back.seed, back.scale, back.scenario) == (
        sim.start, sim.seed, sim.scale, sim.scenario)
    assert back.definition_tag == sim.definition_tag
    assert digest(batches_to_table(back.events(3))) == digest(batches_to_table(sim.events(3)))


def test_the_dask_recipe_reads_every_shard():
    import dask.dataframe as dd

    # The README's recipe.
    sim = ampsim.Simulation(start=START, seed=1, scale=0.005)
    shards = 4
    ddf = dd.from_map(
        lambda k: sim.events(6, shard=(k, shards), threads=1).read_pandas(),
        range(shards),
    )
    assert ddf.npartitions == shards
    got = pa.Table.from_pandas(ddf.compute(), preserve_index=False)
    assert digest(got) == digest(batches_to_table(sim.events(6)))
