-- raw_events: one export day's JSONL body -> typed, validated, deduplicated rows of raw.events (grain: one event).
-- Named statements, run by hitcraft_assets/ingestion/loader.py inside one transaction per day. Parameters:
-- $path, $day, $source, $min_s and $max_s (accepted event times in epoch seconds: the day widened by the
-- tolerance), $project_tz (legacy Mixpanel projects: the timezone their exported `time` is in; null: UTC),
-- Three ways through a day, each judging lines by the one rule in hc_reject_reason:
--   1. the fast path: DuckDB's JSON reader inserts the valid lines; when the body's line count equals the
--      rows inserted, nothing was rejected and the day is done;
--   2. quarantine: otherwise every line is read again as text (read_csv), judged, and each failing line is
--      kept with its line number, text and reason; a line that starts with a byte-order mark is judged
--      without it (and loaded when valid);
--   3. the exact path: when the text reader cannot follow the JSON reader's lines (a bare carriage return
--      inside a line, a line over DuckDB's 2 MB text limit, bytes that are not UTF-8), the loader streams
--      the body's newline-delimited lines into temp.hc_lines itself, and the day is loaded from there
--      (also a compressed file that ends early: what could be read is loaded, and the day is held).

-- name: epoch_macro
-- Mixpanel exports `time` in seconds, or in milliseconds with time_in_ms=true: accept both. Null when the
-- value is not a JSON number. Projects created before 2023 export `time` as seconds since the epoch in the
-- project timezone (a local wall clock written as if it were UTC): with $project_tz it becomes true UTC
-- with the offset in force at that local time (DST-aware; a local time in the repeated hour of a
-- fall-back is read as the later of its two instants, standard time).
create or replace temp macro hc_epoch_s(t, project_tz) as
case when t is null then null
     when project_tz is null then (case when t >= 1e11 then t / 1000.0 else t end)
     else epoch(timezone(project_tz, timezone('UTC', to_timestamp(case when t >= 1e11 then t / 1000.0 else t end))))
end;

-- name: reason_macro
-- The validation rule, in one place: null when the row is valid, else a stable reason code. `event_json`
-- and `id_json` are the raw JSON values (their types matter), `props_object` whether `properties` is an
-- object, `t_s` the time in epoch seconds (null when it is not a number).
create or replace temp macro hc_reject_reason(event_json, props_object, t_s, id_json, min_s, max_s) as
case
    when event_json is null or json_type(event_json) = 'NULL' or (event_json ->> '$') = '' then 'missing_event'
    when json_type(event_json) <> 'VARCHAR' or regexp_matches(event_json ->> '$', '[[:cntrl:]]') then 'invalid_event'
    when not coalesce(props_object, false) then 'missing_properties'
    when t_s is null then 'missing_or_non_numeric_time'
    when id_json is null or json_type(id_json) = 'NULL' or trim(id_json ->> '$') = '' then 'missing_distinct_id'
    when json_type(id_json) not in ('VARCHAR', 'UBIGINT', 'BIGINT') then 'invalid_distinct_id'
    when t_s < min_s or t_s >= max_s then 'time_outside_day'
    else null
end;

-- name: rows_macro
-- Everything the engine takes from a record, with its verdict, from DuckDB's JSON reader (the fast path).
-- hc_line_rows below does the same for lines of text and judges with the same hc_reject_reason, so the
-- rows are the same whichever path loaded them; a line of text also has the reasons only a line can
-- have: blank_line, invalid_json, not_a_json_object.
create or replace temp macro hc_export_rows(path, project_tz, min_s, max_s) as table
select null::bigint as line_no, null::varchar as line, event_json ->> '$' as event, properties, t_s,
       f[2] ->> '$' as distinct_id, f[3] ->> '$' as insert_id, f[4] ->> '$' as device_id, f[5] ->> '$' as user_id,
       hc_reject_reason(event_json, json_type(properties) = 'OBJECT', t_s, f[2], min_s, max_s) as reason
from (
    select *, hc_epoch_s(case when json_type(f[1]) in ('UBIGINT', 'BIGINT', 'DOUBLE') then f[1]::double end,
                         project_tz) as t_s
    from (
        select event as event_json, properties,
               case when json_type(properties) = 'OBJECT' then json_extract(properties,
                   ['$.time', '$.distinct_id', '$."$insert_id"', '$."$device_id"', '$."$user_id"']) end as f
        from read_ndjson(path, ignore_errors = true, columns = {'event': 'JSON', 'properties': 'JSON'})
    )
);

-- name: exact_table
-- The exact path's lines: text split at "\n" by the loader (raw_line: the text as it was, when it differs).
-- Created (empty) for every load, so that hc_line_rows can name it whichever path it serves.
create or replace temp table hc_lines (line_no bigint, line varchar, raw_line varchar, problem varchar);

