-- Private calendar subscriptions (docs/calendar.md). One row per person and
-- scope ('mine': the sessions they attend or present; 'programme': every
-- published session, for organisers; 'series:<name>': one series, for
-- organisers). The token is the only secret in the feed's URL; resetting it
-- replaces the row's token, so the old URL answers 404 from then on.
create table calendar_feeds (
    id integer primary key,
    user_id integer not null references users(id) on delete cascade,
    scope text not null,
    token text not null unique,
    created_at integer not null,
    unique (user_id, scope)
);
