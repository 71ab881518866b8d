//! Attendance: who was in a live session, for how long, and who caught up
//! on the replay. Built from the durable records the room and the replay
//! player write (`room_events`, `breakout_moves`, `replay_segments`), never
//! from the room's memory, so it can be rebuilt at any time.
//!
//! This module is the pure part: merging one person's joins and leaves into
//! intervals, time in breakout groups, the people-present series, and the
//! status against the session's threshold. `settle.rs` applies them once,
//! when the live part ends, and stores each person's result; `report.rs`
//! serves the organiser's report from those results. The rules are written
//! out for schools in docs/attendance.md.

pub mod journal;
pub mod mine;
pub mod report;
pub mod settle;

use crate::programme::Schedule;
use serde::Serialize;
use utoipa::ToSchema;

/// The attendance endpoints: the organiser's report and your own record.
pub fn router() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    report::router().merge(mine::router())
}

/// The threshold when an organiser has not set one: 75 % of the scheduled time.
pub const DEFAULT_THRESHOLD: u8 = 75;

/// A share of the scheduled time (or of the recording) that counts as
/// attended: a whole percentage from 1 to 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold(u8);

impl Threshold {
    pub fn parse(percent: i64) -> Result<Threshold, String> {
        match u8::try_from(percent) {
            Ok(p @ 1..=100) => Ok(Threshold(p)),
            _ => Err(format!("the threshold is a whole percentage from 1 to 100 (got {percent})")),
        }
    }

    pub fn percent(self) -> u8 {
        self.0
    }

    /// Whether `part` is at least this share of `whole`; nothing is ever
    /// met by a `whole` of zero. Exact integer arithmetic, so 45:00 of an
    /// hour at 75 % is met and 44:59.999 is not.
    pub fn met(self, part_ms: i64, whole_ms: i64) -> bool {
        whole_ms > 0 && i128::from(part_ms) * 100 >= i128::from(whole_ms) * i128::from(self.0)
    }
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold(DEFAULT_THRESHOLD)
    }
}

/// A half-open stretch of time, [start, end), in Unix ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Interval {
    pub start: i64,
    pub end: i64,
}

impl Interval {
    pub fn ms(self) -> i64 {
        self.end - self.start
    }
}

/// One row of `room_events` for one person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomEvent {
    Join(i64),
    Leave(i64),
}

impl RoomEvent {
    fn at(self) -> i64 {
        match self {
            RoomEvent::Join(at) | RoomEvent::Leave(at) => at,
        }
    }
}

/// The stretch of a session that counts as live: from the moment a host took
/// the room live until it ended (or until `now` while it is still running).
/// Time in the lobby or backstage before going live does not count; a
/// session that never went live has no live attendance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveWindow {
    pub live_at: Option<i64>,
    /// `ended_at` if the room was ended, else now.
    pub close: i64,
}

impl LiveWindow {
    /// The window of a session's live part as of `now`: from going live to
    /// the end mark, never past [`Schedule::closes_at`].
    pub fn of(schedule: &Schedule, now: i64) -> LiveWindow {
        LiveWindow { live_at: schedule.live_at, close: schedule.ended_at.unwrap_or(now).min(schedule.closes_at()) }
    }
}