-- name: line_macro
-- The body's lines as text, judged: from read_csv on the quarantine path (`exact` false), from
-- temp.hc_lines on the exact path (the loader split the body at "\n" only, removed one trailing "\r" and a
-- leading byte-order mark, and set `problem` for a line it could not pass on). A leading byte-order mark
-- is not part of the record (a file concatenated from files an editor saved has one at each join). The
-- reason needs one json_extract of three paths; the other columns are computed only for rows that are
-- inserted (the quarantine path selects line_no, line and reason alone).
create or replace temp macro hc_line_rows(path, project_tz, min_s, max_s, exact) as table
select line_no, raw_line as line,
       f[1] ->> '$' as event,
       json_extract(text, '$.properties') as properties,
       t_s,
       f[3] ->> '$' as distinct_id,
       json_extract_string(text, '$.properties."$insert_id"') as insert_id,
       json_extract_string(text, '$.properties."$device_id"') as device_id,
       json_extract_string(text, '$.properties."$user_id"') as user_id,
       case when problem is not null then problem
            when regexp_full_match(text, '\s*') then 'blank_line'
            when f is null then 'invalid_json'
            when not regexp_matches(text, '^\s*\{') then 'not_a_json_object'
            -- a time inside properties proves they are an object; only other lines parse them again
            else hc_reject_reason(f[1], f[2] is not null or json_type(text, '$.properties') = 'OBJECT',
                                  t_s, f[3], min_s, max_s) end as reason
from (
    select *, hc_epoch_s(case when json_type(f[2]) in ('UBIGINT', 'BIGINT', 'DOUBLE') then f[2]::double end,
                         project_tz) as t_s
    from (
        select *, case when problem is null
                       then try(json_extract(text, ['$.event', '$.properties.time', '$.properties.distinct_id']))
                  end as f
        from (
            select line_no, line as raw_line, ltrim(line, chr(65279)) as text, null::varchar as problem
            from (select row_number() over () as line_no, line
                  from read_csv(path, columns = {'line': 'VARCHAR'}, delim = e'\x01', quote = '', escape = '',
                                header = false, auto_detect = false, strict_mode = false))
            where not exact and line is not null
            union all
            select line_no, coalesce(raw_line, line), line, problem from temp.hc_lines where exact
        )
    )
);

-- name: delete_partition
delete from raw.events where event_date = $day::date;

-- name: delete_rejected
delete from raw.rejected_events where event_date = $day::date;

-- name: insert_events
-- The fast path: DuckDB's newline-delimited JSON reader (a malformed line gives a row of NULLs, which the
-- rule rejects).
insert into raw.events
select $day::date, event, distinct_id, to_timestamp(t_s), insert_id, device_id, user_id, properties, now()
from hc_export_rows($path, $project_tz, $min_s, $max_s)
where reason is null;

-- name: count_records
-- Lines the JSON reader sees (every line that is not blank), for the quarantine path's consistency check.
select count(*) from read_ndjson($path, ignore_errors = true, columns = {'event': 'JSON'});

-- name: count_lines
-- The body's non-empty lines, counted by a reader independent of the JSON parser: when the count equals the
-- rows inserted, no line was rejected and the quarantine passes are skipped. A line over 2 MB makes this
-- reader fail; the loader then takes the exact path.
select count(line)
from read_csv($path, columns = {'line': 'VARCHAR'}, delim = e'\x01', quote = '', escape = '',
              header = false, auto_detect = false, strict_mode = false);

-- name: insert_rejected
-- Quarantine: every line parsed once more on its own, judged by the same rule as the insert, and each
-- failing line kept with its 1-based line number and raw text.
insert into raw.rejected_events
select $day::date, $source, line_no, line, reason
from hc_line_rows($path, $project_tz, $min_s, $max_s, false)
where reason is not null;

-- name: insert_recovered
-- Lines the JSON reader rejected only for a leading byte-order mark: valid once it is removed.
insert into raw.events
select $day::date, event, distinct_id, to_timestamp(t_s), insert_id, device_id, user_id, properties, now()
from hc_line_rows($path, $project_tz, $min_s, $max_s, false)
where reason is null and starts_with(line, chr(65279));

-- name: count_blank
-- Blank lines, which the JSON reader does not see.
select count(*) from raw.rejected_events where event_date = $day::date and reason = 'blank_line';

-- name: exact_events
insert into raw.events
select $day::date, event, distinct_id, to_timestamp(t_s), insert_id, device_id, user_id, properties, now()
from hc_line_rows($path, $project_tz, $min_s, $max_s, true)
where reason is null;

-- name: exact_rejected
insert into raw.rejected_events
select $day::date, $source, line_no, line, reason
from hc_line_rows($path, $project_tz, $min_s, $max_s, true)
where reason is not null;

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

-- name: day_stats
-- Rows, users, and rows whose distinct_id is a placeholder an SDK sends when it has no id (Mixpanel's
-- identity docs list these values: it does not merge them, and every such event looks like one user).
select count(*) as rows_loaded, count(distinct distinct_id) as distinct_users,
       count(*) filter (where lower(trim(distinct_id)) in (
           'undefined', 'null', 'none', 'nil', '<nil>', 'nan', 'n/a', 'na', 'anon', 'anonymous', 'unknown',
           '[object object]', '0', '-1', 'false', 'true', '[]', '{}',
           '00000000-0000-0000-0000-000000000000')) as placeholder_ids
from raw.events where event_date = $day::date;
