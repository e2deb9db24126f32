-- sessions: Mixpanel's timeout-based sessions of one local reporting day (grain: one session of one user_key).
-- Named statements, run by hitcraft_assets/analysis/sessions.py in one transaction per day. Parameters:
-- $day (the local day), $start_ts / $end_ts (its half-open UTC interval), $scan_from / $scan_to (the UTC
-- export days that can hold its events, widened by the load's time tolerance), $timeout_s, $dim_names and
-- $dim_paths (the configured dimensions and their JSON pointer pairs, as lists: nothing is interpolated),
-- $session_paths / $session_set (the properties behind platform, country and utm_source: config
-- `session_properties`, Mixpanel's $os, mp_country_code and utm_source by default; unset: null).
-- Only events of the local day are read, so every session starts and ends inside it: Mixpanel resets
-- sessions at midnight of the project timezone, and here that is exactly the partition boundary.

-- name: macros
-- How every analysis statement reads a configured property (temp macros, created on the connection by
-- sessions.ensure_segment_macros). `pairs` holds one [literal, nested] pointer pair per property
-- (config.property_path): the top-level key named exactly so when the event has it (any value, null
-- included), else the nested path its dots spell (plan.tier -> /plan/tier). One JSON parse per event; a
-- second only for a dotted property whose literal key is absent.
create or replace temp macro hc_values(props, pairs) as
    list_transform(json_extract(props, list_transform(pairs, lambda p: p[1])),
                   lambda v, i: coalesce(v, case when pairs[i][1] <> pairs[i][2]
                                                 then json_extract(props, pairs[i][2]) end));
-- The same for one pair (which may vary by row, e.g. the key property of the row's event).
create or replace temp macro hc_value(props, pair) as
    coalesce(json_extract(props, pair[1]), case when pair[1] <> pair[2] then json_extract(props, pair[2]) end);
-- The values as text: a string unquoted, a number, list or object as DuckDB writes it; null when missing.
create or replace temp macro hc_texts(props, pairs) as
    list_transform(hc_values(props, pairs), lambda v: json_extract_string(v, '$'));
-- The segments of one value, as Mixpanel breaks down by a list property: [its text] for a scalar; for a
-- list, its distinct non-empty elements as text (sorted), so one event, user or session is in each
-- element's segment, once; ['(none)'] when missing, null, empty text, or a list without such elements.
create or replace temp macro hc_segments(v) as
    case when json_type(v) = 'ARRAY'
         then coalesce(nullif(list_sort(list_distinct(list_filter(json_extract_string(v, '$[*]'),
                                                                  lambda s: s <> ''))), []), ['(none)'])
         else [coalesce(nullif(json_extract_string(v, '$'), ''), '(none)')] end;
-- Per property, its segments (a list of lists, in the order of the pairs).
create or replace temp macro hc_segment_lists(props, pairs) as
    list_transform(hc_values(props, pairs), lambda v: hc_segments(v));

-- name: schema
create table if not exists core.sessions (
    session_date   date not null,          -- local day of the reporting timezone (partition key)
    session_id     varchar not null,       -- user_key || ':' || epoch ms of session_start
    user_key       varchar not null,       -- identity after the ID merge (core.identified_events)
    session_start  timestamptz not null,   -- first event's time
    session_end    timestamptz not null,   -- last event's time before the inactivity gap
    duration_s     double not null,        -- session_end - session_start (0 for a one-event session)
    event_count    bigint not null,
    first_event    varchar not null,
    platform       varchar,                -- first event's $os (config session_properties.platform)
    country        varchar,                -- first event's mp_country_code (session_properties.country)
    utm_source     varchar,                -- first event's utm_source (session_properties.utm_source)
    segments       map(varchar, varchar),  -- dimension name -> first event's value ('(none)' if missing; a list
                                           -- property: its segments joined by ', ', a label only)
    segment_lists  map(varchar, varchar[]) -- dimension name -> the session's segments: [value] for a scalar,
                                           -- each distinct element of a list (hc_segments); breakdowns read this
);
alter table core.sessions add column if not exists segment_lists map(varchar, varchar[]);
-- sessions stored before segment_lists existed: their one value each
update core.sessions set segment_lists = map(map_keys(segments), list_transform(map_values(segments), lambda v: [v]))
where segment_lists is null and segments is not null;

-- name: delete_day
delete from core.sessions where session_date = $day::date;

-- name: insert_day
-- Events of a user in time order (ties broken by event name, then $insert_id, so first_event is
-- deterministic); an event more than the timeout after the previous one starts a new session, an event
-- exactly the timeout after it continues the session.
insert into core.sessions
with day_events as (
    select user_key, time, event,
           hc_texts(properties, $session_paths::varchar[][]) as defaults,
           hc_segment_lists(properties, $dim_paths::varchar[][]) as dims,
           row_number() over (partition by user_key order by time, event, insert_id nulls last) as seq
    from core.identified_events
    where event_date between $scan_from::date and $scan_to::date
      and time >= $start_ts and time < $end_ts
),
marked as (
    select *,
           case when lag(time) over (partition by user_key order by seq) is null
                  or epoch(time - lag(time) over (partition by user_key order by seq)) > $timeout_s
                then 1 else 0 end as starts_session
    from day_events
),
numbered as (
    select *, sum(starts_session) over (partition by user_key order by seq rows unbounded preceding) as session_no
    from marked
),
sessions as (
    select user_key, session_no,
           min(time) as session_start,
           max(time) as session_end,
           count(*) as event_count,
           arg_min(event, seq) as first_event,
           arg_min(defaults, seq) as defaults,
           arg_min(dims, seq) as dims
    from numbered
    group by user_key, session_no
)
select $day::date,
       user_key || ':' || epoch_ms(session_start),
       user_key,
       session_start,
       session_end,
       epoch(session_end - session_start)::double,
       event_count,
       first_event,
       case when $session_set[1] then defaults[1] end,
       case when $session_set[2] then defaults[2] end,
       case when $session_set[3] then defaults[3] end,
       map($dim_names::varchar[], list_transform(dims, lambda s: array_to_string(s, ', '))),
       map($dim_names::varchar[], dims)
from sessions;

-- name: day_summary
select count(*) as sessions,
       count(distinct user_key) as users,
       coalesce(sum(event_count), 0) as events,
       median(duration_s) as median_duration_s
from core.sessions
where session_date = $day::date;
