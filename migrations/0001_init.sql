-- ampsim schema, version 1.
--
-- Layout (see ARCHITECTURE.md): events are not stored one row per event. Each committed day
-- writes, per block of 1024 consecutive device numbers, one zstd-compressed blob of compact
-- per-user day records (event_chunks), and, per next-due day, one blob of the user states it
-- changed (user_states). Every user's latest state lives in exactly one user_states row: the
-- rows due on day d are read to generate day d and deleted when day d commits.

-- One row per simulation: its definition and running totals.
CREATE TABLE simulations (
    sim              INTEGER PRIMARY KEY,      -- internal key used by the other tables
    simulation_id    TEXT    NOT NULL UNIQUE,  -- the public id
    seed             INTEGER NOT NULL,         -- u64 stored as its i64 bit pattern
    start_date       TEXT    NOT NULL,         -- YYYY-MM-DD of day 0
    population_scale REAL    NOT NULL,
    scenario_toml    TEXT    NOT NULL,         -- as given by the client ('' = default)
    scenario_name    TEXT    NOT NULL,
    engine_version   INTEGER NOT NULL,
    days_generated   INTEGER NOT NULL DEFAULT 0, -- the "last committed day" marker (+1)
    sessions         INTEGER NOT NULL DEFAULT 0,
    events           INTEGER NOT NULL DEFAULT 0,
    users            INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL
) STRICT;

-- One row per committed day, with its counts.
CREATE TABLE days (
    sim             INTEGER NOT NULL,
    day             INTEGER NOT NULL,
    sessions        INTEGER NOT NULL,
    events          INTEGER NOT NULL,
    new_users       INTEGER NOT NULL,
    returning_users INTEGER NOT NULL,
    PRIMARY KEY (sim, day)
) STRICT, WITHOUT ROWID;

-- A day's records for the devices whose number >> 10 is `chunk`.
CREATE TABLE event_chunks (
    sim     INTEGER NOT NULL,
    day     INTEGER NOT NULL,
    chunk   INTEGER NOT NULL,
    records INTEGER NOT NULL,
    events  INTEGER NOT NULL,
    devices BLOB    NOT NULL,  -- 1024-bit bitmap of the devices present (device & 1023)
    data    BLOB    NOT NULL,
    PRIMARY KEY (sim, day, chunk)
) STRICT;

-- Journeys look a device's chunk up across days.
CREATE INDEX event_chunks_by_chunk ON event_chunks (sim, chunk, day);

-- User states grouped by the next day they are due (-1: nothing scheduled).
CREATE TABLE user_states (
    sim         INTEGER NOT NULL,
    due_day     INTEGER NOT NULL,
    written_day INTEGER NOT NULL,
    users       INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    PRIMARY KEY (sim, due_day, written_day)
) STRICT;
