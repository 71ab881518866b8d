-- Attendance (docs/attendance.md): the share of the scheduled time, in whole
-- percent, that counts as attended live (and of a recording's length, by
-- replay). Organisers change it per session.
alter table sessions add column attendance_threshold bigint not null default 75;
