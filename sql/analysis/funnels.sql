-- funnels: Mixpanel ordered funnels (uniques) by entry day; grain: funnel x cohort_date x dimension x segment x step.
-- Named statements run by hitcraft_assets/analysis/funnels.py in one transaction: delete_day, then per funnel
-- events, entrants, advance once per step 2..n, insert_steps. Times inside are epoch microseconds (exact
-- integers); $grace_us is the 2-second grace, $window_us the conversion window. The rules: the module docstring.

-- name: schema
create table if not exists analytics.funnel_steps (
    funnel                    varchar not null,
    cohort_date               date not null,     -- the local day of the reporting timezone the users entered on
    dimension                 varchar not null,  -- 'all' for totals
    segment                   varchar not null,  -- 'all' for totals; '(none)': property missing or empty
    step                      integer not null,  -- 1-based
    step_event                varchar not null,
    users                     bigint not null,   -- users of the cohort who reached the step
    conversion_from_prev      double,            -- 1.0 for step 1; null when nobody reached the previous step
    conversion_from_start     double,
    median_seconds_from_prev  double,            -- null for step 1 and when nobody reached the step
    mean_seconds_from_prev    double,
    users_1d                  bigint,            -- of them, users who reached the step within 1 day (86,400 s) of entry
    conversion_1d_from_prev   double,            -- users_1d / users_1d of the previous step: the cohort's first day
    completeness              double             -- elapsed share of the window of the day's last entrant, by the
                                                 -- data the row was computed from (1: every entrant's window closed)
);
alter table analytics.funnel_steps add column if not exists users_1d bigint;
alter table analytics.funnel_steps add column if not exists conversion_1d_from_prev double;
alter table analytics.funnel_steps add column if not exists completeness double;

-- name: delete_day
delete from analytics.funnel_steps where cohort_date = $day::date;

-- name: events
-- The funnel's events (steps and exclusions) of the users who did step 1 on the day, over every instant the
-- day's entrants can reach: [day start - the grace chain, day end + window). event_date bounds prune the UTC
-- export partitions (widened by the load tolerance). seq orders each user's events by time: it is also the
-- event's identity, so that one event never fills two steps. Held properties are read for every event,
-- breakdown properties only for the day's step-1 events (the only ones that can be an entry).
create or replace temp table hc_funnel_events as
with entrants as (
    select distinct user_key
    from core.identified_events
    where event_date between $entry_from::date and $entry_to::date
      and event = $first_step and time >= $start_ts and time < $end_ts
)
select e.user_key,
       e.event,
       epoch_us(e.time) as ts,
       row_number() over (partition by e.user_key order by e.time, e.insert_id nulls last, e.event) as seq,
       case when $has_hold then hc_texts(e.properties, $hold_paths::varchar[][]) end as hold,
       case when e.event = $first_step and e.time >= $start_ts and e.time < $end_ts
            then hc_segment_lists(e.properties, $dim_paths::varchar[][]) end as segs
from core.identified_events e
semi join entrants u on u.user_key = e.user_key
where e.event_date between $read_from::date and $read_to::date
  and e.time >= $read_start and e.time < $read_end
  and list_contains($events::varchar[], e.event);

-- name: entrants
-- Step 1: a user's entry is their first step-1 event of the day (ties at the same instant: lowest $insert_id);
-- its time starts the window, its held properties and breakdown segments stay with the user.
create or replace temp table hc_funnel_reached as
select user_key, 1 as step, ts, ts as entry_ts, [seq] as used, hold, segs, null::double as seconds_from_prev
from hc_funnel_events
where event = $first_step and ts >= epoch_us($start_ts) and ts < epoch_us($end_ts)
qualify row_number() over (partition by user_key order by seq) = 1;

-- name: advance
-- Step $step: a user who reached step $step - 1 (at ts) converts on their earliest $event that is no more than
-- the grace before ts, at most the window after the entry, not already used by an earlier step, and with the
-- entry's held values. They do not convert when an exclusion event lies strictly between the two steps'
-- times with more than the grace to both (an exclusion within 2 s of a step is interchangeable with it).
insert into hc_funnel_reached
with prev as (
    select * from hc_funnel_reached where step = $step - 1
),
earliest as (
    select p.user_key, min(e.seq) as seq
    from prev p
    join hc_funnel_events e on e.user_key = p.user_key
    where e.event = $event
      and e.ts >= p.ts - $grace_us
      and e.ts <= p.entry_ts + $window_us
      and not list_contains(p.used, e.seq)
      and e.hold is not distinct from p.hold
    group by p.user_key
)
select p.user_key, $step, e.ts, p.entry_ts, list_append(p.used, e.seq), p.hold, p.segs,
       greatest(e.ts - p.ts, 0) / 1e6 as seconds_from_prev
from earliest c
join prev p on p.user_key = c.user_key
join hc_funnel_events e on e.user_key = c.user_key and e.seq = c.seq
where not exists (
    select 1
    from hc_funnel_events x
    where x.user_key = p.user_key
      and list_contains($exclusions::varchar[], x.event)
      and x.ts > p.ts + $grace_us
      and x.ts < e.ts - $grace_us
);

-- name: insert_steps
-- One row per (dimension, segment, step) for every segment that has entrants, steps nobody reached included
-- (users 0). The segment is the breakdown property's value on the entry event, '(none)' when missing or empty;
-- a list value puts the user in each distinct element's segment (hc_segments), once.
insert into analytics.funnel_steps
with dims as (
    select ($dim_names::varchar[])[i] as dimension, i
    from range(1, len($dim_names::varchar[]) + 1) t(i)
),
per_user as (
    select 'all' as dimension, 'all' as segment, step, seconds_from_prev, ts - entry_ts <= 86400000000 as in_1d
    from hc_funnel_reached
    union all
    select d.dimension, unnest(r.segs[d.i]), r.step, r.seconds_from_prev,
           r.ts - r.entry_ts <= 86400000000
    from hc_funnel_reached r
    cross join dims d
),
counts as (
    select dimension, segment, step, count(*) as users, count(*) filter (where in_1d) as users_1d,
           median(seconds_from_prev) as median_s, avg(seconds_from_prev) as mean_s
    from per_user
    group by dimension, segment, step
),
grid as (
    select c.dimension, c.segment, k.step::integer as step
    from counts c
    cross join range(1, $n_steps + 1) k(step)
    where c.step = 1
),
filled as (
    select g.dimension, g.segment, g.step, coalesce(c.users, 0) as users, coalesce(c.users_1d, 0) as users_1d,
           c.median_s, c.mean_s
    from grid g
    left join counts c using (dimension, segment, step)
)
select $funnel,
       $day::date,
       dimension,
       segment,
       step,
       ($steps::varchar[])[step],
       users,
       case when step = 1 then 1.0
            else users / nullif(lag(users) over w, 0) end,
       users / first_value(users) over w,
       median_s,
       mean_s,
       users_1d,
       case when step = 1 then 1.0
            else users_1d / nullif(lag(users_1d) over w, 0) end,
       least(1.0, greatest(0.0, epoch($data_until::timestamptz - $end_ts) / ($window_us / 1e6)))
from filled
window w as (partition by dimension, segment order by step)
order by dimension, segment, step;
