-- What the server delivered of each recorded file to each person: the byte
-- ranges [start_byte, end_byte) it sent them, merged (overlapping or touching
-- ranges are one row), at most 64 per person and file (docs/attendance.md,
-- "Replay crediting"). Replay credit is bounded by the media time these
-- bytes hold, so a player cannot report more than it fetched.
create table replay_served (
    recording_id text not null references recordings(id),
    user_id integer not null references users(id),
    file text not null,
    start_byte integer not null,
    end_byte integer not null,
    updated_at integer not null,            -- Unix ms
    primary key (recording_id, user_id, file, start_byte)
);
