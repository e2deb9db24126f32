-- daily_metrics: one local day's users, sessions and events -> core.user_days (grain: user x local day) and
-- analytics.daily_metrics (grain: metric x dimension x segment x local day, long format).
-- Named statements, run by hitcraft_assets/analysis/metrics.py in one transaction per day. Parameters: as
-- sessions.sql ($day, $start_ts, $end_ts, $scan_from, $scan_to, $dim_names, $dim_paths) and $signature
-- (timezone and dimensions the user_days rows were built with). WAU, MAU and new users read core.user_days,
-- never the raw events of other days, so a day costs about the same on day 5 as on day 90.

-- name: schema
create table if not exists core.user_days (
    activity_date  date not null,                -- local day of the reporting timezone (partition key)
    user_key       varchar not null,             -- identity after the ID merge, as of the build
    device_id      varchar,                      -- set when user_key is still an anonymous device id
    events         bigint not null,
    segments       map(varchar, varchar[]) not null  -- dimension name -> every value the user touched that day
);
-- each (user_key, device_id) pair of core.user_days and its first day there: who was seen before a day, for
-- new_users, without reading every earlier user-day (kept by the first_days_* statements whenever a day's
-- user_days rows are replaced)
create table if not exists core.user_first_days (
    user_key    varchar not null,
    device_id   varchar,
    first_date  date not null
);
create table if not exists core.user_days_log (
    activity_date  date not null,                -- a local day whose core.user_days rows are built
    signature      varchar not null,             -- timezone and dimensions they were built with
    users          bigint not null,
    events         bigint not null,
    built_at       timestamptz not null
);
create table if not exists analytics.daily_metrics (
    metric_date  date not null,                  -- local day of the reporting timezone (partition key)
    metric       varchar not null,
    dimension    varchar not null,               -- 'all' for totals, else a configured dimension's name
    segment      varchar not null,               -- 'all' for totals, else its value ('(none)': not set)
    value        double not null
);

-- name: day_events
-- The local day's events, read once: user, event name, and the segments of every dimension (a list per
-- dimension: one segment for a scalar value, each distinct element of a list value; sessions.sql macros).
create or replace temp table hc_day_events as
select user_key,
       event,
       case when user_key = device_id or user_key = '$device:' || device_id then device_id end as anon_device,
       hc_segment_lists(properties, $dim_paths::varchar[][]) as dims,
       -- the segments of the event's key property (config event_properties), null for other events
       case when list_position($kp_events::varchar[], event) > 0
            then hc_segments(hc_value(properties, list_extract($kp_paths::varchar[][],
                              list_position($kp_events::varchar[], event)))) end as key_values,
       list_extract($kp_names::varchar[], list_position($kp_events::varchar[], event)) as key_name
from core.identified_events
where event_date between $scan_from::date and $scan_to::date
  and time >= $start_ts and time < $end_ts;

-- name: drop_day_events
drop table if exists temp.hc_day_events;

-- name: delete_user_days
delete from core.user_days where activity_date = $day::date;

-- name: delete_user_days_log
delete from core.user_days_log where activity_date = $day::date;

-- name: insert_user_days
-- One row per user active on the day, with every segment they touched (a user on iOS and Android that day
-- has platform -> [Android, iOS]).
insert into core.user_days
with per_user as (
    select user_key, count(*) as events, max(anon_device) as device_id
    from hc_day_events
    group by user_key
),
touched as (
    select distinct user_key, dimension, unnest(segments) as segment
    from (select user_key, unnest($dim_names::varchar[]) as dimension, unnest(dims) as segments from hc_day_events)
),
per_user_segments as (
    select user_key, map(list(dimension order by dimension), list(segments order by dimension)) as segments
    from (select user_key, dimension, list(segment order by segment) as segments from touched group by user_key, dimension)
    group by user_key
)
select $day::date, p.user_key, p.device_id, p.events,
       coalesce(s.segments, map([]::varchar[], []::varchar[][]))
from per_user p
left join per_user_segments s using (user_key);

-- name: first_days_gone
-- Pairs whose first day was this day but that are no longer on it (the day was rebuilt): their first day is
-- looked up again in core.user_days (deleted when they are nowhere).
create or replace temp table hc_first_gone as
select f.user_key, f.device_id
from core.user_first_days f
where f.first_date = $day::date
  and not exists (select 1 from core.user_days u
                  where u.activity_date = $day::date and u.user_key = f.user_key
                    and u.device_id is not distinct from f.device_id);

