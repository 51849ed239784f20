-- ampsim schema, version 2: a simulation's identity that is never reused.
--
-- `sim` is SQLite's rowid, and SQLite hands a deleted row's rowid to the next insert, so a
-- process that remembered `sim` (an engine cache, a running stream or generator) could end up
-- reading or writing another simulation. Every simulation now carries a random 128-bit uid;
-- caches are keyed by it, and every read and commit checks it in the same transaction.
ALTER TABLE simulations ADD COLUMN uid TEXT NOT NULL DEFAULT '';
UPDATE simulations SET uid = lower(hex(randomblob(16))) WHERE uid = '';
CREATE UNIQUE INDEX simulations_by_uid ON simulations (uid);