/// Merges one person's joins and leaves (in the order written) into
/// presence intervals, sorted and not touching.
///
/// The rule: presence runs from a join to the *last* leave before the next
/// join. So
/// - a drop and a rejoin (the room writes `leave dropped` then `join`, often
///   in the same millisecond) is one interval when they touch, two with a
///   gap otherwise;
/// - two overlapping connections (join, join, leave, leave) count once, from
///   the first join to the last leave;
/// - a join never closed by a leave runs until the window closes: the
///   session's `ended_at`, or now while it is live. After a server crash
///   nothing closes it, so it runs to the end of the session: the next step
///   is a heartbeat that closes such intervals at the last sign of life
///   (issue 7), which this does not do yet;
/// - a join after a lost leave (a crash, then a rejoin) is taken as
///   continuous presence from the first join;
/// - a leave with no join before it is ignored.
///
/// Everything is then clipped to the live window.
pub fn presence(events: &[RoomEvent], window: LiveWindow) -> Vec<Interval> {
    let mut events = events.to_vec();
    events.sort_by_key(|e| e.at()); // stable: ties keep the order written
    let mut raw = vec![];
    // (first join of the current run, last leave after it)
    let mut open: Option<(i64, Option<i64>)> = None;
    for event in events {
        match (event, open) {
            (RoomEvent::Join(at), None) => open = Some((at, None)),
            (RoomEvent::Join(at), Some((start, Some(left)))) => {
                raw.push(Interval { start, end: left });
                open = Some((at, None));
            }
            (RoomEvent::Join(_), Some((_, None))) => {}
            (RoomEvent::Leave(at), Some((start, _))) => open = Some((start, Some(at))),
            (RoomEvent::Leave(_), None) => {}
        }
    }
    if let Some((start, left)) = open {
        raw.push(Interval { start, end: left.unwrap_or(window.close) });
    }
    let Some(live_at) = window.live_at else {
        return vec![];
    };
    let clipped = raw
        .into_iter()
        .map(|i| Interval { start: i.start.max(live_at), end: i.end.min(window.close) })
        .filter(|i| i.end > i.start)
        .collect();
    merge(clipped)
}

/// Sorts intervals and joins those that overlap or touch.
pub fn merge(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.sort_by_key(|i| i.start);
    let mut out: Vec<Interval> = vec![];
    for i in intervals {
        match out.last_mut() {
            Some(last) if i.start <= last.end => last.end = last.end.max(i.end),
            _ => out.push(i),
        }
    }
    out
}

pub fn total_ms(intervals: &[Interval]) -> i64 {
    intervals.iter().map(|i| i.ms()).sum()
}

/// One row of `breakout_moves` for one person: `in_group` is false for a
/// move back to the main room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub at: i64,
    pub in_group: bool,
}

/// Ms spent in breakout groups while present. A person is in a group from a
/// move into it until a move back to the main room, another group, or the
/// end of their presence interval: the room puts a rejoining person back in
/// their group with a fresh move, and in the main room otherwise.
pub fn group_ms(moves: &[Move], presence: &[Interval]) -> i64 {
    let mut moves = moves.to_vec();
    moves.sort_by_key(|m| m.at);
    let mut total = 0;
    for p in presence {
        // Where they were when this presence began: only a move at or after
        // its start puts them in a group (a rejoin writes one).
        let mut since: Option<i64> = None;
        for m in moves.iter().filter(|m| m.at >= p.start && m.at < p.end) {
            if let Some(s) = since.take() {
                total += m.at - s;
            }
            if m.in_group {
                since = Some(m.at);
            }
        }
        if let Some(s) = since {
            total += p.end - s;
        }
    }
    total
}

/// A point of the people-present series: from `at` (Unix ms) on, `present`
/// people were in the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Step {
    pub at: i64,
    pub present: i64,
}

/// How many people were present over time, from each person's merged
/// presence: one point per change, ending at 0.
pub fn timeline(people: &[Vec<Interval>]) -> Vec<Step> {
    let mut changes: Vec<(i64, i64)> = people.iter().flatten().flat_map(|i| [(i.start, 1), (i.end, -1)]).collect();
    changes.sort_unstable();
    let mut steps: Vec<Step> = vec![];
    let mut present = 0;
    let mut k = 0;
    while k < changes.len() {
        let at = changes[k].0;
        while k < changes.len() && changes[k].0 == at {
            present += changes[k].1;
            k += 1;
        }
        if steps.last().map(|s| s.present) != Some(present) {
            steps.push(Step { at, present });
        }
    }
    steps
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AttendanceStatus)]
pub enum Status {
    Attended,
    Partly,
    Absent,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Attended => "attended",
            Status::Partly => "partly",
            Status::Absent => "absent",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum How {
    Live,
    Replay,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Live => "live",
            How::Replay => "replay",
        }
    }
}

