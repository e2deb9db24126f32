-- trends: every scanned series' trend "as of" a day (grain: one series on one day): Mann-Kendall with
-- Sen's slope over the trailing 28 days, change over 7 and 28 days against the prior window, and the
-- change points of the trailing 90 days. Parameters: $day.

-- name: schema
create table if not exists analytics.trends (
    as_of_date         date not null,
    metric             varchar not null,
    dimension          varchar not null,
    segment            varchar not null,
    n                  integer,
    slope              double,   -- Sen's slope, per day
    tau                double,
    p_value            double,   -- Mann-Kendall, Hamed-Rao corrected for autocorrelation
    q_value            double,   -- Benjamini-Hochberg across every series of the day
    trend              varchar,  -- increasing | decreasing | no trend
    trend_change       double,   -- how far Sen's line moved over the window, relative to its start
    current_7d         double,
    pct_change_7d      double,
    current_28d        double,
    pct_change_28d     double,
    change_points      json,     -- [{date, mean_before, mean_after, shift, relative_shift}]
    last_change_date   date,
    last_change_shift  double,
    last_change_relative double,
    root_cause         json      -- for a total count's latest change point: the segments that explain it
);
alter table analytics.trends add column if not exists root_cause json;
alter table analytics.trends add column if not exists trend_change double;

-- name: delete_day
delete from analytics.trends where as_of_date = $day::date;
