-- Mail delivered at least once and shown once (docs/mail.md).
--
-- One value per installation, made here once: with the row id it makes each
-- message's Message-ID and its file name, so a resend carries the same id and
-- a file left by another database (a reset, a restore) is never mistaken for
-- this row's. The domain (the right of the @) is the sender's, written by
-- the worker when it starts.
create table mail_install (
    id bigint primary key check (id = 1),
    install_id text not null,
    domain text not null default 'staffroom.localhost',
    created_at bigint not null
);
insert into mail_install (id, install_id, created_at)
values (1, substr(md5(random()::text || clock_timestamp()::text), 1, 16), extract(epoch from now())::bigint);

-- transactional (verification, reset, confirmations, reminders, replay) goes
-- ahead of bulk (invitations): each lane is claimed and paced on its own.
alter table outbox add column lane text not null default 'transactional';
update outbox set lane = 'bulk' where kind = 'invitation';

-- The worker holding a 'sending' row: it renews locked_until every few
-- seconds while it lives, and only it may record the outcome.
alter table outbox add column claimed_by text;

-- Set just before the message body goes to the SMTP server (after its 354);
-- a row found 'sending' with this set and no sent_at may or may not have been
-- accepted. Status now also takes 'skipped' (opted out before it was sent).
alter table outbox add column handoff_started_at bigint;

create index outbox_lane_due on outbox(lane, status, next_attempt_at);
