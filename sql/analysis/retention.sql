-- retention: Mixpanel's first-time retention in rolling weeks by birth-week cohort (grain: cohort week x week x measure).
-- Named statements run by hitcraft_assets/analysis/retention.py. Parameters: $birth_event and $return_event
-- (null: any event), $tz (reporting timezone), $cutoff (timestamptz: events at or after it are not seen yet),
-- $weeks (last bucket reported). Users are core.identified_events.user_key (identity merge applied).
-- Week N of a user is [birth + 7N days, birth + 7(N+1) days) in elapsed time (168-hour steps, as Mixpanel's
-- rolling mode counts "Week 1 = 7-14 days"); week 0 holds the birth and counts everyone.

-- name: create_table
create or replace table analytics.retention (
    cohort_week     date not null,     -- Monday of the birth week, in the reporting timezone
    weeks_since     integer not null,  -- rolling week N after birth, 0..weeks
    measure         varchar not null,  -- 'on_or_after' (Mixpanel's default) or 'on'
    cohort_size     bigint not null,   -- users born that week
    retained_users  bigint not null,   -- users who returned in week N ('on') or in N or later ('on_or_after')
    retention_rate  double not null,   -- retained_users / cohort_size
    complete        boolean not null   -- the week-N period of every possible cohort member is over at the cutoff
);

-- name: data_horizon
-- Raw partitions are whole UTC days: the data is complete up to the end of the last loaded UTC day.
select max(event_date) from raw.events;

-- name: insert
insert into analytics.retention
with births as (
    select user_key, min(time) as birth
    from core.identified_events
    where time < $cutoff and ($birth_event is null or event = $birth_event)
    group by user_key
),
returns as (  -- each rolling week >= 1 in which a user came back
    select distinct b.user_key, (epoch_ms(e.time) - epoch_ms(b.birth)) // 604800000 as bucket
    from births b
    join core.identified_events e on e.user_key = b.user_key
    where e.time < $cutoff
      and ($return_event is null or e.event = $return_event)
      and epoch_ms(e.time) - epoch_ms(b.birth) >= 604800000
),
per_user as (
    select b.user_key,
           date_trunc('week', timezone($tz, b.birth))::date as cohort_week,
           b.birth,
           coalesce(max(r.bucket), 0) as last_bucket,  -- 0: never came back
           coalesce(list(r.bucket) filter (where r.bucket is not null), []) as buckets
    from births b
    left join returns r on r.user_key = b.user_key
    group by b.user_key, b.birth
),
cohorts as (
    select cohort_week, count(*) as cohort_size, min(birth) as first_birth, max(birth) as last_birth
    from per_user
    group by cohort_week
),
counts as (
    select p.cohort_week, w.weeks_since,
           count_if(w.weeks_since = 0 or p.last_bucket >= w.weeks_since) as on_or_after,
           count_if(w.weeks_since = 0 or list_contains(p.buckets, w.weeks_since)) as on_
    from per_user p
    cross join generate_series(0, $weeks) w(weeks_since)
    group by p.cohort_week, w.weeks_since
),
grid as (
    select c.cohort_week, c.cohort_size, k.weeks_since, k.on_or_after, k.on_,
           -- membership is final once the cohort week is over, and week N is over for every member once
           -- the last-born member's week N has ended
           timezone($tz, (c.cohort_week + 7)::timestamp) <= $cutoff
               and epoch_ms(c.last_birth) + (k.weeks_since + 1) * 604800000 <= epoch_ms($cutoff) as complete
    from cohorts c
    join counts k on k.cohort_week = c.cohort_week
    -- a bucket is reported once it has begun for the cohort's first-born member
    where epoch_ms(c.first_birth) + k.weeks_since * 604800000 < epoch_ms($cutoff)
)
select g.cohort_week, g.weeks_since, m.measure, g.cohort_size,
       case m.measure when 'on' then g.on_ else g.on_or_after end as retained_users,
       (case m.measure when 'on' then g.on_ else g.on_or_after end) / g.cohort_size as retention_rate,
       g.complete
from grid g
cross join (values ('on_or_after'), ('on')) m(measure)
order by g.cohort_week, m.measure, g.weeks_since;

-- name: week1_by_segment
-- Week-1 retention per dimension segment, for users born on local days $first_birth_day..$last_birth_day
-- (their week 1 ends before $end_ts): returned in [birth + $return_from_ms, birth + $return_to_ms) (week 1:
-- 7 to 14 days; return_rates.py asks the same of rolling days 1-7). The segment is the dimension's value on the birth event (the first
-- one, if several share the birth instant); '(none)' ($not_set) when the property is missing or empty; a
-- list value puts the user in each distinct element's segment (hc_segments of sessions.sql), so such
-- segments sum to more than the cohort: cohort_users and cohort_retained are the cohort's own totals
-- (each user once). Parameters also: $dim_names and $dim_paths (JSON pointer pairs of the dimension
-- properties, in the same order).
-- The cohort is found without a pass over every user's history: a user born on those days has a birth event
-- in [$births_from, $births_to) (their start and end instants) and none before it; every other read is
-- bounded in time too (birth values at the birth instants, returns within the return windows), so the cost
-- follows the cohort's days, not the warehouse's age.
with in_window as (
    select user_key, min(time) as birth
    from core.identified_events
    where time >= $births_from and time < $births_to and time < $end_ts
      and ($birth_event is null or event = $birth_event)
    group by user_key
),
cohort as (
    select w.user_key, w.birth
    from in_window w
    where not exists (select 1 from core.identified_events e
                      where e.user_key = w.user_key and e.time < $births_from
                        and ($birth_event is null or e.event = $birth_event))
),
birth_values as (
    select c.user_key, arg_min(hc_segment_lists(e.properties, $dim_paths::varchar[][]), e.event) as dim_values
    from cohort c
    join core.identified_events e on e.user_key = c.user_key and e.time = c.birth
    where ($birth_event is null or e.event = $birth_event)
      and e.time >= $births_from and e.time < $births_to
    group by c.user_key
),
retained as (
    select distinct c.user_key
    from cohort c
    join core.identified_events e on e.user_key = c.user_key
    where e.time < $end_ts
      and e.time >= $births_from + to_milliseconds($return_from_ms)
      and e.time < $births_to + to_milliseconds($return_to_ms)
      and ($return_event is null or e.event = $return_event)
      and epoch_ms(e.time) - epoch_ms(c.birth) >= $return_from_ms
      and epoch_ms(e.time) - epoch_ms(c.birth) < $return_to_ms
),
user_segments as (
    select user_key, dimension, unnest(segments) as segment
    from (select user_key, unnest($dim_names::varchar[]) as dimension, unnest(dim_values) as segments
          from birth_values)
)
select u.dimension, u.segment,
       count(*) as users, count(r.user_key) as retained,
       (select count(*) from birth_values) as cohort_users,
       (select count(*) from birth_values b semi join retained r on r.user_key = b.user_key) as cohort_retained
from user_segments u
left join retained r on r.user_key = u.user_key
group by u.dimension, u.segment
order by 1, 2;
