-- Live-room interaction: chat, questions with upvotes, and polls. Kept after
-- the session for the replay page and the organiser's exports. `at` columns
-- are Unix milliseconds, so a replay can place each message on the timeline.

create table chat_messages (
    id integer primary key autoincrement,
    session_id integer not null references sessions(id),
    user_id integer not null references users(id),
    body text not null,
    at integer not null,
    deleted_at integer,                    -- removed by a host: kept, never shown
    deleted_by integer references users(id)
);
create index chat_messages_session on chat_messages(session_id, id);

create table questions (
    id integer primary key autoincrement,
    session_id integer not null references sessions(id),
    user_id integer not null references users(id),
    body text not null,
    at integer not null,
    answered_at integer,
    highlighted integer not null default 0, -- at most one per session is 1
    deleted_at integer,
    deleted_by integer references users(id)
);
create index questions_session on questions(session_id, id);

create table question_votes (
    question_id integer not null references questions(id),
    user_id integer not null references users(id),
    at integer not null,
    primary key (question_id, user_id)
);

create table polls (
    id integer primary key autoincrement,
    session_id integer not null references sessions(id),
    created_by integer not null references users(id),
    question text not null,
    multiple integer not null default 0,   -- 1: several options may be chosen
    anonymous integer not null default 0,  -- 1: who voted for what is never shown or exported
    status text not null,                  -- draft, open, closed
    revealed integer not null default 0,   -- 1: attendees see the results
    created_at integer not null,
    opened_at integer,
    closed_at integer
);
create index polls_session on polls(session_id, id);

create table poll_options (
    id integer primary key autoincrement,
    poll_id integer not null references polls(id),
    position integer not null,
    label text not null
);
create index poll_options_poll on poll_options(poll_id, position);

-- One row per person per poll: the primary key is what makes "votes once" hold.
create table poll_ballots (
    poll_id integer not null references polls(id),
    user_id integer not null references users(id),
    at integer not null,
    primary key (poll_id, user_id)
);

create table poll_choices (
    poll_id integer not null references polls(id),
    user_id integer not null references users(id),
    option_id integer not null references poll_options(id),
    primary key (poll_id, user_id, option_id)
);
create index poll_choices_option on poll_choices(option_id);
