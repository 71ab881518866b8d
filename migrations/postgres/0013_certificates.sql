-- Certificates (docs/certificates.md): the presenters as printed on the
-- certificate, and which issuer key signs new credentials.

-- Kept with the certificate so a later change to the session's presenters
-- does not change a certificate already issued.
alter table certificates add column presenters text not null default '';

-- 1 for the key that signs new credentials, null for a retired one (which
-- still verifies what it signed). The unique index makes two servers issuing
-- their first certificate at once agree on one key: the second insert does
-- nothing and both read back the first.
alter table issuer_keys add column in_use bigint;
create unique index issuer_keys_in_use on issuer_keys(in_use);
