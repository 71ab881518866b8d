//! The summary of a professional record: CPD minutes by need, by priority,
//! by school term, by kind of learning, and month by month over the last
//! year. The rules are written out for schools in docs/record-exports.md.
//!
//! Everything here is a pure function of the entries, the goals and the
//! person's time zone, so the page, the JSON export and the printable record
//! always add up the same way.

use axum::extract::State;
use chrono::{Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    entries::{self, Entry, Kind},
    goals::{self, Goal, GoalKind},
};
use crate::{
    http::{
        error::{ApiResult, ErrorBody},
        extract::{AuthUser, Json},
    },
    AppState,
};

/// Minutes against one of your needs or priorities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct GoalBucket {
    pub goal_id: i64,
    pub title: String,
    pub minutes: i64,
    /// How many entries are linked to it.
    pub entries: i64,
}

/// Minutes by need (or by priority). An entry linked to two needs counts in
/// full under each, so the buckets can add up to more than the total.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct GoalTotals {
    /// In the order you added them; a goal with no CPD yet shows 0.
    pub goals: Vec<GoalBucket>,
    /// Entries linked to none of them.
    pub unlinked_minutes: i64,
    pub unlinked_entries: i64,
}

/// An English school term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    /// January to March.
    Spring,
    /// April to August (the summer holiday counts with the summer term).
    Summer,
    /// September to December: the start of the academic year.
    Autumn,
}

impl Season {
    fn name(self) -> &'static str {
        match self {
            Season::Spring => "Spring",
            Season::Summer => "Summer",
            Season::Autumn => "Autumn",
        }
    }
}

/// One term: the calendar year it falls in and its season.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Term {
    pub year: i32,
    pub season: Season,
}

impl Term {
    /// The term a day falls in: Autumn is September to December, Spring
    /// January to March, Summer April to August.
    pub fn of(day: NaiveDate) -> Term {
        let season = match day.month() {
            1..=3 => Season::Spring,
            4..=8 => Season::Summer,
            _ => Season::Autumn,
        };
        Term { year: day.year(), season }
    }

    /// "Autumn 2026".
    pub fn label(self) -> String {
        format!("{} {}", self.season.name(), self.year)
    }

    /// "2026/27": an academic year starts in September, so Spring and
    /// Summer 2027 belong to 2026/27 with Autumn 2026.
    pub fn academic_year(self) -> String {
        let start = if self.season == Season::Autumn { self.year } else { self.year - 1 };
        format!("{start}/{:02}", (start + 1).rem_euclid(100))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TermBucket {
    pub season: Season,
    /// The calendar year the term falls in.
    pub year: i32,
    /// e.g. "Autumn 2026".
    pub label: String,
    /// e.g. "2026/27".
    pub academic_year: String,
    pub minutes: i64,
    pub entries: i64,
}

/// The kinds of learning the summary counts apart: a session is split by
/// how it was attended, so a school sees how much was live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SummaryKind {
    SessionLive,
    SessionReplay,
    Course,
    Reading,
    Coaching,
    Other,
}

impl SummaryKind {
    pub const ALL: [SummaryKind; 6] = [
        SummaryKind::SessionLive,
        SummaryKind::SessionReplay,
        SummaryKind::Course,
        SummaryKind::Reading,
        SummaryKind::Coaching,
        SummaryKind::Other,
    ];

