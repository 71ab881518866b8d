//! iCalendar invitations (RFC 5545/5546) built with the `icalendar` crate.
//!
//! Each registration has one stable UID; a change of time sends a REQUEST with
//! a higher SEQUENCE, a cancellation sends a CANCEL with the same UID, so
//! calendar clients update the one event rather than adding another.

use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, Event, EventLike, EventStatus, Property};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Request,
    Cancel,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

pub struct Invite<'a> {
    pub method: Method,
    pub uid: &'a str,
    pub sequence: u32,
    pub title: &'a str,
    pub description: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The page to join from.
    pub url: &'a str,
    pub organiser_email: &'a str,
    pub attendee_email: &'a str,
    pub attendee_name: &'a str,
}

/// The calendar text, ready to attach as `text/calendar; method=...`.
pub fn render(invite: &Invite) -> String {
    let mut attendee = Property::new("ATTENDEE", format!("mailto:{}", invite.attendee_email));
    attendee
        .add_parameter("CN", invite.attendee_name)
        .add_parameter("ROLE", "REQ-PARTICIPANT")
        .add_parameter("PARTSTAT", "ACCEPTED");
    let mut organizer = Property::new("ORGANIZER", format!("mailto:{}", invite.organiser_email));
    organizer.add_parameter("CN", "Staffroom");
    let description = format!("{}\n\nJoin: {}", invite.description, invite.url);
    let event = Event::new()
        .uid(invite.uid)
        .sequence(invite.sequence)
        .summary(invite.title)
        .description(&description)
        .location(invite.url)
        .url(invite.url)
        .starts(invite.starts_at)
        .ends(invite.ends_at)
        .timestamp(Utc::now())
        .status(match invite.method {
            Method::Request => EventStatus::Confirmed,
            Method::Cancel => EventStatus::Cancelled,
        })
        .append_property(organizer)
        .append_property(attendee)
        .done();
    let mut calendar = Calendar::new();
    calendar.append_property(Property::new("METHOD", invite.method.as_str()));
    calendar.push(event);
    calendar.done().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_keeps_the_uid_and_says_cancel() {
        let start = DateTime::parse_from_rfc3339("2026-12-01T16:00:00Z").unwrap().with_timezone(&Utc);
        let text = render(&Invite {
            method: Method::Cancel,
            uid: "reg-1@staffroom",
            sequence: 3,
            title: "Behaviour, calmly",
            description: "A masterclass",
            starts_at: start,
            ends_at: start + chrono::Duration::hours(1),
            url: "http://localhost/sessions/1",
            organiser_email: "no-reply@staffroom.localhost",
            attendee_email: "ann@school.org",
            attendee_name: "Ann",
        });
        assert!(text.contains("METHOD:CANCEL"));
        assert!(text.contains("UID:reg-1@staffroom"));
        assert!(text.contains("SEQUENCE:3"));
        assert!(text.contains("DTSTART:20261201T160000Z"));
    }
}
