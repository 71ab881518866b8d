//! iCalendar (RFC 5545/5546) built with the `icalendar` crate: the
//! invitations attached to emails, and the subscription feeds.
//!
//! Each registration has one stable UID; a change of time, title or
//! description sends a REQUEST with a higher SEQUENCE, a cancellation sends a
//! CANCEL with the same UID, so calendar clients update the one event rather
//! than adding another. A feed lists each session once, under a UID of its
//! own (`session-<id>@<host>`), with the session's SEQUENCE, in the
//! programme's time zone.

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use icalendar::{Calendar, CalendarDateTime, Component, Event, EventLike, EventStatus, Property};

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

/// What an invitation and a feed entry both say about a session.
struct Common<'a> {
    uid: &'a str,
    sequence: u32,
    title: &'a str,
    description: &'a str,
    url: &'a str,
    status: EventStatus,
}

fn event(c: &Common) -> Event {
    let description = format!("{}\n\nJoin: {}", c.description, c.url);
    Event::new()
        .uid(c.uid)
        .sequence(c.sequence)
        .summary(c.title)
        .description(&description)
        .location(c.url)
        .url(c.url)
        .timestamp(Utc::now())
        .status(c.status)
        .done()
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
    let event = event(&Common {
        uid: invite.uid,
        sequence: invite.sequence,
        title: invite.title,
        description: invite.description,
        url: invite.url,
        status: match invite.method {
            Method::Request => EventStatus::Confirmed,
            Method::Cancel => EventStatus::Cancelled,
        },
    })
    .starts(invite.starts_at)
    .ends(invite.ends_at)
    .append_property(organizer)
    .append_property(attendee)
    .done();
    let mut calendar = Calendar::new();
    calendar.append_property(Property::new("METHOD", invite.method.as_str()));
    calendar.push(event);
    calendar.done().to_string()
}

/// How a session stands in a feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedStatus {
    Confirmed,
    /// The person is on the waiting list.
    Tentative,
    /// The session was cancelled: kept in the feed (rather than dropped) so
    /// that a client which shows it says "cancelled" instead of the event
    /// silently vanishing.
    Cancelled,
}

/// One session in a subscription feed.
pub struct FeedEntry {
    pub uid: String,
    pub sequence: u32,
    pub title: String,
    pub description: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub url: String,
    pub status: FeedStatus,
}

/// A subscription feed (`METHOD:PUBLISH`) named `name`, its times given in
/// `zone` with the VTIMEZONE that defines it, so Outlook and Google Calendar
/// show the programme's local times and follow its daylight-saving changes.
pub fn render_feed(name: &str, zone: Tz, entries: &[FeedEntry]) -> String {
    let local = |t: DateTime<Utc>| CalendarDateTime::WithTimezone {
        date_time: t.with_timezone(&zone).naive_local(),
        tzid: zone.name().to_string(),
    };
    let mut calendar = Calendar::empty();
    calendar
        .append_property(Property::new("VERSION", "2.0"))
        .append_property(Property::new("PRODID", "-//Staffroom//Calendar feed//EN"))
        .append_property(Property::new("CALSCALE", "GREGORIAN"))
        .append_property(Property::new("METHOD", "PUBLISH"))
        .name(name)
        .append_property(Property::new("X-WR-TIMEZONE", zone.name()))
        // Outlook and Apple read these as "check again every hour"; Google keeps its own pace.
        .append_property(Property::new("REFRESH-INTERVAL", "PT1H").add_parameter("VALUE", "DURATION").done())
        .append_property(Property::new("X-PUBLISHED-TTL", "PT1H"));
    for e in entries {
        let cancelled = e.status == FeedStatus::Cancelled;
        let title = if cancelled { format!("Cancelled: {}", e.title) } else { e.title.clone() };
        let event = event(&Common {
            uid: &e.uid,
            sequence: e.sequence,
            title: &title,
            description: &e.description,
            url: &e.url,
            status: match e.status {
                FeedStatus::Confirmed => EventStatus::Confirmed,
                FeedStatus::Tentative => EventStatus::Tentative,
                FeedStatus::Cancelled => EventStatus::Cancelled,
            },
        })
        .starts(local(e.starts_at))
        .ends(local(e.ends_at))
        // A subscribed event takes no time away from the person's availability once cancelled.
        .append_property(Property::new("TRANSP", if cancelled { "TRANSPARENT" } else { "OPAQUE" }))
        .done();
        calendar.push(event);
    }
    let text = calendar.done().to_string();
    let from = entries.iter().map(|e| e.starts_at).min().unwrap_or_else(Utc::now);
    let to = entries.iter().map(|e| e.ends_at).max().unwrap_or_else(Utc::now);
    // The VTIMEZONE holds only offsets and names we make, never user text,
    // so it is placed as text ahead of the first event (or the end).
    let at = text.find("BEGIN:VEVENT").or_else(|| text.find("END:VCALENDAR")).unwrap_or(text.len());
    format!("{}{}{}", &text[..at], vtimezone(zone, from, to), &text[at..])
}