    /// A session entry counts as replay only when the replay is what
    /// earned it (`how` = replay); live, or partly live, counts as live.
    pub fn of(entry: &Entry) -> SummaryKind {
        match entry.kind {
            Kind::Session if entry.how.as_deref() == Some("replay") => SummaryKind::SessionReplay,
            Kind::Session => SummaryKind::SessionLive,
            Kind::Course => SummaryKind::Course,
            Kind::Reading => SummaryKind::Reading,
            Kind::Coaching => SummaryKind::Coaching,
            Kind::Other => SummaryKind::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SummaryKind::SessionLive => "Sessions attended live",
            SummaryKind::SessionReplay => "Sessions watched on replay",
            SummaryKind::Course => "Courses",
            SummaryKind::Reading => "Reading",
            SummaryKind::Coaching => "Coaching",
            SummaryKind::Other => "Other",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct KindBucket {
    pub kind: SummaryKind,
    pub label: String,
    pub minutes: i64,
    pub entries: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct MonthBucket {
    /// "2026-05".
    pub month: String,
    /// "May 2026".
    pub label: String,
    pub minutes: i64,
}

/// Your CPD minutes, added up several ways.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Summary {
    /// The time zone dates are read in: yours, else the programme's.
    pub time_zone: String,
    pub total_minutes: i64,
    pub total_entries: i64,
    pub by_need: GoalTotals,
    pub by_priority: GoalTotals,
    /// Terms with any CPD, newest first.
    pub by_term: Vec<TermBucket>,
    /// Every kind, in a fixed order, including those with none.
    pub by_kind: Vec<KindBucket>,
    /// The last 12 months, oldest first, this month last, empty months included.
    pub timeline: Vec<MonthBucket>,
}

/// Minutes by goal of one kind; an entry counts once under each goal it is
/// linked to, and in `unlinked` if it is linked to none of this kind.
pub fn by_goal(entries: &[Entry], goals: &[Goal], kind: GoalKind) -> GoalTotals {
    let mine: Vec<&Goal> = goals.iter().filter(|g| g.kind == kind).collect();
    let mut buckets: Vec<GoalBucket> =
        mine.iter().map(|g| GoalBucket { goal_id: g.id, title: g.title.clone(), minutes: 0, entries: 0 }).collect();
    let (mut unlinked_minutes, mut unlinked_entries) = (0, 0);
    for e in entries {
        let mut linked = false;
        for b in buckets.iter_mut().filter(|b| e.goal_ids.contains(&b.goal_id)) {
            b.minutes += e.minutes;
            b.entries += 1;
            linked = true;
        }
        if !linked {
            unlinked_minutes += e.minutes;
            unlinked_entries += 1;
        }
    }
    GoalTotals { goals: buckets, unlinked_minutes, unlinked_entries }
}

/// The day an entry happened, where the person lives: a session at 23:30
/// UTC on 31 August is in the autumn term for someone in London.
pub fn local_day(entry: &Entry, zone: Tz) -> NaiveDate {
    entry.occurred_at.with_timezone(&zone).date_naive()
}

/// Minutes by term, newest first; terms with no entries are left out.
pub fn by_term(entries: &[Entry], zone: Tz) -> Vec<TermBucket> {
    let mut terms: std::collections::BTreeMap<Term, (i64, i64)> = Default::default();
    for e in entries {
        let t = terms.entry(Term::of(local_day(e, zone))).or_default();
        t.0 += e.minutes;
        t.1 += 1;
    }
    terms
        .into_iter()
        .rev()
        .map(|(term, (minutes, entries))| TermBucket {
            season: term.season,
            year: term.year,
            label: term.label(),
            academic_year: term.academic_year(),
            minutes,
            entries,
        })
        .collect()
}

pub fn by_kind(entries: &[Entry]) -> Vec<KindBucket> {
    SummaryKind::ALL
        .iter()
        .map(|&kind| {
            let of_kind = entries.iter().filter(|e| SummaryKind::of(e) == kind);
            KindBucket {
                kind,
                label: kind.label().to_string(),
                minutes: of_kind.clone().map(|e| e.minutes).sum(),
                entries: of_kind.count() as i64,
            }
        })
        .collect()
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Minutes per month for the 12 months ending with `today`'s month, oldest
/// first, with empty months as 0 so a chart has no gaps. Entries outside
/// the window (older, or dated ahead) are not in it.
pub fn timeline(entries: &[Entry], zone: Tz, today: NaiveDate) -> Vec<MonthBucket> {
    // Months counted from year 0, so stepping back across January is subtraction.
    let index = |d: NaiveDate| d.year() * 12 + d.month0() as i32;
    let last = index(today);
    let first = last - 11;
    let mut minutes = [0i64; 12];
    for e in entries {
        let m = index(local_day(e, zone));
        if (first..=last).contains(&m) {
            minutes[(m - first) as usize] += e.minutes;
        }
    }
    (first..=last)
        .zip(minutes)
        .map(|(m, minutes)| {
            let (year, month0) = (m.div_euclid(12), m.rem_euclid(12) as usize);
            MonthBucket {
                month: format!("{year:04}-{:02}", month0 + 1),
                label: format!("{} {year}", MONTHS[month0]),
                minutes,
            }
        })
        .collect()
}

/// Everything above, for one person's record.
pub fn summarise(entries: &[Entry], goals: &[Goal], zone: Tz, today: NaiveDate) -> Summary {
    Summary {
        time_zone: zone.name().to_string(),
        total_minutes: entries.iter().map(|e| e.minutes).sum(),
        total_entries: entries.len() as i64,
        by_need: by_goal(entries, goals, GoalKind::Need),
        by_priority: by_goal(entries, goals, GoalKind::Priority),
        by_term: by_term(entries, zone),
        by_kind: by_kind(entries),
        timeline: timeline(entries, zone, today),
    }
}

/// Today where the person is, for the timeline's last month.
pub fn today(zone: Tz) -> NaiveDate {
    Utc::now().with_timezone(&zone).date_naive()
}

/// Your record added up: by need, by priority, by term, by kind, and month
/// by month over the last year. Brought up to date with attendance first.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/me/record/summary", tag = "record",
    responses((status = 200, body = Summary), (status = 401, body = ErrorBody)))]
async fn summary(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Summary>> {
    entries::sync(&state.db, user.id).await?;
    let all = entries::load_all(&state.db, user.id).await?;
    let goals = goals::load(&state.db, user.id).await?;
    let zone = user.zone(state.settings.time_zone);
    Ok(Json(summarise(&all, &goals, zone, today(zone))))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone};

    fn entry(id: i64, kind: Kind, how: Option<&str>, at: DateTime<Utc>, minutes: i64, goal_ids: &[i64]) -> Entry {
        Entry {
            id,
            kind,
            session_id: (kind == Kind::Session).then_some(id),
            title: format!("Entry {id}"),
            provider: String::new(),
            occurred_at: at,
            minutes,
            how: how.map(str::to_string),
            status: None,
            minutes_live: 0,
            minutes_in_groups: 0,
            minutes_replayed: 0,
            groups: vec![],
            goal_ids: goal_ids.to_vec(),
            reflection: None,
            evidence: vec![],
            certificate_id: None,
            shared_token: None,
            settled: (kind == Kind::Session).then_some(true),
        }
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn goal(id: i64, kind: GoalKind, title: &str) -> Goal {
        Goal { id, kind, title: title.into() }
    }

    #[test]
    fn terms_change_on_the_first_of_september_january_and_april() {
        let label = |d| (Term::of(d).label(), Term::of(d).academic_year());
        assert_eq!(label(day(2026, 8, 31)), ("Summer 2026".into(), "2025/26".into()));
        assert_eq!(label(day(2026, 9, 1)), ("Autumn 2026".into(), "2026/27".into()));
        assert_eq!(label(day(2026, 12, 31)), ("Autumn 2026".into(), "2026/27".into()));
        assert_eq!(label(day(2027, 1, 1)), ("Spring 2027".into(), "2026/27".into()));
        assert_eq!(label(day(2027, 3, 31)), ("Spring 2027".into(), "2026/27".into()));
        assert_eq!(label(day(2027, 4, 1)), ("Summer 2027".into(), "2026/27".into()));
        assert_eq!(Term::of(day(2099, 10, 1)).academic_year(), "2099/00");
    }

    #[test]
    fn a_late_evening_session_falls_in_the_term_of_the_persons_own_day() {
        // 23:30 UTC on 31 August is 00:30 on 1 September in London (BST).
        let e = [entry(1, Kind::Session, Some("live"), utc(2026, 8, 31, 23, 30), 60, &[])];
        assert_eq!(by_term(&e, chrono_tz::Europe::London)[0].label, "Autumn 2026");
        assert_eq!(by_term(&e, chrono_tz::UTC)[0].label, "Summer 2026");
    }

    #[test]
    fn terms_are_newest_first_and_add_up_their_entries() {
        let e = [
            entry(1, Kind::Course, None, utc(2026, 10, 1, 12, 0), 30, &[]),
            entry(2, Kind::Reading, None, utc(2027, 2, 1, 12, 0), 20, &[]),
            entry(3, Kind::Reading, None, utc(2026, 11, 1, 12, 0), 15, &[]),
        ];
        let terms: Vec<(String, i64, i64)> =
            by_term(&e, chrono_tz::UTC).into_iter().map(|t| (t.label, t.minutes, t.entries)).collect();
        assert_eq!(terms, [("Spring 2027".into(), 20, 1), ("Autumn 2026".into(), 45, 2)]);
    }

    #[test]
    fn an_entry_linked_to_two_needs_counts_in_full_under_each() {
        let goals = [
            goal(1, GoalKind::Need, "Behaviour"),
            goal(2, GoalKind::Need, "Questioning"),
            goal(3, GoalKind::Need, "Phonics"),
            goal(9, GoalKind::Priority, "Reading"),
        ];
        let at = utc(2026, 10, 1, 12, 0);
        let e = [
            entry(1, Kind::Course, None, at, 90, &[1, 2]),
            entry(2, Kind::Reading, None, at, 30, &[2, 9]),
            entry(3, Kind::Other, None, at, 10, &[]),
        ];
        let needs = by_goal(&e, &goals, GoalKind::Need);
        let rows: Vec<(i64, i64, i64)> = needs.goals.iter().map(|b| (b.goal_id, b.minutes, b.entries)).collect();
        assert_eq!(rows, [(1, 90, 1), (2, 120, 2), (3, 0, 0)]);
        assert_eq!((needs.unlinked_minutes, needs.unlinked_entries), (10, 1));
        let priorities = by_goal(&e, &goals, GoalKind::Priority);
        assert_eq!(priorities.goals[0].minutes, 30);
        assert_eq!((priorities.unlinked_minutes, priorities.unlinked_entries), (100, 2));
    }

    #[test]
    fn sessions_are_counted_apart_by_live_and_replay() {
        let at = utc(2026, 10, 1, 12, 0);
        let e = [
            entry(1, Kind::Session, Some("live"), at, 50, &[]),
            entry(2, Kind::Session, Some("replay"), at, 30, &[]),
            entry(3, Kind::Coaching, None, at, 40, &[]),
        ];
        let kinds: Vec<(SummaryKind, i64, i64)> =
            by_kind(&e).into_iter().map(|k| (k.kind, k.minutes, k.entries)).collect();
        assert_eq!(
            kinds,
            [
                (SummaryKind::SessionLive, 50, 1),
                (SummaryKind::SessionReplay, 30, 1),
                (SummaryKind::Course, 0, 0),
                (SummaryKind::Reading, 0, 0),
                (SummaryKind::Coaching, 40, 1),
                (SummaryKind::Other, 0, 0),
            ]
        );
    }

    #[test]
    fn the_timeline_has_twelve_months_across_new_year_with_empty_months() {
        let e = [
            entry(1, Kind::Course, None, utc(2026, 3, 31, 12, 0), 60, &[]),
            entry(2, Kind::Course, None, utc(2025, 4, 2, 12, 0), 25, &[]),
            entry(3, Kind::Course, None, utc(2025, 4, 20, 12, 0), 5, &[]),
            // Too old, and dated ahead: outside the window.
            entry(4, Kind::Course, None, utc(2025, 3, 31, 12, 0), 99, &[]),
            entry(5, Kind::Course, None, utc(2026, 4, 1, 12, 0), 99, &[]),
        ];
        let months = timeline(&e, chrono_tz::UTC, day(2026, 3, 31));
        assert_eq!(months.len(), 12);
        assert_eq!(
            (months[0].month.as_str(), months[0].label.as_str(), months[0].minutes),
            ("2025-04", "April 2025", 30)
        );
        assert_eq!(months[8].month, "2025-12");
        assert_eq!(months[9].month, "2026-01");
        assert_eq!((months[11].month.as_str(), months[11].minutes), ("2026-03", 60));
        assert!(months[1..11].iter().all(|m| m.minutes == 0), "{months:?}");
        assert!(timeline(&[], chrono_tz::UTC, day(2026, 1, 15)).iter().all(|m| m.minutes == 0));
        assert_eq!(timeline(&[], chrono_tz::UTC, day(2026, 1, 15))[0].month, "2025-02");
    }
}
