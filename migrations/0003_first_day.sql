-- ampsim schema, version 3: the warm start.
--
-- A simulation's days are numbered from the start of its warm start (days simulated before the
-- start date and never emitted: engine version 2's `traffic.warm_start_days`). `first_day` is
-- the start date's day number; `days_generated` counts every committed day, warm start
-- included, so the emitted days are `days_generated - first_day` (never below 0).
ALTER TABLE simulations ADD COLUMN first_day INTEGER NOT NULL DEFAULT 0;
