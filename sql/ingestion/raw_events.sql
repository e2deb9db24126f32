-- raw_events: one export day's JSONL body -> typed, validated, deduplicated rows of raw.events (grain: one event).
-- Named statements, run in order by hitcraft_assets/ingestion/loader.py. Parameters: $path, $day, $source,
-- $min_s and $max_s (accepted event times in epoch seconds: the UTC day widened by the tolerance).
-- The whole day is replaced in one transaction opened by the loader.

-- name: epoch_macro
-- Mixpanel exports `time` in seconds, or in milliseconds with time_in_ms=true: accept both. Null when the
-- value is not a JSON number.
create or replace temp macro hc_epoch_s(t) as case when t >= 1e11 then t / 1000.0 else t end;

-- name: parse_macro
-- One row per non-blank line of the body (a malformed line gives a row of NULLs, which the rule rejects);
-- the properties are parsed once for every field we need, the time converted once.
create or replace temp macro hc_export_rows(path) as table
select event, properties, hc_epoch_s(t) as t_s, distinct_id, insert_id, device_id, user_id
from (
    select event, properties,
           case when json_type(f[1]) in ('UBIGINT', 'BIGINT', 'DOUBLE') then f[1]::double end as t,
           f[2] ->> '$' as distinct_id,
           f[3] ->> '$' as insert_id,
           f[4] ->> '$' as device_id,
           f[5] ->> '$' as user_id
    from (
        select event, properties,
               json_extract(properties, ['$.time', '$.distinct_id', '$."$insert_id"', '$."$device_id"', '$."$user_id"']) as f
        from read_ndjson(path, ignore_errors = true, columns = {'event': 'VARCHAR', 'properties': 'JSON'})
    )
);

-- name: reason_macro
-- The validation rule, in one place: null when the row is valid, else a stable reason code.
create or replace temp macro hc_reject_reason(event, properties, t_s, distinct_id, min_s, max_s) as
case
    when event is null or event = '' then 'missing_event'
    when properties is null or not starts_with(properties::varchar, '{') then 'missing_properties'
    when t_s is null then 'missing_or_non_numeric_time'
    when distinct_id is null or distinct_id = '' then 'missing_distinct_id'
    when t_s < min_s or t_s >= max_s then 'time_outside_day'
    else null
end;

-- name: delete_partition
delete from raw.events where event_date = $day::date;

-- name: delete_rejected
delete from raw.rejected_events where event_date = $day::date;

-- name: insert_events
insert into raw.events
select $day::date, event, distinct_id, to_timestamp(t_s), insert_id, device_id, user_id, properties, now()
from hc_export_rows($path)
where hc_reject_reason(event, properties, t_s, distinct_id, $min_s, $max_s) is null;

-- name: remove_duplicates
-- Mixpanel's dedup key (event, distinct_id, time, $insert_id): keep the latest mp_processing_time_ms.
-- Events without $insert_id never qualify for deduplication, as in Mixpanel.
delete from raw.events
where event_date = $day::date
  and rowid in (
    select rowid from (
        select rowid,
               row_number() over (
                   partition by event, distinct_id, time, insert_id
                   order by try_cast(properties ->> '$.mp_processing_time_ms' as bigint) desc nulls last, rowid desc
               ) as rn
        from raw.events
        where event_date = $day::date
          and (event, distinct_id, time, insert_id) in (
              select (event, distinct_id, time, insert_id) from raw.events
              where event_date = $day::date and insert_id is not null
              group by all having count(*) > 1)
    ) where rn > 1);

-- name: count_lines
-- The body's non-empty lines, counted by a reader independent of the JSON parser: when the count equals the
-- rows inserted, no line was rejected and the quarantine passes are skipped. (Mixpanel caps an event at
-- 1 MB, so DuckDB's default 2 MB line limit holds; a larger buffer only costs memory.)
select count(line)
from read_csv($path, columns = {'line': 'VARCHAR'}, delim = e'\x01', quote = '', escape = '',
              header = false, auto_detect = false, strict_mode = false);

-- name: insert_rejected
-- Quarantine (only when count_lines found more lines than rows inserted): every line is parsed once more
-- on its own, judged by the same hc_reject_reason as the insert, and each failing line is kept with its
-- 1-based physical line number and raw text. Only a failing line's text reaches the numbering window.
insert into raw.rejected_events
select $day::date, $source, line_no, bad_line, reason
from (
    select row_number() over () as line_no, bad_line, reason
    from (
        select case when reason is not null then line end as bad_line, reason
        from (
            select line,
                   case when line is null then null
                        when f is null then case when regexp_full_match(line, '\s*') then 'blank_line'
                                                 else 'invalid_json' end
                        when not regexp_matches(line, '^\s*\{') then 'not_a_json_object'
                        -- a time inside properties proves they are an object; only other lines parse them
                        else hc_reject_reason(f[1] ->> '$',
                                              case when f[2] is null then json_extract(line, '$.properties')
                                                   else '{}' end,
                                              hc_epoch_s(case when json_type(f[2]) in ('UBIGINT', 'BIGINT', 'DOUBLE')
                                                              then f[2]::double end),
                                              f[3] ->> '$', $min_s, $max_s) end as reason
            from (
                select line,
                       try(json_extract(line, ['$.event', '$.properties.time', '$.properties.distinct_id'])) as f
                from read_csv($path, columns = {'line': 'VARCHAR'}, delim = e'\x01', quote = '', escape = '',
                              header = false, auto_detect = false, strict_mode = false)
            )
        )
    )
)
where bad_line is not null;

-- name: day_stats
select count(*) as rows_loaded, count(distinct distinct_id) as distinct_users
from raw.events where event_date = $day::date;