-- name: first_days_forget
delete from core.user_first_days f
where f.first_date = $day::date
  and exists (select 1 from hc_first_gone g where g.user_key = f.user_key and g.device_id is not distinct from f.device_id);

-- name: first_days_refind
insert into core.user_first_days
select u.user_key, u.device_id, min(u.activity_date)
from core.user_days u
where exists (select 1 from hc_first_gone g where g.user_key = u.user_key and g.device_id is not distinct from u.device_id)
group by u.user_key, u.device_id;

-- name: first_days_earlier
-- The day's pairs seen first on a later day: this day is their first now.
update core.user_first_days f
set first_date = $day::date
where f.first_date > $day::date
  and exists (select 1 from core.user_days u
              where u.activity_date = $day::date and u.user_key = f.user_key
                and u.device_id is not distinct from f.device_id);

-- name: first_days_new
insert into core.user_first_days
select distinct u.user_key, u.device_id, $day::date
from core.user_days u
where u.activity_date = $day::date
  and not exists (select 1 from core.user_first_days f
                  where f.user_key = u.user_key and f.device_id is not distinct from u.device_id);

-- name: first_days_drop
drop table if exists temp.hc_first_gone;

-- name: first_days_count
select (select count(*) from core.user_first_days), (select count(*) from core.user_days);

-- name: first_days_rebuild
-- The whole table from core.user_days (a warehouse built before the table existed).
delete from core.user_first_days;
insert into core.user_first_days
select user_key, device_id, min(activity_date) from core.user_days group by user_key, device_id;

-- name: log_user_days
insert into core.user_days_log
select $day::date, $signature, count(*), coalesce(sum(events), 0), now()
from core.user_days
where activity_date = $day::date;

-- name: built_days
-- The days whose user_days rows exist with the current timezone and dimensions.
select activity_date from core.user_days_log where signature = $signature;

-- name: first_event_time
select min(time) from raw.events;

-- name: sessions_check
-- The day's sessions must have been computed from the same events (compute_sessions ran for this day).
select (select count(*) from hc_day_events) as events,
       (select coalesce(sum(event_count), 0) from core.sessions where session_date = $day::date) as session_events;

-- name: delete_metrics
delete from analytics.daily_metrics where metric_date = $day::date;