/// The VTIMEZONE for `zone` over the years `from` to `to` (one before and one
/// after, for clients that look around the events): each change of offset
/// found in chrono-tz's tables becomes a STANDARD or DAYLIGHT with its own
/// DTSTART, so no recurrence rule has to be guessed.
fn vtimezone(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    use chrono::Datelike;
    let year_start = |y: i32| Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).single().unwrap_or(from);
    let start = year_start(from.year() - 1);
    let end = year_start(to.year() + 2);
    let offset_at = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc());
    let seconds_at = |t: DateTime<Utc>| offset_at(t).fix().local_minus_utc();
    let mut out = format!("BEGIN:VTIMEZONE\r\nTZID:{}\r\n", zone.name());
    let first = seconds_at(start);
    out.push_str(&observance(&offset_at(start), start.naive_utc() + Duration::seconds(first.into()), first, first));
    let mut t = start;
    while t < end {
        let next = t + Duration::days(1);
        let (before, after) = (seconds_at(t), seconds_at(next));
        if before != after {
            // The change lies within (t, next]: find its second.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if seconds_at(mid) == before {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let wall = hi.naive_utc() + Duration::seconds(before.into());
            out.push_str(&observance(&offset_at(hi), wall, before, seconds_at(hi)));
        }
        t = next;
    }
    out.push_str("END:VTIMEZONE\r\n");
    out
}

fn observance(offset: &chrono_tz::TzOffset, wall: NaiveDateTime, from: i32, to: i32) -> String {
    let kind = if offset.dst_offset().is_zero() { "STANDARD" } else { "DAYLIGHT" };
    let name = offset.abbreviation().map(|n| format!("TZNAME:{n}\r\n")).unwrap_or_default();
    format!(
        "BEGIN:{kind}\r\nDTSTART:{}\r\nTZOFFSETFROM:{}\r\nTZOFFSETTO:{}\r\n{name}END:{kind}\r\n",
        wall.format("%Y%m%dT%H%M%S"),
        utc_offset(from),
        utc_offset(to)
    )
}

/// `+0100`, `-0330`, or `+053030` when the offset has seconds (RFC 5545 3.3.14).
fn utc_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if sec == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{sec:02}")
    }
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

    #[test]
    fn a_feed_gives_local_times_and_the_zone_s_daylight_saving_changes() {
        let start = DateTime::parse_from_rfc3339("2026-07-01T15:00:00Z").unwrap().with_timezone(&Utc);
        let text = render_feed(
            "Staffroom: my sessions",
            chrono_tz::Europe::London,
            &[FeedEntry {
                uid: "session-7@staffroom.test".into(),
                sequence: 2,
                title: "Behaviour, calmly".into(),
                description: "A masterclass".into(),
                starts_at: start,
                ends_at: start + Duration::hours(1),
                url: "https://staffroom.test/session.html?id=7".into(),
                status: FeedStatus::Cancelled,
            }],
        );
        assert!(text.contains("DTSTART;TZID=Europe/London:20260701T160000"), "{text}");
        assert!(text.contains("STATUS:CANCELLED") && text.contains("SUMMARY:Cancelled: Behaviour"), "{text}");
        // 2026: clocks go forward at 01:00 GMT on 29 March and back at 02:00 BST on 25 October.
        assert!(
            text.contains(
                "BEGIN:DAYLIGHT\r\nDTSTART:20260329T010000\r\nTZOFFSETFROM:+0000\r\nTZOFFSETTO:+0100\r\nTZNAME:BST"
            ),
            "{text}"
        );
        assert!(
            text.contains("BEGIN:STANDARD\r\nDTSTART:20261025T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0000"),
            "{text}"
        );
        assert!(text.find("BEGIN:VTIMEZONE").unwrap() < text.find("BEGIN:VEVENT").unwrap());
    }

    #[test]
    fn offsets_are_written_with_their_sign_and_seconds_when_they_have_them() {
        assert_eq!(utc_offset(3600), "+0100");
        assert_eq!(utc_offset(-12600), "-0330");
        assert_eq!(utc_offset(19830), "+053030");
        assert_eq!(utc_offset(0), "+0000");
    }
}
