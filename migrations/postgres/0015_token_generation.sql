-- Signing out on the server (src/auth): every session token carries the
-- generation it was issued in, and the token extractor compares it with this
-- column on each request (the row is loaded anyway). Signing out, resetting
-- the password and removing the account raise it, so every token issued
-- before stops working at once instead of running on for its 14 days.
alter table users add column token_generation bigint not null default 0;
