-- A breakout plan prepared before the session (groups, tasks, who goes
-- where, minutes), opened by a host with one click when the time comes.
create table breakout_plans (
    session_id bigint primary key references sessions(id),
    plan text not null,                    -- JSON, as sent to breakout_open
    updated_by bigint references users(id),
    updated_at bigint not null
);