/// What one person did, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    pub live_ms: i64,
    pub scheduled_ms: i64,
    /// Unique ms watched, summed over the session's finished recordings.
    pub replayed_ms: i64,
    /// The length of those recordings, summed.
    pub recorded_ms: i64,
}

/// Attended live if live time reaches the threshold of the scheduled time;
/// else attended by replay if unique watched time reaches the threshold of
/// the recordings' length; else partly if there is any of either; else
/// absent. `how` says which time counted (live first).
pub fn status(credit: Credit, threshold: Threshold) -> (Status, Option<How>) {
    if threshold.met(credit.live_ms, credit.scheduled_ms) {
        (Status::Attended, Some(How::Live))
    } else if threshold.met(credit.replayed_ms, credit.recorded_ms) {
        (Status::Attended, Some(How::Replay))
    } else if credit.live_ms > 0 {
        (Status::Partly, Some(How::Live))
    } else if credit.replayed_ms > 0 {
        (Status::Partly, Some(How::Replay))
    } else {
        (Status::Absent, None)
    }
}

/// Whole minutes, rounded down: the status is decided on exact ms, so a
/// report never shows 45 minutes for someone 1 ms short of 45.
pub fn minutes(ms: i64) -> i64 {
    ms.max(0) / 60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_window_never_runs_past_the_scheduled_end_plus_the_grace() {
        const MIN: i64 = 60_000;
        let at_end = |live_at, ended_at| Schedule { ends_at: 60 * MIN, grace_ms: 30 * MIN, live_at, ended_at };
        assert_eq!(LiveWindow::of(&at_end(Some(0), None), 20 * MIN).close, 20 * MIN);
        assert_eq!(LiveWindow::of(&at_end(Some(0), None), 24 * 60 * MIN).close, 90 * MIN);
        assert_eq!(LiveWindow::of(&at_end(Some(0), Some(50 * MIN)), 24 * 60 * MIN).close, 50 * MIN);
    }

    use RoomEvent::{Join, Leave};

    const MIN: i64 = 60_000;

    fn window(live_at: i64, close: i64) -> LiveWindow {
        LiveWindow { live_at: Some(live_at), close }
    }

    fn iv(start: i64, end: i64) -> Interval {
        Interval { start, end }
    }

    #[test]
    fn a_drop_and_a_rejoin_in_the_same_millisecond_is_one_interval() {
        let events = [Join(0), Leave(10 * MIN), Join(10 * MIN), Leave(52 * MIN)];
        assert_eq!(presence(&events, window(0, 60 * MIN)), [iv(0, 52 * MIN)]);
    }

    #[test]
    fn five_reconnections_are_one_attendance_with_the_gaps_left_out() {
        let mut events = vec![];
        for k in 0..5 {
            events.push(Join(k * 11 * MIN));
            events.push(Leave(k * 11 * MIN + 10 * MIN));
        }
        let merged = presence(&events, window(0, 60 * MIN));
        assert_eq!(merged.len(), 5);
        assert_eq!(total_ms(&merged), 50 * MIN);
    }

    #[test]
    fn overlapping_connections_count_once_from_the_first_join_to_the_last_leave() {
        let events = [Join(0), Join(5 * MIN), Leave(20 * MIN), Leave(30 * MIN)];
        assert_eq!(presence(&events, window(0, 60 * MIN)), [iv(0, 30 * MIN)]);
    }

    #[test]
    fn a_join_never_closed_runs_to_the_end_of_the_window() {
        let events = [Join(10 * MIN)];
        assert_eq!(presence(&events, window(0, 60 * MIN)), [iv(10 * MIN, 60 * MIN)]);
        // A lost leave, then a rejoin: continuous from the first join.
        let events = [Join(0), Join(30 * MIN), Leave(40 * MIN)];
        assert_eq!(presence(&events, window(0, 60 * MIN)), [iv(0, 40 * MIN)]);
    }

    #[test]
    fn time_before_going_live_and_after_the_end_does_not_count() {
        let events = [Join(0), Leave(70 * MIN)];
        assert_eq!(presence(&events, window(5 * MIN, 60 * MIN)), [iv(5 * MIN, 60 * MIN)]);
        let never_live = LiveWindow { live_at: None, close: 60 * MIN };
        assert!(presence(&events, never_live).is_empty());
        // Entirely in the lobby.
        assert!(presence(&[Join(0), Leave(4 * MIN)], window(5 * MIN, 60 * MIN)).is_empty());
    }

    #[test]
    fn stray_leaves_and_events_out_of_order_are_handled() {
        let events = [Leave(1), Leave(20 * MIN), Join(10 * MIN)];
        assert_eq!(presence(&events, window(0, 60 * MIN)), [iv(10 * MIN, 20 * MIN)]);
        assert!(presence(&[], window(0, 60 * MIN)).is_empty());
    }

    #[test]
    fn group_time_counts_only_while_present_and_ends_with_presence() {
        let presence = [iv(0, 20 * MIN), iv(30 * MIN, 60 * MIN)];
        let moves = [
            Move { at: 10 * MIN, in_group: true },
            // Dropped at 20 in a group; rejoined at 30 without a move: main room.
            Move { at: 40 * MIN, in_group: true },
            Move { at: 45 * MIN, in_group: true }, // to another group
            Move { at: 50 * MIN, in_group: false },
        ];
        assert_eq!(group_ms(&moves, &presence), 10 * MIN + 10 * MIN);
        // A group never closed by a move ends with presence.
        assert_eq!(group_ms(&[Move { at: 55 * MIN, in_group: true }], &presence), 5 * MIN);
        assert_eq!(group_ms(&[], &presence), 0);
    }

    #[test]
    fn the_timeline_has_one_point_per_change() {
        let people = vec![vec![iv(0, 10), iv(20, 30)], vec![iv(5, 20)], vec![]];
        let steps: Vec<(i64, i64)> = timeline(&people).iter().map(|s| (s.at, s.present)).collect();
        // At 20 one leaves as another returns: no change, no point.
        assert_eq!(steps, [(0, 1), (5, 2), (10, 1), (30, 0)]);
        assert!(timeline(&[]).is_empty());
    }

    #[test]
    fn status_at_the_threshold_boundary() {
        let t = Threshold::default();
        let hour = 60 * MIN;
        let live = |live_ms| Credit { live_ms, scheduled_ms: hour, replayed_ms: 0, recorded_ms: 0 };
        assert_eq!(status(live(45 * MIN), t), (Status::Attended, Some(How::Live)));
        assert_eq!(status(live(45 * MIN - 1), t), (Status::Partly, Some(How::Live)));
        assert_eq!(status(live(0), t), (Status::Absent, None));
        let replay = |replayed_ms| Credit { live_ms: 0, scheduled_ms: hour, replayed_ms, recorded_ms: 40 * MIN };
        assert_eq!(status(replay(30 * MIN), t), (Status::Attended, Some(How::Replay)));
        assert_eq!(status(replay(30 * MIN - 1), t), (Status::Partly, Some(How::Replay)));
        // Some live time and enough replay: attended by replay.
        let both = Credit { live_ms: 10 * MIN, scheduled_ms: hour, replayed_ms: 35 * MIN, recorded_ms: 40 * MIN };
        assert_eq!(status(both, t), (Status::Attended, Some(How::Replay)));
        // No recording: replay can never be met.
        assert_eq!(status(Credit { recorded_ms: 0, ..replay(0) }, t), (Status::Absent, None));
        assert_eq!(minutes(45 * MIN - 1), 44);
    }

    #[test]
    fn thresholds_are_whole_percentages_from_1_to_100() {
        assert!(Threshold::parse(0).is_err());
        assert!(Threshold::parse(101).is_err());
        assert!(Threshold::parse(-5).is_err());
        assert_eq!(Threshold::parse(100).map(Threshold::percent), Ok(100));
        assert!(Threshold::parse(100).unwrap().met(10, 10));
        assert!(!Threshold::parse(1).unwrap().met(0, 0));
    }
}
