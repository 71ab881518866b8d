//! API integration tests: every test runs against SQLite and PostgreSQL, with
//! a real SMTP server receiving the mail.

mod helpers;

mod accounts;
mod attendance;
mod bad_input;
mod calendar;
mod certificate_key;
mod certificates;
mod interaction;
mod invitations;
mod limits;
mod mail_delivery;
mod openapi;
mod programme;
mod record;
mod record_exports;
mod registration;
mod throttles;
mod verification;
