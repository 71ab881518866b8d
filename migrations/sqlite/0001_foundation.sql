-- Foundation schema: accounts, the programme, registration, invitations and
-- the mail outbox. Times are Unix seconds (UTC) unless a column says otherwise.
-- The PostgreSQL twin in ../postgres differs only in types.

create table users (
    id integer primary key autoincrement,
    email text not null unique,            -- stored lower-cased
    name text not null,
    school text not null default '',
    stage text not null,                   -- trainee, ect, teacher, middle_leader, senior_leader, other
    time_zone text,                        -- IANA name; null means the programme's zone
    password_hash text not null,
    is_organiser integer not null default 0,
    email_verified_at integer,
    created_at integer not null,
    updated_at integer not null
);

create table sessions (
    id integer primary key autoincrement,
    title text not null,
    description text not null default '',
    kind text not null,                    -- masterclass, webinar, coaching, workshop
    series text,                           -- series or strand, free text
    subject text,
    phase text,
    starts_at integer not null,
    ends_at integer not null,
    capacity integer not null,
    status text not null,                  -- draft, published, cancelled
    -- iCalendar SEQUENCE: raised whenever the time changes or the session is cancelled.
    ics_sequence integer not null default 0,
    created_by integer not null references users(id),
    created_at integer not null,
    updated_at integer not null
);
create index sessions_status_start on sessions(status, starts_at);

create table session_audiences (
    session_id integer not null references sessions(id) on delete cascade,
    audience text not null,
    primary key (session_id, audience)
);

create table session_presenters (
    session_id integer not null references sessions(id) on delete cascade,
    user_id integer not null references users(id),
    primary key (session_id, user_id)
);

create table registrations (
    id integer primary key autoincrement,
    session_id integer not null references sessions(id),
    user_id integer not null references users(id),
    status text not null,                  -- confirmed, waitlisted, cancelled
    -- Order on the waitlist, in Unix milliseconds: set when (re)joining it.
    queued_at integer not null,
    ics_uid text not null unique,
    reminded_24h_at integer,
    reminded_1h_at integer,
    created_at integer not null,
    updated_at integer not null,
    unique (session_id, user_id)
);
create index registrations_session_status on registrations(session_id, status, queued_at);
create index registrations_user on registrations(user_id);

create table invitation_batches (
    id integer primary key autoincrement,
    session_id integer not null references sessions(id),
    created_by integer not null references users(id),
    -- JSON {"rejected": [{line, text, reason}], "skipped": [{line, email, reason}]}:
    -- lines that could not be used, and addresses left out on purpose.
    report text not null default '{}',
    created_at integer not null
);

create table invitations (
    id integer primary key autoincrement,
    batch_id integer not null references invitation_batches(id),
    session_id integer not null references sessions(id),
    email text not null,
    name text not null default '',
    school text not null default '',
    token text not null unique,
    accepted_at integer,
    created_at integer not null,
    unique (session_id, email)
);

-- Addresses that asked never to receive invitations again.
create table opt_outs (
    email text primary key,
    created_at integer not null
);

-- Every email is written here in the same transaction as the change causing it.
create table outbox (
    id integer primary key autoincrement,
    message_id text not null unique,       -- the Message-ID header, stable across retries
    kind text not null,                    -- verify, reset, confirmation, waitlisted, promoted, update, cancel, reminder, invitation
    to_email text not null,
    to_name text not null default '',
    subject text not null,
    text_body text not null,
    html_body text not null,
    ics text,                              -- iCalendar attachment, if any
    ics_method text,                       -- REQUEST or CANCEL
    session_id integer references sessions(id),
    batch_id integer references invitation_batches(id),
    status text not null default 'queued', -- queued, sending, sent, failed
    attempts integer not null default 0,
    next_attempt_at integer not null,
    locked_until integer,
    last_error text,
    sent_at integer,
    created_at integer not null
);
create index outbox_due on outbox(status, next_attempt_at);
create index outbox_batch on outbox(batch_id, status);
