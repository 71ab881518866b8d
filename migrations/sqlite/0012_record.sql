-- The professional record (docs/record.md): what a participant learned,
-- linked to their development needs and their school's priorities, with
-- their reflections, evidence and certificates. Every row belongs to one
-- person; organisers never read these tables. Deleting an account deletes
-- its record (on delete cascade). The PostgreSQL twin differs only in types.

-- One entry per attended session (made by the server from attendance, kind
-- 'session') or per piece of other CPD added by hand.
create table record_entries (
    id integer primary key autoincrement,
    user_id integer not null references users(id) on delete cascade,
    kind text not null,                    -- session, course, reading, coaching, other
    session_id integer references sessions(id),
    title text not null,
    provider text not null default '',     -- presenters, or who ran the course
    occurred_at integer not null,          -- when it happened
    minutes integer not null,              -- CPD minutes credited
    how text,                              -- live, replay (session entries)
    status text,                           -- attended, partly (session entries)
    minutes_live integer not null default 0,
    minutes_in_groups integer not null default 0,
    minutes_replayed integer not null default 0,
    groups text not null default '',       -- breakout groups joined, one per line
    created_at integer not null,
    updated_at integer not null
);
create unique index record_entries_session on record_entries(user_id, session_id);
create index record_entries_user on record_entries(user_id, occurred_at);

-- The participant's own development needs and their school's priorities.
create table record_goals (
    id integer primary key autoincrement,
    user_id integer not null references users(id) on delete cascade,
    kind text not null,                    -- need, priority
    title text not null,
    created_at integer not null,
    updated_at integer not null
);
create unique index record_goals_title on record_goals(user_id, kind, lower(title));

-- Which needs and priorities an entry served.
create table record_links (
    entry_id integer not null references record_entries(id) on delete cascade,
    goal_id integer not null references record_goals(id) on delete cascade,
    primary key (entry_id, goal_id)
);

-- The reflection on an entry: private to its owner.
create table record_reflections (
    entry_id integer primary key references record_entries(id) on delete cascade,
    learned text not null default '',
    keep_doing text not null default '',
    to_grow text not null default '',
    to_change text not null default '',
    impact text not null default '',       -- written later: the effect on practice
    created_at integer not null,
    updated_at integer not null
);

-- Evidence of impact: a link, or a file kept under the data folder.
create table record_evidence (
    id integer primary key autoincrement,
    entry_id integer not null references record_entries(id) on delete cascade,
    kind text not null,                    -- link, file
    url text,                              -- for a link
    file_name text,                        -- as uploaded, for a file
    content_type text,
    bytes integer,
    stored_as text,                        -- file name under <data>/evidence
    created_at integer not null
);
create index record_evidence_entry on record_evidence(entry_id);

-- Certificates of attendance, issued as signed Open Badges 3.0 credentials.
-- The row is what the public verification page confirms.
create table certificates (
    id text primary key,                   -- 32 random hex digits, in the verification URL
    user_id integer not null references users(id) on delete cascade,
    session_id integer not null references sessions(id),
    holder_name text not null,
    session_title text not null,
    session_starts_at integer not null,
    minutes integer not null,
    credential text not null,              -- the signed VC-JWT
    issued_at integer not null
);
create unique index certificates_holder on certificates(user_id, session_id);

-- The key the server signs credentials with (RS256, as Open Badges 3.0
-- requires every verifier to support). Made on first use, kept for ever so
-- issued credentials keep verifying.
create table issuer_keys (
    id text primary key,                   -- the JWK thumbprint, used as kid
    private_key text not null,             -- PKCS#1 DER, base64
    public_jwk text not null,
    created_at integer not null
);
