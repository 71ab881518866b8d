-- An organiser can make a presenter a co-host: they may take the room live,
-- record and run breakout groups (the grant travels in their room token).
alter table session_presenters add column cohost bigint not null default 0;
