-- identity_map: Mixpanel's ID merge replayed locally, Simplified (grain: one row per $device_id) or Original
-- (grain: one row per edge of core.identity_edges, one row per id of core.identity_clusters).
-- Simplified: a device belongs to the first $user_id it was seen with on an event carrying both; the
-- exported distinct_id is already canonical and wins whenever it is not the device's own id.
-- Original: $identify, $create_alias and $merge events join ids into clusters (identity.py applies the
-- rules); an event's user_key is its distinct_id's cluster key.

-- name: schema
create table if not exists core.identity_map (
    device_id  varchar not null,           -- original mode: a merged distinct_id that is not its cluster's key
    user_id    varchar not null,           -- original mode: that cluster's key
    merged_at  timestamptz not null
);
create table if not exists core.identity_edges (
    event_date  date not null,             -- the UTC export day of the event (raw.events.event_date)
    time        timestamptz not null,
    insert_id   varchar not null,          -- '' when the event had no $insert_id
    kind        varchar not null,          -- identify | alias | merge
    seq         integer not null,          -- 0; a $merge of n ids gives n-1 edges, seq 1..n-1
    a           varchar not null,          -- identify: the anon id; alias: the alias; merge: the first id
    b           varchar not null           -- identify: the identified id; alias: its distinct_id; merge: another id
);
create table if not exists core.identity_clusters (
    distinct_id  varchar not null,         -- every id seen in an edge (others are their own user_key)
    user_key     varchar not null,         -- the cluster's key: its smallest identified id, else smallest id
    identified   boolean not null,         -- an $identified_id, a $create_alias distinct_id or a $merge member
    alias_of     varchar,                  -- the distinct_id this id is an alias of ($create_alias), if any
    merged_at    timestamptz,              -- when it first joined another id (null: alone in its cluster)
    cluster_size bigint not null
);
create table if not exists core.identity_state (
    mode         varchar not null,         -- simplified | original: what core.identified_events applies
    source       varchar not null,         -- how the mode was chosen: configured | detected
    updated_at   timestamptz not null
);
create table if not exists core.identity_device_days (
    event_date   date not null,            -- a UTC export day (raw.events.event_date), not held
    device_id    varchar not null,
    user_id      varchar not null,         -- the day's first $user_id with this device (ties: the smallest)
    first_time   timestamptz not null      -- the time of that event
);
create table if not exists core.identity_days (
    event_date   date not null,            -- a day whose ids are in core.identity_device_days and core.identity_edges
    loaded_at    timestamptz,              -- raw.load_log's loaded_at and fingerprint when the day was read
    fingerprint  varchar,                  -- (null: the day had no log row, and is read again every run)
    identify_events bigint not null,       -- its $identify, $create_alias and $merge events with their ids
    alias_events    bigint not null,
    merge_events    bigint not null
);

-- name: rebuild
-- The whole map from raw.events, the definition the kept map must equal (a test compares them): each device's
-- first $user_id (ties in time: the smallest), over every day not held. A merge seen on a later day
-- re-attributes earlier anonymous events too, as Mixpanel's retroactive merge does.
select device_id, min({'t': time, 'u': user_id}).u as user_id, min(time) as merged_at
from raw.events
where device_id is not null and user_id is not null
  and event_date not in (select event_date from raw.load_log where gate = 'held')
group by device_id;

-- name: loaded_days_macro
-- The UTC days with stored events that the quality gate does not hold, with what their load recorded
-- (loaded_at and fingerprint; null without a log row): what identity and retention compare against the
-- days they read last time.
create or replace temp macro hc_loaded_days() as table
select d.event_date, l.loaded_at, l.fingerprint
from (select distinct event_date from raw.events) d
left join raw.load_log l on l.event_date = d.event_date
where coalesce(l.gate, 'pass') <> 'held';

