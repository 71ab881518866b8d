-- People a host removed from a session and barred from coming back.
create table room_bars (
    session_id bigint not null references sessions(id),
    user_id bigint not null references users(id),
    barred_by bigint references users(id),
    at bigint not null,                   -- Unix milliseconds
    primary key (session_id, user_id)
);
