-- People a host removed from a session and barred from coming back.
create table room_bars (
    session_id integer not null references sessions(id),
    user_id integer not null references users(id),
    barred_by integer references users(id),
    at integer not null,                   -- Unix milliseconds
    primary key (session_id, user_id)
);
