-- A live room's heartbeat: while a room is open the server writes the time
-- here every few seconds (STAFFROOM_ROOM_HEARTBEAT_MS, default 15 s), and
-- removes the row when the room closes. A row found at start-up means the
-- server stopped without closing the room: everyone still in it gets a
-- leave (reason server_restart) at the last heartbeat, so nobody stays
-- "present" for ever (docs/attendance.md).
create table room_heartbeats (
    session_id bigint primary key references sessions(id),
    at bigint not null
);