-- name: changed_days
-- The UTC days whose ids must be read again: loaded (or reloaded, or released by the gate) since they were
-- last read, without a log row, newly held, or gone. Every other day's device rows and edges are kept.
create or replace temp table hc_identity_changed as
with current_days as (select * from hc_loaded_days())
select c.event_date from current_days c
where c.loaded_at is null
   or not exists (select 1 from core.identity_days r
                  where r.event_date = c.event_date and r.loaded_at = c.loaded_at
                    and r.fingerprint is not distinct from c.fingerprint)
union
select event_date from core.identity_days where event_date not in (select event_date from current_days)
union
select distinct event_date from core.identity_device_days where event_date not in (select event_date from current_days);

-- name: fresh_device_days
-- The changed days' device rows, read from their events.
create or replace temp table hc_identity_fresh as
select event_date, device_id, min({'t': time, 'u': user_id}) as first
from raw.events
where event_date in (select event_date from hc_identity_changed)
  and event_date not in (select event_date from raw.load_log where gate = 'held')
  and device_id is not null and user_id is not null
group by event_date, device_id;

-- name: update_device_days
-- Devices with a row on a changed day, before or after: only their map rows can change.
create or replace temp table hc_identity_devices as
select device_id from core.identity_device_days where event_date in (select event_date from hc_identity_changed)
union
select device_id from hc_identity_fresh;
delete from core.identity_device_days where event_date in (select event_date from hc_identity_changed);
insert into core.identity_device_days select event_date, device_id, first.u, first.t from hc_identity_fresh;

-- name: update_days
-- What each changed day was read from, and its ID-management events (for choosing the mode).
delete from core.identity_days where event_date in (select event_date from hc_identity_changed);
insert into core.identity_days
select c.event_date, l.loaded_at, l.fingerprint,
       (select count(*) from hc_identity_special s where s.event_date = c.event_date and s.event = '$identify'),
       (select count(*) from hc_identity_special s where s.event_date = c.event_date and s.event = '$create_alias'),
       (select count(*) from hc_identity_special s where s.event_date = c.event_date and s.event = '$merge')
from hc_identity_changed c
left join raw.load_log l on l.event_date = c.event_date
where c.event_date in (select event_date from raw.events)
  and c.event_date not in (select event_date from raw.load_log where gate = 'held');

-- name: update_map
-- Simplified mode, the map kept up to date: the rows of the devices a changed day touched, from their
-- device rows of every day.
delete from core.identity_map where device_id in (select device_id from hc_identity_devices);
insert into core.identity_map
select device_id, min({'t': first_time, 'u': user_id}).u, min(first_time)
from core.identity_device_days
where device_id in (select device_id from hc_identity_devices)
group by device_id;

