-- The live part of a session has an end even when no host presses End: the
-- room closes itself this long after the scheduled end (ms), and presence
-- is never counted past it. Stored per session when it is created (from
-- STAFFROOM_LIVE_GRACE_MS, default 30 minutes), so attendance can always be
-- rebuilt from the database alone, whatever the server's settings are now.
alter table sessions add column live_grace_ms integer not null default 1800000;
