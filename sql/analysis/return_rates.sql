-- return_rates: per local day, the latest closed return rates of users by segment (grain: metric_date x metric x dimension x segment).
-- Named statements run by hitcraft_assets/analysis/return_rates.py (from the `segments` asset), which adds the
-- test of each series (hitcraft_assets/detection/return_change.py). Two rates, each with its trials and
-- successes, each read only once its window is over by the end of $day (what the daily run could know):
-- - first_week_return: users born on $day - 8 who came back within rolling days 1-7, [birth + 24 h,
--   birth + 192 h), by the segment of their birth event: retention.sql's week1_by_segment with that window;
-- - weekly_return: returning users (first active before $week_a_from) active in the week $week_a_from ..
--   $week_a_to ($day - 13 .. $day - 7), who were active again in $week_b_from .. $day (the 7 days to $day),
--   from core.user_days; a user is in every segment touched in week A (as WAU counts).
-- The 'all' rows count each user once.

-- name: create_table
create table if not exists analytics.return_rates (
    metric_date         date not null,     -- local day the rate is known on (its window closed by its end)
    metric              varchar not null,  -- first_week_return | weekly_return
    dimension           varchar not null,  -- configured dimension name, or 'all'
    segment             varchar not null,  -- the dimension's value ('(none)' when missing), or 'all'
    cohort_from         date not null,     -- the users' cohort: birth day (first_week_return) or week A
    cohort_to           date not null,
    trials              bigint not null,   -- users in the cohort
    successes           bigint not null,   -- of them, users who came back in the window
    rate                double not null,   -- successes / trials
    recent_from         date,              -- the pooled recent cohorts the test judges (first cohort day)
    recent_to           date,
    recent_trials       bigint,
    recent_successes    bigint,
    baseline_from       date,              -- the earlier cohorts it is judged against
    baseline_to         date,
    baseline_trials     bigint,
    baseline_successes  bigint,
    between_var         double,            -- variance of the baseline's weekly rates beyond binomial noise
    p_value             double,            -- two-sided beta-binomial tail of the recent successes
    q_value             double,            -- Benjamini-Hochberg over every series tested that day
    direction           varchar,           -- 'down' | 'up' (recent rate against the baseline's)
    significant         boolean            -- q_value <= 0.05
);

-- name: delete_day
delete from analytics.return_rates where metric_date = $day::date;

-- name: weekly
with week_a as (
    select user_key, segments from core.user_days
    where activity_date between $week_a_from::date and $week_a_to::date
),
earlier as (   -- users active before week A: returning users, not the week's new ones (core.user_first_days:
               -- the first day of each of core.user_days' users, so no pass over every earlier user-day)
    select distinct f.user_key
    from core.user_first_days f semi join week_a a on a.user_key = f.user_key
    where f.first_date < $week_a_from::date
),
returned as (
    select distinct user_key from core.user_days
    where activity_date between $week_b_from::date and $day::date
),
user_segments as (
    select distinct user_key, dimension, segment from (
        select a.user_key, 'all' as dimension, 'all' as segment from week_a a
        union all
        select a.user_key, dim.dimension, unnest(coalesce(a.segments[dim.dimension], [$not_set])) as segment
        from week_a a cross join (select unnest($dim_names::varchar[]) as dimension) dim
    )
)
select u.dimension, u.segment, count(*) as trials, count(r.user_key) as successes
from user_segments u
semi join earlier e on e.user_key = u.user_key
left join returned r on r.user_key = u.user_key
group by u.dimension, u.segment
order by 1, 2;

-- name: history
-- The stored rows of the days before $day that a test reads (its baseline and recent cohorts).
select metric_date, metric, dimension, segment, trials, successes, cohort_from, cohort_to
from analytics.return_rates
where metric_date between $from_day::date and $day::date - 1;

-- name: outages
-- Days whose export file was missing (a data outage, not users staying away): a rate whose window holds one
-- is stored untested and left out of other days' tests.
select event_date from raw.load_log where not source_found and event_date between $from_day::date and $day::date;

-- name: insert_row
insert into analytics.return_rates values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);
