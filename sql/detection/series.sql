-- The daily series that detection scans (grain: one value per series and day), read "as of" a day.
-- Parameters: $from_day, $to_day (local days), $funnel_lag_days (entry days this recent are left out).

-- name: metric_series
-- Days whose export file was missing are a data outage, not product behaviour: they are left out (the
-- raw_events volume check reports them).
select metric, dimension, segment, metric_date, value, value as volume
from analytics.daily_metrics
where metric_date between $from_day::date and $to_day::date
  and value is not null
  and metric_date not in (select event_date from raw.load_log where not source_found);

-- name: funnel_series
-- Step conversion of every funnel by entry day; the volume is the previous step's users, the number of
-- trials behind the rate.
select 'funnel:' || s.funnel || ':step' || s.step as metric, s.dimension, s.segment,
       s.cohort_date as metric_date, s.conversion_from_prev as value, p.users as volume
from analytics.funnel_steps s
join analytics.funnel_steps p
  on p.funnel = s.funnel and p.cohort_date = s.cohort_date and p.dimension = s.dimension
 and p.segment = s.segment and p.step = s.step - 1
where s.step >= 2
  and s.cohort_date between $from_day::date and $to_day::date - $funnel_lag_days
  and s.conversion_from_prev is not null
  and s.cohort_date not in (select event_date from raw.load_log where not source_found);
