-- user_profiles: the Engage profiles snapshot (one row per profile), replaced whole. Parameter: $path.
-- name: replace_profiles
insert into raw.user_profiles
select "$distinct_id", "$properties",
       try_cast("$properties" ->> '$."$last_seen"' as timestamptz),
       now()
from read_ndjson($path, columns = {'$distinct_id': 'VARCHAR', '$properties': 'JSON'})
where "$distinct_id" is not null;
