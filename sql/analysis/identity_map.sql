-- identity_map: Mixpanel's simplified ID merge, replayed locally (grain: one row per $device_id).
-- A device belongs to the first $user_id it was seen with on an event carrying both; the exported
-- distinct_id is already canonical and wins whenever it is not the device's own id.

-- name: schema
create table if not exists core.identity_map (
    device_id  varchar not null,
    user_id    varchar not null,
    merged_at  timestamptz not null
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

-- name: identified_events
-- Every event with its user_key: the identity to count users by. Events of days the quality gate holds
-- back (raw.load_log.gate = 'held') are left out: no analysis reads them until the day is loaded again
-- and passes.
create or replace view core.identified_events as
select e.*,
       case when m.user_id is not null
                 and (e.distinct_id = e.device_id or e.distinct_id = '$device:' || e.device_id)
            then m.user_id
            else e.distinct_id end as user_key
from raw.events e
left join core.identity_map m on m.device_id = e.device_id
where e.event_date not in (select event_date from raw.load_log where gate = 'held');
