-- Breakout groups: every move between the main room and a group, as it
-- happens (Unix ms), so attendance and the record can show the group work.
create table breakout_moves (
    id integer primary key autoincrement,
    session_id integer not null references sessions(id),
    user_id integer not null references users(id),
    group_name text,                       -- null: back in the main room
    at integer not null
);
create index breakout_moves_session on breakout_moves(session_id, at);

-- Chat inside a group stays in the group: the group's id within the breakout
-- (null for the main room).
alter table chat_messages add column breakout_group integer;
