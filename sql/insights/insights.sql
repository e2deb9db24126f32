-- insights: the day's ranked findings with their evidence and recommendation (grain: one finding "as of" a day).
-- Named statements run by hitcraft_assets/insights/generators.py: the DDL, the partition write (delete_day +
-- insert_row in one transaction), the previous day's state, and the reads of the analysis and detection
-- tables the generators turn into findings. Parameters: $day (the local reporting day) and the thresholds
-- named in each statement.

-- name: schema
create schema if not exists insights;
create table if not exists insights.insights (
    insight_id      varchar not null,   -- stable: hash of kind + the finding's identity (metric, dimension, segment)
    as_of_date      date not null,      -- the day the finding was judged on (partition key)
    kind            varchar not null,   -- risk | opportunity | success | trend | anomaly
    title           varchar not null,
    summary         varchar not null,   -- plain language; every number in it is in evidence
    evidence        json not null,      -- the numbers, dates, segments, test statistics and "source" tables
    impact_score    double not null,    -- the ranking formula (hitcraft_assets/insights/ranking.py)
    confidence      double not null,    -- 0..1
    priority_rank   integer not null,   -- 1 = most important of the day
    recommendation  varchar not null,
    generated_by    varchar not null,   -- rules | llm:<model>
    status          varchar not null,   -- new | ongoing | resolved
    context         json not null       -- product name, goals, area, owner, glossary entries
);

-- name: delete_day
delete from insights.insights where as_of_date = $day::date;

-- name: insert_row
insert into insights.insights values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: previous_day
-- The latest day before $day that has insights.
select max(as_of_date) from insights.insights where as_of_date < $day::date;

-- name: rows_of_day
select insight_id, as_of_date, kind, title, summary, evidence, impact_score, confidence, priority_rank,
       recommendation, generated_by, status, context
from insights.insights
where as_of_date = $day::date
order by priority_rank, insight_id;

-- name: funnel_dropoffs
-- Per funnel, the step where most users are lost, in the latest entry cohort whose window has closed by the
-- end of $day (the entry day $day - window: every entrant has had the whole window; a younger cohort is still
-- converting and would read as a leak that is only unfinished). Totals; ties: the lower conversion, then the
-- earlier step. $funnels and $windows: the configured funnels and their window_days, in the same order.
with cohorts as (
    select unnest($funnels::varchar[]) as funnel, $day::date - unnest($windows::integer[]) as cohort_date
),
day_rows as (
    select f.funnel, f.cohort_date, f.step, f.step_event, f.users, f.conversion_from_prev, f.conversion_from_start,
           f.completeness
    from analytics.funnel_steps f
    join cohorts c on c.funnel = f.funnel and c.cohort_date = f.cohort_date
    where f.dimension = 'all' and f.segment = 'all'
)
select s.cohort_date, s.funnel, s.step, p.step_event as prev_event, s.step_event, e.users as entrants,
       p.users as users_prev,
       s.users, p.users - s.users as users_lost, s.conversion_from_prev, s.conversion_from_start, s.completeness
from day_rows s
join day_rows p on p.funnel = s.funnel and p.step = s.step - 1
join day_rows e on e.funnel = s.funnel and e.step = 1
where s.step >= 2 and p.users >= $min_users and p.users > s.users
qualify row_number() over (partition by s.funnel
                           order by p.users - s.users desc, s.conversion_from_prev, s.step) = 1
order by s.funnel;

