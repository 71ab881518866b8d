//! The printable certificate of attendance: an A4 landscape SVG with the
//! signed credential baked in (OB 3.0 baking, SVG), so the one file a
//! teacher keeps is both what they print and what a school can verify.
//!
//! SVG has no text wrapping, so long titles are wrapped here by words. All
//! text passes through [`escape`]: names and titles are user input.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::credential::{hours_and_minutes, ISSUER_NAME};

/// What goes on the page.
pub struct Page<'a> {
    pub id: &'a str,
    pub holder_name: &'a str,
    pub session_title: &'a str,
    pub session_starts_at: i64,
    pub presenters: &'a str,
    pub minutes: i64,
    pub issued_at: i64,
    pub verification_url: &'a str,
    pub credential: &'a str,
    /// The holder's zone: the date is the day they attended.
    pub zone: Tz,
}

/// Escapes text for XML character data and attribute values (the mail
/// templates' HTML escaping, which XML accepts), first dropping the control
/// characters XML 1.0 does not allow at all.
pub fn escape(text: &str) -> String {
    let allowed: String = text.chars().filter(|c| !c.is_control() || matches!(c, '\n' | '\t')).collect();
    crate::mail::templates::escape(&allowed)
}

/// Splits `text` into lines of about `width` characters at spaces; past
/// `max_lines`, the last line ends in an ellipsis.
fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![];
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            last.push('…');
        }
    }
    lines
}

fn day(secs: i64, zone: Tz) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().with_timezone(&zone).format("%A %-d %B %Y").to_string()
}

/// The whole SVG document.
pub fn render(p: &Page) -> String {
    const SERIF: &str = "Georgia, 'Times New Roman', serif";
    const SANS: &str = "'Helvetica Neue', Arial, sans-serif";
    let ink = "#1f3b4d";
    let gold = "#b8923a";
    let muted = "#5b6770";
    let mut body = String::new();
    let mut text = |y: i32, size: i32, family: &str, style: &str, fill: &str, content: &str| {
        body.push_str(&format!(
            r#"  <text x="561.5" y="{y}" text-anchor="middle" font-family="{family}" font-size="{size}" fill="{fill}" {style}>{}</text>
"#,
            escape(content)
        ));
    };
    text(118, 15, SANS, r#"letter-spacing="5""#, gold, "STAFFROOM · PROFESSIONAL LEARNING FOR TEACHERS");
    text(186, 52, SERIF, "", ink, "Certificate of Attendance");
    text(246, 19, SANS, "", muted, "This is to certify that");
    let name_size = match p.holder_name.chars().count() {
        0..=28 => 44,
        29..=40 => 36,
        _ => 28,
    };
    text(304, name_size, SERIF, r#"font-weight="bold""#, ink, p.holder_name);
    text(352, 19, SANS, "", muted, "attended the professional-learning webinar");
    let title = wrap(p.session_title, 52, 3);
    let mut y = 404;
    for line in &title {
        text(y, 29, SERIF, r#"font-style="italic""#, ink, line);
        y += 36;
    }
    y += 8;
    text(y, 19, SANS, "", muted, &format!("on {}", day(p.session_starts_at, p.zone)));
    y += 34;
    text(
        y,
        21,
        SANS,
        r#"font-weight="bold""#,
        ink,
        &format!("{} of professional learning credited", hours_and_minutes(p.minutes)),
    );
    if !p.presenters.is_empty() {
        y += 32;
        let presenters = wrap(&format!("Presented by {}", p.presenters), 90, 1);
        text(y, 17, SANS, "", muted, presenters.first().map(String::as_str).unwrap_or_default());
    }
    let issued = day(p.issued_at, p.zone);
    let credential = escape(p.credential);
    let url = escape(p.verification_url);
    let label = escape(&format!("Certificate of attendance: {} – {}", p.holder_name, p.session_title));
    format!(
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:openbadges="https://purl.imsglobal.org/ob/v3p0" width="297mm" height="210mm" viewBox="0 0 1123 794" role="img" aria-label="{label}">
  <openbadges:credential verify="{credential}"></openbadges:credential>
  <title>{label}</title>
  <rect width="1123" height="794" fill="#fbf8f1"/>
  <rect x="26" y="26" width="1071" height="742" fill="none" stroke="{ink}" stroke-width="8"/>
  <rect x="44" y="44" width="1035" height="706" fill="none" stroke="{gold}" stroke-width="1.5"/>
  <path d="M 461.5 134 H 661.5" stroke="{gold}" stroke-width="1.5"/>
  <path d="M 411.5 214 H 711.5" stroke="{gold}" stroke-width="0.75"/>
{body}  <g transform="translate(150 652)">
    <circle r="54" fill="{ink}"/>
    <circle r="46" fill="none" stroke="{gold}" stroke-width="1.5"/>
    <text y="-6" text-anchor="middle" font-family="{SERIF}" font-size="22" font-weight="bold" fill="#fbf8f1">CPD</text>
    <text y="18" text-anchor="middle" font-family="{SANS}" font-size="10" letter-spacing="2" fill="{gold}">ATTENDED</text>
  </g>
  <text x="240" y="640" font-family="{SERIF}" font-size="20" fill="{ink}">{issuer}</text>
  <text x="240" y="664" font-family="{SANS}" font-size="13" fill="{muted}">Issued on {issued}</text>
  <text x="1003" y="640" text-anchor="end" font-family="{SANS}" font-size="13" fill="{muted}">Certificate number</text>
  <text x="1003" y="662" text-anchor="end" font-family="monospace" font-size="14" fill="{ink}">{id}</text>
  <text x="561.5" y="718" text-anchor="middle" font-family="{SANS}" font-size="13" fill="{muted}">Check this certificate, and its digital signature, at</text>
  <text x="561.5" y="738" text-anchor="middle" font-family="monospace" font-size="13" fill="{ink}">{url}</text>
</svg>
"##,
        issuer = escape(ISSUER_NAME),
        id = escape(p.id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped() {
        assert_eq!(escape(r#"<Tom & "Jerry's">"#), "&lt;Tom &amp; &quot;Jerry&#39;s&quot;&gt;");
        assert_eq!(escape("a\u{0}b"), "ab");
    }

    #[test]
    fn long_titles_wrap_at_words_and_stop_at_the_line_limit() {
        assert_eq!(wrap("Adaptive teaching in practice", 12, 3), ["Adaptive", "teaching in", "practice"]);
        assert_eq!(wrap("one two three four", 3, 2), ["one", "two…"]);
    }
}
