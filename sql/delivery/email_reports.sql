-- email_reports: each report profile's rendered digest per recipient and period (grain: one profile, period
-- and recipient), and the send ledger that makes every message go out at most once.

-- name: schema
create table if not exists delivery.email_reports (
    profile       varchar not null,
    cadence       varchar not null,     -- daily | weekly | monthly
    period_start  date not null,        -- the period's first and last local days
    period_end    date not null,
    recipient     varchar not null,     -- the address, lower-cased
    message_id    varchar not null,     -- deterministic: the same profile, period and recipient, the same id
    subject       varchar not null,
    html          varchar not null,     -- the rendered HTML (images referenced by cid:)
    text          varchar not null,     -- the plain-text part
    insight_ids   json not null,        -- the insights it shows, in order
    images        integer not null,     -- inline PNG charts attached
    rendered_at   timestamptz not null
);
create table if not exists delivery.email_sends (
    profile       varchar not null,
    cadence       varchar not null,
    period_start  date not null,
    period_end    date not null,
    recipient     varchar not null,
    message_id    varchar not null,
    status        varchar not null,     -- sending | sent | outbox | failed | refused | unsubscribed | skipped_empty | unknown
    attempts      integer not null,
    reason        varchar,              -- why it failed, was refused or skipped (never a secret)
    transport     varchar,              -- smtp host:port, or the .eml file in the outbox
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    primary key (profile, period_start, recipient)
);

-- name: delete_report
delete from delivery.email_reports where profile = $profile and period_start = $period_start and recipient = $recipient;

-- name: insert_report
insert into delivery.email_reports values ($profile, $cadence, $period_start, $period_end, $recipient, $message_id,
    $subject, $html, $text, $insight_ids, $images, now());

-- name: send_state
select status, attempts from delivery.email_sends
where profile = $profile and period_start = $period_start and recipient = $recipient;

-- name: claim_new
insert into delivery.email_sends values ($profile, $cadence, $period_start, $period_end, $recipient, $message_id,
    $status, 1, $reason, null, now(), now());

-- name: claim_again
update delivery.email_sends set status = $status, attempts = attempts + 1, reason = $reason, updated_at = now()
where profile = $profile and period_start = $period_start and recipient = $recipient;

-- name: record_outcome
update delivery.email_sends set status = $status, reason = $reason, transport = $transport, updated_at = now()
where profile = $profile and period_start = $period_start and recipient = $recipient;
