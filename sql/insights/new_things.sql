-- new_things: what appeared in the last days after a long absence (grain: one series first seen on a day).
-- Named statements run by hitcraft_assets/insights/novelty.py. Parameters: $day (the local reporting day),
-- $history_days (how far back "absent" is checked), $new_days (how recent a first sighting is news),
-- $kp_events / $kp_properties (config event_properties: each event's key property, in the same order).

-- name: first_seen
-- Per series, its first day with a value in the history window, the days of data before it there (days with
-- a total DAU), its total since (events, users or user-days) and the days seen since. Series: a new event
-- name (its total count), a new value of a configured dimension (its DAU) and a new value of an event's key
-- property (its users).
with data_days as (
    select metric_date
    from analytics.daily_metrics
    where metric = 'dau' and dimension = 'all' and segment = 'all' and value > 0
      and metric_date > $day::date - $history_days::integer and metric_date <= $day::date
),
key_properties as (
    select unnest($kp_events::varchar[]) as event, unnest($kp_properties::varchar[]) as property
),
s as (
    select m.metric, m.dimension, m.segment, m.metric_date, m.value
    from analytics.daily_metrics m
    where m.metric_date > $day::date - $history_days::integer and m.metric_date <= $day::date and m.value > 0
      and ((m.metric like 'event_count:%' and m.dimension = 'all')
           or (m.metric = 'dau' and m.dimension <> 'all')
           or (m.metric like 'event_users:%'
               and (m.metric, m.dimension) in (select 'event_users:' || event, property from key_properties)))
),
firsts as (
    select metric, dimension, segment, min(metric_date) as first_seen, sum(value) as total,
           count(*) as days_seen
    from s
    group by all
)
select f.metric, f.dimension, f.segment, f.first_seen, f.total, f.days_seen,
       (select count(*) from data_days d where d.metric_date < f.first_seen) as days_before,
       (select count(*) from data_days d where d.metric_date >= f.first_seen) as days_since
from firsts f
where f.first_seen > $day::date - $new_days::integer
order by f.metric, f.dimension, f.segment;

-- name: event_users
-- A new event's events and distinct users from its first day to $day (local days as UTC bounds), and the
-- day's total active users.
select count(*) as events, count(distinct user_key) as users
from core.identified_events
where event = $event and time >= $from_ts and time < $to_ts
  and event_date between $scan_from::date and $scan_to::date;

-- name: event_segments
-- Where a new event happens: its events by segment of every configured dimension since its first day, with
-- the segment's share of the active users over the same days (to tell "only on iOS" from "iOS is most users").
with ev as (
    select dimension, segment, sum(value) as events
    from analytics.daily_metrics
    where metric = 'event_count:' || $event and dimension <> 'all'
      and metric_date between $from_day::date and $day::date
    group by all
),
users as (
    select dimension, segment, sum(value) as user_days
    from analytics.daily_metrics
    where metric = 'dau' and dimension <> 'all' and metric_date between $from_day::date and $day::date
    group by all
),
totals as (
    select sum(value) as user_days
    from analytics.daily_metrics
    where metric = 'dau' and dimension = 'all' and metric_date between $from_day::date and $day::date
)
select e.dimension, e.segment, e.events, e.events / sum(e.events) over (partition by e.dimension) as share,
       u.user_days / nullif(t.user_days, 0) as share_of_users
from ev e
left join users u using (dimension, segment)
cross join totals t
qualify row_number() over (partition by e.dimension order by e.events desc, e.segment) = 1
order by share desc, e.dimension;
