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

-- name: summary_schema
-- What retention keeps of each UTC day (issue 15: not every event every morning): per day and raw ids, the
-- first and last birth event and return event (the config's; any event when unset). Keyed by raw ids, not
-- user_key, so an identity merge never makes it stale: the user_key is applied when retention is computed.
create table if not exists core.retention_id_days (
    event_date   date not null,
    distinct_id  varchar not null,
    device_id    varchar,
    birth_first  timestamptz,          -- the day's first and last birth events of these ids
    birth_last   timestamptz,
    return_first timestamptz,          -- the day's first and last return events
    return_last  timestamptz
);
create table if not exists core.retention_days (
    event_date   date not null,        -- a day summarized in core.retention_id_days
    loaded_at    timestamptz,          -- raw.load_log's loaded_at and fingerprint when it was read (null: no log row)
    fingerprint  varchar,
    birth_event  varchar,              -- the config's events it was summarized for ('' for any event)
    return_event varchar
);

-- name: summary_changed
-- Days to summarize again: loaded, reloaded, held or released since, without a log row, summarized for other
-- birth or return events, or gone.
create or replace temp table hc_retention_changed as
with current_days as (select * from hc_loaded_days())   -- identity_map.sql, loaded_days_macro
select c.event_date from current_days c
where c.loaded_at is null
   or not exists (select 1 from core.retention_days r
                  where r.event_date = c.event_date and r.loaded_at = c.loaded_at
                    and r.fingerprint is not distinct from c.fingerprint
                    and r.birth_event = coalesce($birth_event, '') and r.return_event = coalesce($return_event, ''))
union
select event_date from core.retention_days where event_date not in (select event_date from current_days)
union
select distinct event_date from core.retention_id_days where event_date not in (select event_date from current_days);

-- name: summary_update
delete from core.retention_id_days where event_date in (select event_date from hc_retention_changed);
insert into core.retention_id_days
select event_date, distinct_id, device_id,
       min(time) filter (where $birth_event is null or event = $birth_event),
       max(time) filter (where $birth_event is null or event = $birth_event),
       min(time) filter (where $return_event is null or event = $return_event),
       max(time) filter (where $return_event is null or event = $return_event)
from raw.events
where event_date in (select event_date from hc_retention_changed)
  and event_date not in (select event_date from raw.load_log where gate = 'held')
  and ($birth_event is null or $return_event is null or event in ($birth_event, $return_event))
group by event_date, distinct_id, device_id;
delete from core.retention_days where event_date in (select event_date from hc_retention_changed);
insert into core.retention_days
select c.event_date, l.loaded_at, l.fingerprint, coalesce($birth_event, ''), coalesce($return_event, '')
from hc_retention_changed c
left join raw.load_log l on l.event_date = c.event_date
where c.event_date in (select event_date from raw.events)
  and c.event_date not in (select event_date from raw.load_log where gate = 'held');

-- name: births_returns
-- Each user's birth and the rolling weeks >= 1 in which they came back, from the kept summary. A day's events
-- of one set of ids span less than a week (a UTC day, within the loader's time tolerance), so the weeks
-- they fall in are those of their first and last event: the two ends give every week the day's events
-- touch. The user_key is core.identified_events' rule (kept in step with it; the test against the events
-- below checks both). Days with an event at or after the cutoff (the last day's late hours) are read from
-- their events instead, up to the cutoff.
create or replace temp table hc_retention_rows as
with late_days as (
    select distinct event_date from core.retention_id_days
    where greatest(birth_last, return_last) >= $cutoff
),
id_days as (
    select distinct_id, device_id, birth_first, return_first, return_last
    from core.retention_id_days
    where event_date not in (select event_date from late_days)
    union all
    select distinct_id, device_id,
           min(time) filter (where $birth_event is null or event = $birth_event),
           min(time) filter (where $return_event is null or event = $return_event),
           max(time) filter (where $return_event is null or event = $return_event)
    from raw.events
    where event_date in (select event_date from late_days) and time < $cutoff
    group by event_date, distinct_id, device_id
)
select case when (select max(mode) from core.identity_state) = 'original'
                 then coalesce(c.user_key, r.distinct_id)
            when m.user_id is not null
                 and (r.distinct_id = r.device_id or r.distinct_id = '$device:' || r.device_id)
                 then m.user_id
            else r.distinct_id end as user_key,
       r.birth_first, r.return_first, r.return_last
from id_days r
left join core.identity_clusters c on c.distinct_id = r.distinct_id
left join core.identity_map m on m.device_id = r.device_id;
create or replace temp table hc_retention_births as
select user_key, min(birth_first) as birth from hc_retention_rows where birth_first is not null group by user_key;
create or replace temp table hc_retention_returns as
select distinct user_key, (epoch_ms(seen) - epoch_ms(birth)) // 604800000 as bucket
from (select b.user_key, b.birth, unnest([r.return_first, r.return_last]) as seen
      from hc_retention_births b
      join hc_retention_rows r on r.user_key = b.user_key)
where seen is not null and epoch_ms(seen) - epoch_ms(birth) >= 604800000;

-- name: births_returns_from_events
-- The same two tables from every event (core.identified_events): the definition the kept summary must
-- equal (the tests compare them).
create or replace temp table hc_retention_births as
select user_key, min(time) as birth
from core.identified_events
where time < $cutoff and ($birth_event is null or event = $birth_event)
group by user_key;
create or replace temp table hc_retention_returns as
select distinct b.user_key, (epoch_ms(e.time) - epoch_ms(b.birth)) // 604800000 as bucket
from hc_retention_births b
join core.identified_events e on e.user_key = b.user_key
where e.time < $cutoff
  and ($return_event is null or e.event = $return_event)
  and epoch_ms(e.time) - epoch_ms(b.birth) >= 604800000;

-- name: insert
-- The matrix from each user's birth (hc_retention_births) and return weeks (hc_retention_returns).
insert into analytics.retention
with births as (select user_key, birth from hc_retention_births),
returns as (select user_key, bucket from hc_retention_returns),
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

-- name: births_schema
-- Each user's birth as retention last computed it (hc_retention_births), kept for the segments' week-1 and
-- rolling-day cohorts (week1_by_segment), so they need not look through every user's history for an earlier
-- birth. births_state says what the births were computed from; births_current tells whether that is still
-- what the warehouse holds.
create table if not exists core.retention_births (
    user_key  varchar not null,
    birth     timestamptz not null
);
create table if not exists core.retention_births_state (
    cutoff       timestamptz not null,   -- births are those before this instant
    birth_event  varchar not null,       -- the config's birth event ('' for any event)
    identity_at  timestamptz,            -- core.identity_state.updated_at: the identity the user_keys are of
    days_digest  varchar not null        -- hc_loaded_days_digest() when the births were kept
);
-- md5 of the loaded days and their load log rows (hc_loaded_days, identity_map.sql): what the births were
-- computed from, compared by births_current
create or replace temp macro hc_loaded_days_digest() as (
    select md5(coalesce(string_agg(event_date || '|' || loaded_at || '|' || coalesce(fingerprint, ''), ','
                                   order by event_date), ''))
    from hc_loaded_days());

-- name: births_keep
delete from core.retention_births;
insert into core.retention_births select user_key, birth from hc_retention_births;
delete from core.retention_births_state;
insert into core.retention_births_state
select $cutoff, coalesce($birth_event, ''), (select max(updated_at) from core.identity_state),
       hc_loaded_days_digest();

-- name: births_current
-- 1 when core.retention_births holds the births of what is stored now: the same loaded days with the same
-- load log rows (a day without a log row could have changed unseen: never current), the same identity and
-- birth event, and a cutoff at or after $births_until (births before it are final).
select count(*) from core.retention_births_state s
where s.birth_event = coalesce($birth_event, '')
  and s.cutoff >= $births_until
  and s.identity_at is not distinct from (select max(updated_at) from core.identity_state)
  and not exists (select 1 from hc_loaded_days() where loaded_at is null)
  and s.days_digest = hc_loaded_days_digest();

-- name: cohort_from_births
-- The cohort of week1_by_segment from the births retention kept (when births_current says they hold what is
-- stored now): users whose birth falls in [$births_from, $births_to), before $end_ts. No earlier event is read.
create or replace temp table hc_cohort as
select user_key, birth from core.retention_births
where birth >= $births_from and birth < $births_to and birth < $end_ts;

-- name: cohort_from_events
-- The same cohort from the events: users with a birth event in [$births_from, $births_to) and none before it
-- (a read of the cohort users' earlier events, as far back as the warehouse goes).
create or replace temp table hc_cohort as
with in_window as (
    select user_key, min(time) as birth
    from core.identified_events
    where time >= $births_from and time < $births_to and time < $end_ts
      and ($birth_event is null or event = $birth_event)
    group by user_key
)
select w.user_key, w.birth
from in_window w
where not exists (select 1 from core.identified_events e
                  where e.user_key = w.user_key and e.time < $births_from
                    and ($birth_event is null or e.event = $birth_event));

-- name: week1_by_segment
-- Week-1 retention per dimension segment, for users born on local days $first_birth_day..$last_birth_day
-- (their week 1 ends before $end_ts): returned in [birth + $return_from_ms, birth + $return_to_ms) (week 1:
-- 7 to 14 days; return_rates.py asks the same of rolling days 1-7). The segment is the dimension's value on the birth event (the first
-- one, if several share the birth instant); '(none)' ($not_set) when the property is missing or empty; a
-- list value puts the user in each distinct element's segment (hc_segments of sessions.sql), so such
-- segments sum to more than the cohort: cohort_users and cohort_retained are the cohort's own totals
-- (each user once). Parameters also: $dim_names and $dim_paths (JSON pointer pairs of the dimension
-- properties, in the same order).
-- The cohort (hc_cohort) comes from cohort_from_births, or cohort_from_events when the kept births are not
-- current; every other read is bounded in time (birth values at the birth instants, returns within the
-- return windows), so with the kept births the cost follows the cohort's days, not the warehouse's age.
with cohort as (select user_key, birth from hc_cohort),
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
