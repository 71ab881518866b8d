-- Sharing one record entry (docs/record.md): a random token in a link that
-- shows the entry, its reflection and evidence to whoever holds it, until
-- the owner stops sharing (the token is cleared). Null: private.
alter table record_entries add column shared_as text;
create unique index record_entries_shared on record_entries(shared_as);