-- name: insert_metrics
-- Users are re-resolved through the current identity map, so a device that signed up after an anonymous day
-- counts once in WAU/MAU and is not new again, as Mixpanel's retroactive merge has it. A user counts in
-- every segment they touched (segments do not sum to the total); in WAU/MAU, in every segment touched on
-- any day of the window. A session's segment is its first event's value. Every segment touched in the
-- trailing 30 days gets every count (zero when nothing happened); ratios and durations with nothing to
-- divide are left out rather than stored as 0. A list-valued property puts a user, a session and an event
-- in each element's segment (core.sessions.segment_lists, hc_day_events.dims), as Mixpanel does.
insert into analytics.daily_metrics
with window_users as (
    select ud.activity_date, coalesce(m.user_id, ud.user_key) as user_key, ud.segments
    from core.user_days ud
    left join core.identity_map m on m.device_id = ud.device_id
    where ud.activity_date between $day::date - 29 and $day::date
),
user_segments as (
    select activity_date, user_key, 'all' as dimension, 'all' as segment
    from window_users
    union all
    select activity_date, user_key, entry.key, unnest(entry.value)
    from (select activity_date, user_key, unnest(map_entries(segments)) as entry from window_users)
    where list_contains($dim_names::varchar[], entry.key)
),
earlier_users as (  -- every pair of core.user_days seen before the day (core.user_first_days), re-resolved
    select distinct coalesce(m.user_id, f.user_key) as user_key
    from core.user_first_days f
    left join core.identity_map m on m.device_id = f.device_id
    where f.first_date < $day::date
),
new_users as (
    select distinct w.user_key
    from window_users w
    anti join earlier_users e on e.user_key = w.user_key
    where w.activity_date = $day::date
),
user_counts as (
    select dimension, segment,
           count(distinct user_key) filter (where activity_date = $day::date) as dau,
           count(distinct user_key) filter (where activity_date > $day::date - 7) as wau,
           count(distinct user_key) as mau
    from user_segments
    group by dimension, segment
),
new_counts as (
    select dimension, segment, count(distinct user_key) as new_users
    from user_segments
    semi join new_users using (user_key)
    where activity_date = $day::date
    group by dimension, segment
),
day_sessions as (
    select 'all' as dimension, 'all' as segment, duration_s, event_count
    from core.sessions
    where session_date = $day::date
    union all
    select entry.key, unnest(entry.value), duration_s, event_count
    from (select unnest(map_entries(segment_lists)) as entry, duration_s, event_count
          from core.sessions where session_date = $day::date)
    where list_contains($dim_names::varchar[], entry.key)
),
session_stats as (
    select dimension, segment, count(*) as sessions, median(duration_s) as median_s, avg(duration_s) as mean_s,
           avg(event_count) as events_per_session
    from day_sessions
    group by dimension, segment
),
universe as (
    select 'all' as dimension, 'all' as segment
    union
    select dimension, segment from user_counts
    union
    select dimension, segment from session_stats
),
per_segment as (
    select u.dimension, u.segment,
           coalesce(c.dau, 0) as dau, coalesce(c.wau, 0) as wau, coalesce(c.mau, 0) as mau,
           coalesce(n.new_users, 0) as new_users,
           coalesce(s.sessions, 0) as sessions, s.median_s, s.mean_s, s.events_per_session
    from universe u
    left join user_counts c using (dimension, segment)
    left join new_counts n using (dimension, segment)
    left join session_stats s using (dimension, segment)
),
event_rows as (
    select event, user_key, 'all' as dimension, 'all' as segment
    from hc_day_events
    union all
    select event, user_key, dimension, unnest(segments)
    from (select event, user_key, unnest($dim_names::varchar[]) as dimension, unnest(dims) as segments
          from hc_day_events)
),
event_stats as (
    select event, dimension, segment, count(*) as n, count(distinct user_key) as users
    from event_rows
    group by event, dimension, segment
),
per_event as (
    select e.event, u.dimension, u.segment, coalesce(s.n, 0) as n, coalesce(s.users, 0) as users
    from (select distinct event from hc_day_events) e
    cross join universe u
    left join event_stats s using (event, dimension, segment)
),
value_stats as (
    -- an event's users and count by its key property's value (dimension = the property's name)
    select event, key_name as dimension, segment, count(*) as n, count(distinct user_key) as users
    from (select event, key_name, user_key, unnest(key_values) as segment from hc_day_events
          where key_values is not null)
    group by all
),
per_value as (
    -- a value seen in the 28 days before keeps its series on a day without it: 0, not a gap
    select event, dimension, segment, coalesce(s.n, 0) as n, coalesce(s.users, 0) as users
    from (select event, dimension, segment from value_stats
          union
          select substr(metric, length('event_users:') + 1), dimension, segment
          from analytics.daily_metrics
          where metric_date between $day::date - 28 and $day::date - 1
            and metric like 'event_users:%'
            and list_position($kp_names::varchar[], dimension) > 0
            and list_extract($kp_events::varchar[], list_position($kp_names::varchar[], dimension))
                = substr(metric, length('event_users:') + 1)) k
    left join value_stats s using (event, dimension, segment)
),
metrics as (
    select dimension, segment, 'dau' as metric, dau::double as value from per_segment
    union all select dimension, segment, 'wau', wau from per_segment
    union all select dimension, segment, 'mau', mau from per_segment
    union all select dimension, segment, 'stickiness', dau / mau from per_segment where mau > 0
    union all select dimension, segment, 'new_users', new_users from per_segment
    union all select dimension, segment, 'sessions', sessions from per_segment
    union all select dimension, segment, 'session_duration_median_s', median_s from per_segment where sessions > 0
    union all select dimension, segment, 'session_duration_mean_s', mean_s from per_segment where sessions > 0
    union all select dimension, segment, 'events_per_session', events_per_session from per_segment where sessions > 0
    union all select dimension, segment, 'event_count:' || event, n from per_event
    union all select dimension, segment, 'event_users:' || event, users from per_event
    union all select dimension, segment, 'event_count:' || event, n from per_value
    union all select dimension, segment, 'event_users:' || event, users from per_value
)
select $day::date, metric, dimension, segment, value
from metrics;

-- name: day_summary
select count(*) as rows,
       max(value) filter (where metric = 'dau' and dimension = 'all') as dau,
       max(value) filter (where metric = 'wau' and dimension = 'all') as wau,
       max(value) filter (where metric = 'mau' and dimension = 'all') as mau,
       max(value) filter (where metric = 'new_users' and dimension = 'all') as new_users,
       max(value) filter (where metric = 'sessions' and dimension = 'all') as sessions
from analytics.daily_metrics
where metric_date = $day::date;
