-- The series of ampsim's report (GetReport's `series`, the charts of `ampsim report --html`),
-- computed in DuckDB from the Parquet export alone (`ampsim export --format parquet`). The
-- caller defines the view `events` over the export's files; examples/duckdb/series.py does:
--   CREATE VIEW events AS SELECT * FROM read_parquet('export/*.parquet')
-- Every query below gives figures that must equal the report's, exactly, for a simulation
-- without second devices (python/tests/test_duckdb.py checks them). Users here are devices, as
-- Amplitude counts them before a merge: a person's second device ([second_devices]) is a
-- user of its own, while the report counts people (the labels' second_device_id resolves it).
SET TimeZone = 'UTC';

-- The exported days.
CREATE OR REPLACE TEMP VIEW span AS
SELECT min(time)::DATE AS first_day,
       max(time)::DATE AS last_day,
       datediff('day', min(time)::DATE, max(time)::DATE) + 1 AS days
FROM events;

-- Sessions: a device's session_id (the session's start, in ms) names it, the start's date is
-- its day and the utm_medium of its events its channel. Events outside a session (server-side
-- ones, such as trial_expired) have session_id -1.
CREATE OR REPLACE TEMP VIEW sessions AS
SELECT device_id,
       session_id,
       make_timestamp(session_id * 1000)::DATE AS day,
       any_value(json_extract_string(event_properties, '$.utm_medium')) AS channel
FROM events
WHERE session_id >= 0
GROUP BY device_id, session_id;

-- New users: devices whose first event (event_id 1) is in the export, by the day of it.
CREATE OR REPLACE TEMP VIEW new_users AS
SELECT device_id, min(time)::DATE AS first_seen
FROM events
GROUP BY device_id
HAVING min(event_id) = 1;

-- name: daily_sessions
-- Sessions that start on each exported day, by channel.
SELECT channel, datediff('day', first_day, day) AS day, count(*) AS sessions
FROM sessions, span
WHERE day BETWEEN first_day AND last_day
GROUP BY ALL
ORDER BY channel, day;

-- name: funnel
-- New users who were identified (an event carries their user_id), started a trial and paid.
SELECT count(*) AS visited,
       count(*) FILTER (WHERE identified) AS identified,
       count(*) FILTER (WHERE trial) AS trial,
       count(*) FILTER (WHERE paid) AS paid
FROM (
    SELECT n.device_id,
           bool_or(e.user_id IS NOT NULL) AS identified,
           bool_or(e.event_type = 'trial_started') AS trial,
           bool_or(e.event_type = 'purchase') AS paid
    FROM new_users n JOIN events e USING (device_id)
    GROUP BY n.device_id
);

-- name: retention
-- Weekly cohorts of new users (weeks count from the first exported day) and how many of each
-- had a session in week k after (k = 0 is the cohort's own week), up to 12 weeks and while the
-- week is complete.
WITH cohorts AS (
    SELECT device_id, datediff('day', first_day, first_seen) // 7 AS cohort
    FROM new_users, span
),
active AS (
    SELECT DISTINCT c.cohort, datediff('day', first_day, s.day) // 7 - c.cohort AS week
    , s.device_id
    FROM cohorts c JOIN sessions s USING (device_id), span
)
SELECT cohort, -1 AS week, count(*) AS users FROM cohorts GROUP BY cohort
UNION ALL
SELECT cohort, week, count(*) AS users
FROM active, span
WHERE week BETWEEN 0 AND 12 AND (week = 0 OR cohort + week < days // 7)
GROUP BY cohort, week
ORDER BY cohort, week;

-- name: conversion
-- Closed trials (trial_length_days + grace_days after the start lie in the export) and how
-- many converted, by path and by activation level: the milestones reached in the trial's
-- sessions that started before its decision day (day 10, the conversion window's first day;
-- the milestones are the default scenario's [app] milestones).
WITH trials AS (
    SELECT device_id,
           time::DATE AS started,
           replace(json_extract_string(event_properties, '$.trial_path'), '_', '-') AS path,
           json_extract_string(event_properties, '$.trial_length_days')::INT
             + json_extract_string(event_properties, '$.grace_days')::INT AS window_days
    FROM events
    WHERE event_type = 'trial_started'
),
closed AS (
    SELECT t.*,
           EXISTS (SELECT 1 FROM events e
                   WHERE e.device_id = t.device_id AND e.event_type = 'trial_converted')
             AS converted,
           (SELECT count(*) FROM events e
            WHERE e.device_id = t.device_id
              AND e.event_type IN ('workspace_created', 'data_source_connected', 'chart_created',
                                   'dashboard_created', 'teammate_invited')
              AND make_timestamp(e.session_id * 1000)::DATE < t.started + 10) AS milestones
    FROM trials t, span
    WHERE t.started + t.window_days <= last_day
)
SELECT path AS name, count(*) AS trials, count(*) FILTER (WHERE converted) AS converted
FROM closed GROUP BY path
UNION ALL
SELECT CASE WHEN milestones <= 1 THEN '0-1 milestones'
            WHEN milestones <= 3 THEN '2-3 milestones'
            ELSE '4+ milestones' END AS name,
       count(*) AS trials, count(*) FILTER (WHERE converted) AS converted
FROM closed GROUP BY ALL
ORDER BY name;
