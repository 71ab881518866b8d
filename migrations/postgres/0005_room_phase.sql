-- When a host took the room live, and when a host ended it (Unix ms): the
-- lobby holds attendees until `live_at`; after `ended_at` nobody can enter.
alter table sessions add column live_at bigint;
alter table sessions add column ended_at bigint;
