-- Live rooms: every join and leave, written as it happens, so attendance and
-- the professional record can be rebuilt from it. Append-only: `at` is the
-- moment of the event (and of the row), in Unix milliseconds, because a drop
-- and a rejoin often fall within the same second.

create table room_events (
    id integer primary key autoincrement,
    session_id integer not null references sessions(id),
    user_id integer not null references users(id),
    kind text not null,                    -- join, leave
    reason text,                           -- for a leave: left, dropped, removed, ended
    at integer not null
);
create index room_events_session on room_events(session_id, at);
create index room_events_user on room_events(user_id, at);
