-- Recordings of live sessions (see docs/recording.md). The media files and
-- the timeline live in a directory per recording; these rows say which
-- recordings exist, who may see them, and how far each person watched.
create table recordings (
    id text primary key,                   -- 32 random hex digits: also the directory name
    session_id integer not null references sessions(id),
    status text not null,                  -- recording, ready, recovered (finished after a crash)
    started_at integer not null,            -- Unix ms
    stopped_at integer,
    duration_ms integer,
    bytes integer not null default 0,
    started_by integer references users(id),
    -- The single-file download made in the background (ffmpeg): none, working, ready, failed.
    download_status text not null default 'none',
    download_progress integer not null default 0, -- percent, while working
    -- Who may watch: the session's participants (registrants, presenters,
    -- organisers), or everyone signed in once an organiser opens it.
    open_to text not null default 'participants'
);
create index recordings_session on recordings(session_id);

-- One row per published track while it was recorded: its WebM file, and
-- where it starts on the recording's clock.
create table recording_tracks (
    recording_id text not null references recordings(id),
    file text not null,                    -- e.g. 3-video-1.webm
    participant_id integer not null,
    name text not null,
    kind text not null,                    -- audio, video
    start_ms integer not null,              -- from the recording's start
    duration_ms integer,                    -- null while it is being written
    bytes integer,
    primary key (recording_id, file)
);

-- What each person watched: [start_ms, end_ms) on the recording's clock.
-- The player grows a segment while it plays, so a segment is keyed by its
-- start and only ever extended.
create table replay_segments (
    recording_id text not null references recordings(id),
    user_id integer not null references users(id),
    start_ms integer not null,
    end_ms integer not null,
    updated_at integer not null,
    primary key (recording_id, user_id, start_ms)
);

-- Recording starts by itself when a host takes the room live.
alter table sessions add column record_automatically integer not null default 0;