-- name: whole_map
-- Simplified mode after the original one (whose map is the clusters'), or on its first build: every device.
create or replace table core.identity_map as
select device_id, min({'t': first_time, 'u': user_id}).u as user_id, min(first_time) as merged_at
from core.identity_device_days
group by device_id;

-- name: special_events
-- The ID-management events of the changed days (not held), with their ids (empty and missing ids dropped): an
-- $identify needs its anon id ($anon_distinct_id, or $anon_id as the HTTP spec names it) and
-- $identified_id, a $create_alias its alias and distinct_id, a $merge two or more distinct $distinct_ids.
create or replace temp table hc_identity_special as
with special as (
    select event_date, time, coalesce(insert_id, '') as insert_id, event,
           case event
               when '$identify' then [coalesce(nullif(json_extract_string(properties, '/$anon_distinct_id'), ''),
                                               nullif(json_extract_string(properties, '/$anon_id'), '')),
                                      nullif(json_extract_string(properties, '/$identified_id'), '')]
               when '$create_alias' then [nullif(json_extract_string(properties, '/alias'), ''),
                                          nullif(json_extract_string(properties, '/distinct_id'), '')]
               else case when json_type(properties, '/$distinct_ids') = 'ARRAY'
                         then list_sort(list_distinct(list_filter(
                                  json_extract_string(json_extract(properties, '/$distinct_ids'), '$[*]'), lambda x: x <> '')))
                    end
           end as ids
    from raw.events
    where event in ('$identify', '$create_alias', '$merge')
      and event_date in (select event_date from hc_identity_changed)
      and event_date not in (select event_date from raw.load_log where gate = 'held')
)
select event_date, time, insert_id, event, ids
from special
where case when event = '$merge' then len(ids) >= 2
           else ids[1] is not null and ids[2] is not null end;

-- name: special_counts
-- Every kept day's ID-management events (after update_days).
select '$identify', sum(identify_events) from core.identity_days
union all select '$create_alias', sum(alias_events) from core.identity_days
union all select '$merge', sum(merge_events) from core.identity_days;

-- name: current_edges
-- The edges of those events (self-edges dropped), in the order they are applied: event time, then insert_id.
create or replace temp table hc_identity_edges as
select event_date, time, insert_id, kind, seq, a, case when kind = 'merge' then ids[seq + 1] else ids[2] end as b
from (select event_date, time, insert_id, ids, ids[1] as a,
             case event when '$identify' then 'identify' when '$create_alias' then 'alias' else 'merge' end as kind,
             unnest(case when event = '$merge' then range(1, len(ids)) else [0] end)::integer as seq
      from hc_identity_special)
where a <> case when kind = 'merge' then ids[seq + 1] else ids[2] end;
-- with the stored edges of the days that did not change: every current edge
insert into hc_identity_edges
select * from core.identity_edges where event_date not in (select event_date from hc_identity_changed);

-- name: added_edges
-- Edges not applied yet, in applying order.
select time, insert_id, kind, seq, a, b, event_date
from (select * from hc_identity_edges except select * from core.identity_edges)
order by time, insert_id, kind, seq, a, b;

-- name: removed_edges
-- Applied edges whose events are gone (their day was reloaded, changed or held), per day.
select event_date, count(*)
from (select * from core.identity_edges except select * from hc_identity_edges)
group by event_date
order by event_date;

-- name: replace_changed_days
-- A day's stored edges are replaced whole when any of them changed.
delete from core.identity_edges where event_date in (
    select event_date from (select * from hc_identity_edges except select * from core.identity_edges)
    union
    select event_date from (select * from core.identity_edges except select * from hc_identity_edges));
insert into core.identity_edges
select * from hc_identity_edges
where event_date not in (select distinct event_date from core.identity_edges);

-- name: all_edges
select time, insert_id, kind, seq, a, b from core.identity_edges order by time, insert_id, kind, seq, a, b;

-- name: stored_clusters
select distinct_id, user_key, identified, alias_of, merged_at from core.identity_clusters;

-- name: replace_clusters
delete from core.identity_clusters;
insert into core.identity_clusters select * from hc_identity_rows;

-- name: clear_clusters
delete from core.identity_clusters;

-- name: original_map
-- Original mode: every merged id that is not its cluster's key, under the column names of the simplified
-- map, so daily_metrics re-resolves a day's anonymous ids through it exactly as it does devices.
create or replace table core.identity_map as
select distinct_id as device_id, user_key as user_id, merged_at
from core.identity_clusters
where distinct_id <> user_key;

-- name: set_state
delete from core.identity_state;
insert into core.identity_state values ($mode, $source, now());

-- name: identified_events
-- Every event with its user_key: the identity to count users by. Original mode: the cluster key of its
-- distinct_id (the id itself when it never took part in a merge). Simplified mode (and before the first
-- build): the exported distinct_id, or the device's user when that is the device's own id. Events of days
-- the quality gate holds back (raw.load_log.gate = 'held') are left out: no analysis reads them until the
-- day is loaded again and passes.
create or replace view core.identified_events as
select e.*,
       case when (select max(mode) from core.identity_state) = 'original'
                 then coalesce(c.user_key, e.distinct_id)
            when m.user_id is not null
                 and (e.distinct_id = e.device_id or e.distinct_id = '$device:' || e.device_id)
                 then m.user_id
            else e.distinct_id end as user_key
from raw.events e
left join core.identity_clusters c on c.distinct_id = e.distinct_id
left join core.identity_map m on m.device_id = e.device_id
where e.event_date not in (select event_date from raw.load_log where gate = 'held');
