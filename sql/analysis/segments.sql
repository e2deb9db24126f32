-- segments: each segment vs the rest of its dimension, per day (grain: metric_date x metric x dimension x segment).
-- Named statements run by hitcraft_assets/analysis/segments.py, which does the statistics in Python. Parameters:
-- $day (local reporting day), $dim_names / $dim_paths (configured dimensions and the JSON paths of their
-- properties), $not_set (the segment of a missing value), and for raw events $start_ts, $end_ts (the local
-- day as a UTC interval) and $scan_from, $scan_to (the UTC export days that can hold its events, widened by
-- the load's time tolerance).

-- name: create_table
create table if not exists analytics.segment_comparisons (
    metric_date    date not null,     -- local reporting day
    metric         varchar not null,  -- funnel:<funnel>:step<k>, session_duration_s, week1_retention, events_per_user
    dimension      varchar not null,  -- configured dimension name
    segment        varchar not null,  -- the dimension's value ('(none)' when missing)
    segment_n      bigint not null,   -- users (sessions for session_duration_s) in the segment
    rest_n         bigint not null,   -- the same, for everyone else
    segment_value  double not null,   -- rate (proportion metrics) or mean (sample metrics) of the segment
    rest_value     double not null,
    effect         double not null,   -- segment_value - rest_value
    effect_size    double,            -- Cohen's h (proportions) or rank-biserial r (Mann-Whitney)
    test           varchar not null,  -- two_proportion_z | chi_square | fisher | mann_whitney
    statistic      double,            -- z, chi-square (Yates), odds ratio (Fisher; null if infinite) or U
    p_value        double not null,
    q_value        double not null,   -- Benjamini-Hochberg over all comparisons of the day
    significant    boolean not null   -- q_value < 0.05
);

-- name: delete_day
delete from analytics.segment_comparisons where metric_date = $day::date;

-- name: insert_row
insert into analytics.segment_comparisons values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: table_columns
-- Which inputs exist yet, and their shape (other assets own them).
select table_schema || '.' || table_name, column_name, data_type
from information_schema.columns
where (table_schema, table_name) in (('analytics', 'funnel_steps'), ('core', 'sessions'));

-- name: funnel_counts
-- Per funnel, step k >= 2 and segment: users at steps k-1 and k within one day of entry, in the segment and in
-- total (the 'all' rows), of the users who entered the day before $day: their first-day conversion is final
-- by the end of $day, and every segment has had the same time to convert (a cohort still converting would
-- differ only by how far each segment has got). Rows without users_1d (written before it existed) are left
-- out. A missing row counts 0 users.
with day_rows as (
    select funnel, dimension, segment, step, users_1d as users
    from analytics.funnel_steps
    where cohort_date = $day::date - 1 and users_1d is not null
),
steps as (select distinct funnel, step from day_rows where step >= 2),
segs as (select distinct funnel, dimension, segment from day_rows where dimension <> 'all')
select g.funnel, st.step, g.dimension, g.segment,
       coalesce(sp.users, 0) as segment_prev, coalesce(sk.users, 0) as segment_users,
       coalesce(ap.users, 0) as all_prev, coalesce(ak.users, 0) as all_users
from segs g
join steps st on st.funnel = g.funnel
left join day_rows sp on sp.funnel = g.funnel and sp.dimension = g.dimension and sp.segment = g.segment
                     and sp.step = st.step - 1
left join day_rows sk on sk.funnel = g.funnel and sk.dimension = g.dimension and sk.segment = g.segment
                     and sk.step = st.step
left join day_rows ap on ap.funnel = g.funnel and ap.dimension = 'all' and ap.segment = 'all'
                     and ap.step = st.step - 1
left join day_rows ak on ak.funnel = g.funnel and ak.dimension = 'all' and ak.segment = 'all'
                     and ak.step = st.step
order by 1, 2, 3, 4;

-- name: session_durations
-- One row per user of the day, dimension and segment: the mean length of the user's sessions of the day in
-- that segment (from the sessions' segments map). Users, not sessions, are the units compared: a user's
-- sessions are not independent samples, and one heavy user would otherwise count many times.
select d.dimension, s.user_key as unit, coalesce(nullif(s.segments[d.dimension], ''), $not_set) as segment,
       avg(s.duration_s::double) as value
from core.sessions s
cross join (select unnest($dim_names::varchar[]) as dimension) d
where s.session_date = $day::date and s.duration_s is not null
group by all
order by unit, dimension, segment;

-- name: session_segment_durations
-- As session_durations, from core.sessions.segment_lists (where it exists): a session whose first event has a
-- list value is in each element's segment; one row per user, dimension and segment (the mean length of the
-- user's sessions in it); unit (the user) puts each user once on the side of the rest.
with per_session as (
    select d.dimension, s.user_key, unnest(coalesce(s.segment_lists[d.dimension], [$not_set])) as segment,
           s.duration_s::double as duration
    from core.sessions s
    cross join (select unnest($dim_names::varchar[]) as dimension) d
    where s.session_date = $day::date and s.duration_s is not null
)
select dimension, user_key as unit, segment, avg(duration) as value
from per_session
group by all
order by unit, dimension, segment;

-- name: events_per_user
-- One row per active user of the day, dimension and segment: events that day, and the segments of the
-- first value of the property the user sent that day (the first event where it is set; as a session takes
-- its first event's value): one segment for a scalar, so each user is in exactly one segment per dimension;
-- each distinct element for a list value (unit: the user, on the rest's side once). Read from the events
-- rather than core.user_days, whose segments hold every value a user touched and whose user_key is the
-- identity as of its build.
with day_events as (
    select user_key, time, properties
    from core.identified_events
    where event_date between $scan_from::date and $scan_to::date
      and time >= $start_ts and time < $end_ts
),
per_user as (
    select user_key, count(*) as events from day_events group by user_key
),
dim_values as (
    select user_key, time,
           unnest($dim_names::varchar[]) as dimension,
           unnest(hc_segment_lists(properties, $dim_paths::varchar[][])) as segments
    from day_events
),
first_values as (
    select user_key, dimension, arg_min(nullif(segments, [$not_set]), time) as segments  -- arg_min skips nulls
    from dim_values
    group by user_key, dimension
)
select f.dimension, f.user_key as unit, unnest(coalesce(f.segments, [$not_set])) as segment,
       p.events::double as value
from first_values f
join per_user p on p.user_key = f.user_key;
