-- The daily series that detection scans (grain: one value per series and day), read "as of" a day.
-- Parameters: $from_day, $to_day (local days); $per_session: the per-session metrics (scan.SKEWED).

-- name: metric_series
-- Days whose export file was missing are a data outage, not product behaviour: they are left out (the
-- raw_events volume check reports them). The volume of a per-session value (a median session length,
-- events per session) is the segment's sessions that day, the observations behind it; of a count, the count.
select m.metric, m.dimension, m.segment, m.metric_date, m.value,
       case when list_contains($per_session::varchar[], m.metric) then s.value else m.value end as volume
from analytics.daily_metrics m
left join analytics.daily_metrics s
  on s.metric = 'sessions' and s.metric_date = m.metric_date and s.dimension = m.dimension
 and s.segment = m.segment
where m.metric_date between $from_day::date and $to_day::date
  and m.value is not null
  and m.metric_date not in (select event_date from raw.load_log where not source_found);

-- name: funnel_series
-- Step conversion of every funnel within one day of entry, known on the day after the entry day (its
-- metric_date): a cohort's first-day conversion is final then, so every point of the series is as complete as
-- the others and none is read before it is known (a run as of $to_day sees the entry days before it only).
-- The volume is the previous step's users within that day, the number of trials behind the rate.
select 'funnel:' || s.funnel || ':step' || s.step as metric, s.dimension, s.segment,
       s.cohort_date + 1 as metric_date, s.conversion_1d_from_prev as value, p.users_1d as volume
from analytics.funnel_steps s
join analytics.funnel_steps p
  on p.funnel = s.funnel and p.cohort_date = s.cohort_date and p.dimension = s.dimension
 and p.segment = s.segment and p.step = s.step - 1
where s.step >= 2
  and s.cohort_date + 1 between $from_day::date and $to_day::date
  and s.conversion_1d_from_prev is not null
  and s.cohort_date not in (select event_date from raw.load_log where not source_found)
  and s.cohort_date + 1 not in (select event_date from raw.load_log where not source_found);

-- name: first_days
-- The first day of data of every trailing-window series (and of new_users, whose first month counts the
-- warehouse filling): its window is full only that many days later
-- (fixed by the data, not by the range a run loads).
select metric, dimension, segment, min(metric_date) as first_day
from analytics.daily_metrics
where metric in ('wau', 'mau', 'stickiness', 'new_users') and value is not null
group by all;