-- name: funnel_volumes
-- Users at the previous step within one day of entry behind every step's first-day conversion known on the
-- days [$from_day, $day] (an entry day's first-day conversion is known the day after it): the users a funnel
-- anomaly concerns.
select 'funnel:' || s.funnel || ':step' || s.step as metric, s.dimension, s.segment, s.cohort_date + 1 as known_on,
       p.users_1d as users_prev, s.users_1d as users
from analytics.funnel_steps s
join analytics.funnel_steps p
  on p.funnel = s.funnel and p.cohort_date = s.cohort_date and p.dimension = s.dimension
 and p.segment = s.segment and p.step = s.step - 1
where s.step >= 2 and s.cohort_date + 1 between $from_day::date and $day::date and p.users_1d is not null;

-- name: segment_comparisons
-- The day's significant segment-vs-rest comparisons, with the segment's share of the users compared.
select metric_date, metric, dimension, segment, segment_n, rest_n,
       segment_n / (segment_n + rest_n) as share_of_users,
       segment_value, rest_value, effect, effect_size, test, statistic, p_value, q_value
from analytics.segment_comparisons
where metric_date = $day::date and significant and q_value <= $alpha
order by q_value, metric, dimension, segment;

-- name: anomalies
-- The day's anomalies, totals first: new alerts and the continuing days of earlier ones.
select metric_date, metric, dimension, segment, observed, expected, lower, upper, score, direction,
       p_value, q_value, root_cause, coalesce(status, 'new') as status, episode_start,
       coalesce(window_days, 1) as window_days
from analytics.anomalies
where metric_date = $day::date
order by dimension <> 'all', q_value, metric, dimension, segment;

-- name: trends
-- The day's significant trends, and the series with a recent change point (significant or not).
select as_of_date, metric, dimension, segment, n, slope, tau, p_value, q_value, trend, trend_change, current_7d,
       pct_change_7d, current_28d, pct_change_28d, last_change_date, last_change_shift, last_change_relative,
       change_points, root_cause
from analytics.trends
where as_of_date = $day::date
  and ((q_value <= $alpha and trend <> 'no trend')
       or last_change_date between $day::date - $change_days::integer and $day::date)
order by metric, dimension, segment;

-- name: persisted_rises
-- Upward anomalies of the last $lookback_days (at least $min_age_days old) whose series has stayed above the
-- anomaly's upper band: the 7-day mean as of $day is at least the band's upper edge. The latest per series.
select a.metric, a.dimension, a.segment, a.metric_date, a.observed, a.expected, a.upper, a.score, a.q_value,
       t.current_7d, t.pct_change_28d
from analytics.anomalies a
join analytics.trends t
  on t.as_of_date = $day::date and t.metric = a.metric and t.dimension = a.dimension and t.segment = a.segment
where a.direction = 'up' and coalesce(a.status, 'new') = 'new'
  and a.metric_date between $day::date - $lookback_days::integer and $day::date - $min_age_days::integer
  and t.current_7d >= a.upper
qualify row_number() over (partition by a.metric, a.dimension, a.segment order by a.metric_date desc) = 1
order by a.metric, a.dimension, a.segment;

-- name: segment_users
-- Daily active users of the day per segment (and the total): how many users a finding concerns, and which
-- segments are big enough for a trend finding.
select dimension, segment, value
from analytics.daily_metrics
where metric_date = $day::date and metric = 'dau';

-- name: comparison_history
-- Every comparison of the last $history_days days up to $day: how long a finding has been significant.
select metric_date, metric, dimension, segment, significant and q_value <= $alpha as significant, effect
from analytics.segment_comparisons
where metric_date between $day::date - $history_days::integer and $day::date
order by metric, dimension, segment, metric_date desc;

-- name: episodes
-- The first day of each series' latest anomaly episode in each direction within the lookback, up to the day:
-- a change begins on the first anomalous day, which a change point found later may place a day or two after.
select metric, dimension, segment, direction, max(coalesce(episode_start, metric_date)) as episode_start
from analytics.anomalies
where metric_date <= $day::date and metric_date > $day::date - $lookback_days::integer
group by all;

-- name: trend_runs
-- For each series with a significant trend on the day: on how many days of the history window its trend was
-- significant in the same direction, and the first of them (trends flicker around the threshold, so days
-- are counted, not a run), so that a trend months old reads as the standing fact it is.
with t as (
    select metric, dimension, segment, as_of_date, trend,
           coalesce(q_value <= $alpha and trend <> 'no trend', false) as sig
    from analytics.trends
    where as_of_date <= $day::date and as_of_date > $day::date - $history_days::integer
),
today as (
    select metric, dimension, segment, trend from t where as_of_date = $day::date and sig
)
-- days_trended: the days the series had a trend row at all (a young series has few): a rise significant on
-- most of them is the series' normal state since it began (a young product ramping up), not news.
select t.metric, t.dimension, t.segment,
       count(*) filter (where t.sig and t.trend = d.trend) as days_significant,
       min(t.as_of_date) filter (where t.sig and t.trend = d.trend) as significant_since,
       count(*) as days_trended
from t join today d on d.metric = t.metric and d.dimension = t.dimension and d.segment = t.segment
group by all;

-- name: value_breakdown
-- An event's users by the values of its key property (config event_properties): the last 7 days' mean, the
-- mean of the 7 days four weeks earlier (0 for a value not seen then), the first day each value was seen in
-- the history window, and the first day of any value (before it, the breakdown has no data); the values that
-- moved most first.
with v as (
    select segment, metric_date, value
    from analytics.daily_metrics
    where metric = 'event_users:' || $event and dimension = $property
      and metric_date > $day::date - $history_days::integer and metric_date <= $day::date
)
select segment as value,
       coalesce(avg(value) filter (where metric_date > $day::date - 7), 0) as users_7d,
       coalesce(avg(value) filter (where metric_date > $day::date - 35 and metric_date <= $day::date - 28), 0)
           as users_7d_before,
       min(metric_date) filter (where value > 0) as first_seen,
       (select min(metric_date) from v) as event_first_seen
from v
group by segment
order by abs(users_7d - users_7d_before) desc, segment
limit 5;

-- name: return_changes
-- The latest judged change of each return rate (analytics.return_rates: first-week return of each birth day's
-- users, weekly return of returning users) when it is significant: the row of the day, or, while the day's
-- window holds a data outage (its row untested), the latest tested row of the last $carry_days days. With it,
-- the run of consecutive tested days, ending there, on which the series was significant the same way (a
-- change is sustained when the day before agrees), and the recent cohorts of the run's first day (where the
-- change was first seen).
with r as (
    select metric_date, metric, dimension, segment, direction, coalesce(significant, false) as sig, recent_from
    from analytics.return_rates
    where metric_date <= $day::date and metric_date > $day::date - $history_days::integer and p_value is not null
),
latest as (
    select *, row_number() over (partition by metric, dimension, segment order by metric_date desc) as rn
    from analytics.return_rates
    where metric_date between $day::date - $carry_days::integer and $day::date and p_value is not null
),
today as (
    select * exclude (rn) from latest where rn = 1 and significant
),
breaks as (   -- the latest tested day before it on which the series was not significant the same way
    select t.metric, t.dimension, t.segment, max(r.metric_date) as last_break
    from today t
    join r using (metric, dimension, segment)
    where r.metric_date < t.metric_date and not (r.sig and r.direction = t.direction)
    group by all
),
runs as (
    select t.metric, t.dimension, t.segment, min(r.metric_date) as significant_since, count(*) as days_significant,
           arg_min(r.recent_from, r.metric_date) as first_seen_from
    from today t
    left join breaks b using (metric, dimension, segment)
    join r using (metric, dimension, segment)
    where r.metric_date > coalesce(b.last_break, $day::date - $history_days::integer)
      and r.metric_date <= t.metric_date and r.sig
    group by all
)
select t.*, u.significant_since, u.days_significant, u.first_seen_from
from today t
join runs u using (metric, dimension, segment)
order by q_value, metric, dimension, segment;

-- name: return_contributions
-- For a total's return-rate change: each segment's recent and baseline cohorts on the same day and rate,
-- from which the users each segment loses (its share of the total's loss) follow.
select dimension, segment, recent_trials, recent_successes, baseline_trials, baseline_successes
from analytics.return_rates
where metric_date = $known_on::date and metric = $metric and dimension <> 'all' and p_value is not null
order by dimension, segment;
