-- Settled attendance (docs/attendance.md, "Settled results"): when a
-- session's live part ends, each person's result is stored once, in the
-- transaction that stores the end, and the record and certificates read it.

-- When the results were stored (Unix ms); null while the session has not
-- been settled.
alter table sessions add column settled_at integer;

-- One row per person per session: confirmed registrants and everyone who
-- joined the room, as the rules counted them in the live window. Times in
-- Unix ms. Replay credit keeps arriving after the end, so it is not here:
-- it is read per person from replay_segments.
create table attendance_results (
    session_id integer not null references sessions(id),
    user_id integer not null references users(id),
    live_ms integer not null,
    group_ms integer not null,
    joined_at integer,                     -- first moment present while live
    left_at integer,                       -- last moment present while live
    scheduled_ms integer not null,         -- ends_at - starts_at when settled
    threshold_percent integer not null,    -- the threshold it was settled against
    live_status text not null,             -- attended, partly or absent, from live time alone
    settled_at integer not null,           -- when this row was (re)written
    primary key (session_id, user_id)
);
create index attendance_results_user on attendance_results(user_id);

-- Every change of a session's threshold, by whom and when; `resettled` is
-- 1 when the session was already settled and its results were rewritten.
create table attendance_corrections (
    id integer primary key autoincrement,
    session_id integer not null references sessions(id),
    by_user_id integer not null references users(id),
    at integer not null,                   -- Unix ms
    old_percent integer not null,
    new_percent integer not null,
    resettled integer not null
);
create index attendance_corrections_session on attendance_corrections(session_id, at);
