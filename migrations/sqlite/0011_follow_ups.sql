-- After a session, a confirmed registrant who never joined gets one email
-- with the replay link (once a recording is ready). The mark is set in the
-- same transaction that queues the email, so it goes once, even across
-- restarts (docs/attendance.md).
alter table registrations add column followed_up_at integer;
