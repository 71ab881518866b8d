//! The emails Staffroom sends, each as plain text plus HTML from one source.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{ics, Email};

/// What an email needs to know about a session.
pub struct SessionFacts<'a> {
    pub id: i64,
    pub title: &'a str,
    pub description: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The session page, where people join.
    pub url: String,
}

/// The person it goes to, in their own time zone.
pub struct Recipient<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub zone: Tz,
}

/// "Tuesday 1 December 2026, 16:00–17:00 GMT", in the reader's zone.
pub fn when(s: &SessionFacts, zone: Tz) -> String {
    let start = s.starts_at.with_timezone(&zone);
    let end = s.ends_at.with_timezone(&zone);
    if start.date_naive() == end.date_naive() {
        format!(
            "{}, {}–{} {}",
            start.format("%A %-d %B %Y"),
            start.format("%H:%M"),
            end.format("%H:%M"),
            start.format("%Z")
        )
    } else {
        format!(
            "{} {} – {} {}",
            start.format("%A %-d %B %Y, %H:%M"),
            start.format("%Z"),
            end.format("%A %-d %B %Y, %H:%M"),
            end.format("%Z")
        )
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One letter, rendered to text and HTML alike.
struct Letter {
    greeting: String,
    paragraphs: Vec<String>,
    action: Option<(String, String)>,
    footer: Vec<(String, Option<String>)>,
}

impl Letter {
    fn new(name: &str) -> Letter {
        Letter { greeting: format!("Hello {name},"), paragraphs: vec![], action: None, footer: vec![] }
    }
    fn para(mut self, p: impl Into<String>) -> Letter {
        self.paragraphs.push(p.into());
        self
    }
    fn action(mut self, label: &str, url: &str) -> Letter {
        self.action = Some((label.into(), url.into()));
        self
    }
    fn footer(mut self, text: &str, link: Option<&str>) -> Letter {
        self.footer.push((text.into(), link.map(Into::into)));
        self
    }
    fn render(&self) -> (String, String) {
        let mut text = format!("{}\n\n", self.greeting);
        let mut html = String::from(
            "<!doctype html><html><body style=\"font-family:system-ui,sans-serif;line-height:1.5;color:#1d2433;max-width:36em\">",
        );
        html.push_str(&format!("<p>{}</p>", escape(&self.greeting)));
        for p in &self.paragraphs {
            text.push_str(p);
            text.push_str("\n\n");
            html.push_str(&format!("<p>{}</p>", escape(p).replace('\n', "<br>")));
        }
        if let Some((label, url)) = &self.action {
            text.push_str(&format!("{label}: {url}\n\n"));
            html.push_str(&format!(
                "<p><a href=\"{}\" style=\"display:inline-block;background:#1f5f8b;color:#fff;padding:.6em 1.2em;border-radius:6px;text-decoration:none\">{}</a></p>",
                escape(url),
                escape(label)
            ));
        }
        text.push_str("— Staffroom\n");
        html.push_str("<p>— Staffroom</p>");
        for (line, link) in &self.footer {
            match link {
                Some(url) => {
                    text.push_str(&format!("\n{line}: {url}"));
                    html.push_str(&format!(
                        "<p style=\"font-size:.85em;color:#5b6475\"><a href=\"{}\">{}</a></p>",
                        escape(url),
                        escape(line)
                    ));
                }
                None => {
                    text.push_str(&format!("\n{line}"));
                    html.push_str(&format!("<p style=\"font-size:.85em;color:#5b6475\">{}</p>", escape(line)));
                }
            }
        }
        text.push('\n');
        html.push_str("</body></html>");
        (text, html)
    }
}

fn email(kind: &'static str, to: &Recipient, subject: String, letter: Letter) -> Email {
    let (text, html) = letter.render();
    Email {
        kind,
        to_email: to.email.to_string(),
        to_name: to.name.to_string(),
        subject,
        text,
        html,
        ics: None,
        session_id: None,
        batch_id: None,
    }
}

pub fn verify_email(to_email: &str, name: &str, link: &str) -> Email {
    let to = Recipient { email: to_email, name, zone: Tz::UTC };
    let letter = Letter::new(name)
        .para("Welcome to Staffroom. Please confirm this is your email address, so we can keep your professional record and certificates.")
        .action("Confirm my email address", link)
        .footer("If you did not sign up, ignore this email.", None);
    email("verify", &to, "Confirm your email address".into(), letter)
}

pub fn reset_password(to_email: &str, name: &str, link: &str) -> Email {
    let to = Recipient { email: to_email, name, zone: Tz::UTC };
    let letter = Letter::new(name)
        .para("Someone asked to reset the password of your Staffroom account. The link works once, for two hours.")
        .action("Choose a new password", link)
        .footer("If it was not you, ignore this email: your password stays as it is.", None);
    email("reset", &to, "Reset your Staffroom password".into(), letter)
}

/// The calendar part of a session email for one registration.
pub struct CalendarEntry<'a> {
    pub uid: &'a str,
    pub sequence: u32,
    pub organiser_email: &'a str,
}

fn with_calendar(mut e: Email, s: &SessionFacts, to: &Recipient, cal: &CalendarEntry, method: ics::Method) -> Email {
    let text = ics::render(&ics::Invite {
        method,
        uid: cal.uid,
        sequence: cal.sequence,
        title: s.title,
        description: s.description,
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        url: &s.url,
        organiser_email: cal.organiser_email,
        attendee_email: to.email,
        attendee_name: to.name,
    });
    e.ics = Some((text, method));
    e.session_id = Some(s.id);
    e
}

pub fn confirmation(s: &SessionFacts, to: &Recipient, cal: &CalendarEntry) -> Email {
    let letter = Letter::new(to.name)
        .para(format!("You have a place at “{}”.", s.title))
        .para(format!("When: {}", when(s, to.zone)))
        .para("The calendar invitation is attached. Join from the session page when it starts.")
        .action("Open the session page", &s.url);
    let e = email("confirmation", to, format!("You're registered: {}", s.title), letter);
    with_calendar(e, s, to, cal, ics::Method::Request)
}

pub fn promoted(s: &SessionFacts, to: &Recipient, cal: &CalendarEntry) -> Email {
    let letter = Letter::new(to.name)
        .para(format!("Good news: a place came free at “{}” and it is yours.", s.title))
        .para(format!("When: {}", when(s, to.zone)))
        .para("The calendar invitation is attached. If you can no longer come, cancel on the session page so the next person gets the place.")
        .action("Open the session page", &s.url);
    let e = email("promoted", to, format!("A place came free: {}", s.title), letter);
    with_calendar(e, s, to, cal, ics::Method::Request)
}

pub fn waitlisted(s: &SessionFacts, to: &Recipient, position: i64) -> Email {
    let letter = Letter::new(to.name)
        .para(format!("“{}” is full, so you are on the waiting list at position {position}.", s.title))
        .para(format!("When: {}", when(s, to.zone)))
        .para("If a place comes free it is given to you automatically and we email you with the calendar invitation.")
        .action("Open the session page", &s.url);
    let mut e = email("waitlisted", to, format!("On the waiting list: {}", s.title), letter);
    e.session_id = Some(s.id);
    e
}

/// The session changed after the person registered: its time (`moved`), or
/// only its title or description. Either way the attached REQUEST carries a
/// higher SEQUENCE, so calendars replace the event rather than keep the old one.
pub fn changed(s: &SessionFacts, to: &Recipient, cal: &CalendarEntry, moved: bool) -> Email {
    let letter = if moved {
        Letter::new(to.name)
            .para(format!("The time of “{}” has changed.", s.title))
            .para(format!("New time: {}", when(s, to.zone)))
    } else {
        Letter::new(to.name)
            .para(format!("The details of “{}” have changed.", s.title))
            .para(format!("When (unchanged): {}", when(s, to.zone)))
    };
    let letter = letter
        .para("The attached invitation updates the event in your calendar.")
        .action("Open the session page", &s.url);
    let subject = if moved { format!("New time: {}", s.title) } else { format!("Updated: {}", s.title) };
    let e = email("update", to, subject, letter);
    with_calendar(e, s, to, cal, ics::Method::Request)
}

/// `by_organiser`: the session itself was cancelled, rather than the registration.
pub fn cancelled(s: &SessionFacts, to: &Recipient, cal: &CalendarEntry, by_organiser: bool) -> Email {
    let letter = if by_organiser {
        Letter::new(to.name)
            .para(format!("We are sorry: “{}”, planned for {}, has been cancelled.", s.title, when(s, to.zone)))
            .para("The attached update removes it from your calendar.")
    } else {
        Letter::new(to.name)
            .para(format!("Your place at “{}” ({}) is cancelled.", s.title, when(s, to.zone)))
            .para("The attached update removes it from your calendar. You can register again while places remain.")
            .action("Open the session page", &s.url)
    };
    let e = email("cancel", to, format!("Cancelled: {}", s.title), letter);
    with_calendar(e, s, to, cal, ics::Method::Cancel)
}

pub fn reminder(s: &SessionFacts, to: &Recipient, soon: bool) -> Email {
    let lead = if soon { "starts within the hour" } else { "is tomorrow" };
    let letter = Letter::new(to.name)
        .para(format!("A reminder: “{}” {lead}.", s.title))
        .para(format!("When: {}", when(s, to.zone)))
        .para("Join from the session page; test your microphone and camera a few minutes before.")
        .action("Open the session page", &s.url);
    let subject = if soon { format!("Starting soon: {}", s.title) } else { format!("Tomorrow: {}", s.title) };
    let mut e = email("reminder", to, subject, letter);
    e.session_id = Some(s.id);
    e
}

/// To a registrant who missed the live session, once its recording is ready.
pub fn follow_up(s: &SessionFacts, to: &Recipient, replay_url: &str) -> Email {
    let letter = Letter::new(to.name)
        .para(format!("We missed you at “{}” ({}).", s.title, when(s, to.zone)))
        .para(
            "The session was recorded. Watch the replay when it suits you: the chat, the questions and the \
             chapters play alongside, and the time you watch counts towards your CPD record.",
        )
        .action("Watch the replay", replay_url);
    let mut e = email("follow-up", to, format!("The replay of {}", s.title), letter);
    e.session_id = Some(s.id);
    e
}

pub fn invitation(s: &SessionFacts, to: &Recipient, accept_url: &str, opt_out_url: &str, batch_id: i64) -> Email {
    let letter = Letter::new(if to.name.is_empty() { "there" } else { to.name })
        .para(format!("You are invited to “{}”, a free professional-learning session on Staffroom.", s.title))
        .para(format!("When: {}", when(s, to.zone)))
        .para(s.description.to_string())
        .action("Register in one click", accept_url)
        .footer("Don't want invitations from Staffroom? Opt out", Some(opt_out_url));
    let mut e = email("invitation", to, format!("Invitation: {}", s.title), letter);
    e.session_id = Some(s.id);
    e.batch_id = Some(batch_id);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_the_recipients_zone() {
        let start = DateTime::parse_from_rfc3339("2026-07-01T15:00:00Z").unwrap().with_timezone(&Utc);
        let s = SessionFacts {
            id: 1,
            title: "t",
            description: "",
            starts_at: start,
            ends_at: start + chrono::Duration::minutes(90),
            url: "u".into(),
        };
        assert_eq!(when(&s, chrono_tz::Europe::London), "Wednesday 1 July 2026, 16:00–17:30 BST");
        assert_eq!(when(&s, chrono_tz::UTC), "Wednesday 1 July 2026, 15:00–16:30 UTC");
    }

    #[test]
    fn html_is_escaped() {
        let (text, html) = Letter::new("<Ann>").para("a & b").render();
        assert!(text.contains("Hello <Ann>,"));
        assert!(html.contains("Hello &lt;Ann&gt;,") && html.contains("a &amp; b"));
    }
}
