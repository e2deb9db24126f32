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

-- name: rebuild
-- Rebuilt whole from raw.events (two narrow columns): a merge seen on a later day re-attributes earlier
-- anonymous events too, as Mixpanel's retroactive merge does.
create or replace table core.identity_map as
select device_id, arg_min(user_id, time) as user_id, min(time) as merged_at
from raw.events
where device_id is not null and user_id is not null
  and event_date not in (select event_date from raw.load_log where gate = 'held')
group by device_id;

-- name: special_events
-- The ID-management events of every day not held, with their ids (empty and missing ids dropped): an
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
      and event_date not in (select event_date from raw.load_log where gate = 'held')
)
select event_date, time, insert_id, event, ids
from special
where case when event = '$merge' then len(ids) >= 2
           else ids[1] is not null and ids[2] is not null end;

-- name: special_counts
select event, count(*) from hc_identity_special group by event;

-- name: current_edges
-- The edges of those events (self-edges dropped), in the order they are applied: event time, then insert_id.
create or replace temp table hc_identity_edges as
select event_date, time, insert_id, kind, seq, a, case when kind = 'merge' then ids[seq + 1] else ids[2] end as b
from (select event_date, time, insert_id, ids, ids[1] as a,
             case event when '$identify' then 'identify' when '$create_alias' then 'alias' else 'merge' end as kind,
             unnest(case when event = '$merge' then range(1, len(ids)) else [0] end)::integer as seq
      from hc_identity_special)
where a <> case when kind = 'merge' then ids[seq + 1] else ids[2] end;

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
