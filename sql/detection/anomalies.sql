-- anomalies: the points of every scanned series judged anomalous "as of" their day (grain: one flagged
-- series on one day). Parameters: $day.

-- name: schema
create table if not exists analytics.anomalies (
    metric_date  date not null,
    metric       varchar not null,
    dimension    varchar not null,
    segment      varchar not null,
    observed     double,
    expected     double,
    lower        double,
    upper        double,
    score        double,         -- signed robust z against the weekly baseline
    direction    varchar,        -- up | down
    p_value      double,
    q_value      double,         -- Benjamini-Hochberg across every series tested that day
    root_cause   json,           -- for totals: the segments that explain the change, best first
    status       varchar,        -- new: a new alert; continuing: still beyond the band, same episode
    episode_start date,          -- the day the episode was first alerted
    window_days  integer         -- days observed pools: 1, or 3 / 7 for a conversion on few entrants a day
);
alter table analytics.anomalies add column if not exists status varchar;
alter table analytics.anomalies add column if not exists episode_start date;
alter table analytics.anomalies add column if not exists window_days integer;
create table if not exists analytics.detection_log (
    as_of_date     date not null,
    kind           varchar not null,   -- anomalies | trends
    series_tested  bigint not null,
    series_flagged bigint not null,
    built_at       timestamptz not null
);
-- of series_tested, the totals (dimension 'all'); the rest are segments (false alerts per series, evaluate)
alter table analytics.detection_log add column if not exists totals_tested bigint;
-- a digest of what the day's judgement read (trends: scan.trend_inputs_digest), so that a day whose inputs did
-- not change is left as it is; null: always recomputed
alter table analytics.detection_log add column if not exists input_digest varchar;

-- name: delete_day
delete from analytics.anomalies where metric_date = $day::date;

-- name: delete_log
delete from analytics.detection_log where as_of_date = $day::date and kind = $kind;

-- name: insert_log
insert into analytics.detection_log (as_of_date, kind, series_tested, series_flagged, built_at, totals_tested,
                                     input_digest)
values ($day::date, $kind, $tested, $flagged, now(), $totals, $digest);

-- name: walks_schema
-- Where each series' anomaly walk from a scan start stopped (detection/walks.py): the next run over the same
-- start resumes there when the series' first days are the same (digest), instead of walking 120-147 days
-- again. A cache: deleting rows only makes the next run walk from the start.
create table if not exists analytics.anomaly_walks (
    walk_start  date not null,      -- the scan's first day (detection.assets.anchor)
    metric      varchar not null,
    dimension   varchar not null,
    segment     varchar not null,
    next_date   date not null,      -- the first day not judged yet
    digest      varchar not null,   -- scan.walk_digest of the days before next_date
    state       blob not null       -- the pickled anomalies.WalkState (read only when the digest matches)
);

-- name: stored_walks
select metric, dimension, segment, next_date, digest, state
from analytics.anomaly_walks
where walk_start = $start::date;

-- name: replace_walks
-- The new states of a scan start, unless a state further on is stored for the series (an older range run
-- again); the starts that no run reads any more (two scan grids back) are dropped.
delete from analytics.anomaly_walks w
using hc_walks n
where w.walk_start = n.walk_start and w.metric = n.metric and w.dimension = n.dimension
  and w.segment = n.segment and w.next_date <= n.next_date;

-- name: insert_walks
insert into analytics.anomaly_walks
select n.* from hc_walks n
anti join analytics.anomaly_walks w
  on w.walk_start = n.walk_start and w.metric = n.metric and w.dimension = n.dimension and w.segment = n.segment;

-- name: drop_old_walks
delete from analytics.anomaly_walks where walk_start < $start::date - 56;
