//! When a session's live part ends: its scheduled end, the grace the room
//! may run on after it, and the marks the room's journal stored. The rooms
//! (to close themselves and refuse late joins), attendance (to clip
//! presence) and the programme (to say where a session is in its life) all
//! read it from here, so they agree.

use crate::db::Db;

/// A session's live part as far as it is known: its scheduled end and grace,
/// and the marks the room's journal stored (going live, the end). Times in
/// Unix ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub ends_at: i64,
    /// How long after `ends_at` the room may run on before it closes itself.
    pub grace_ms: i64,
    pub live_at: Option<i64>,
    pub ended_at: Option<i64>,
}

impl Schedule {
    /// The latest moment of the live part: the room closes itself here.
    pub fn closes_at(&self) -> i64 {
        self.ends_at.saturating_add(self.grace_ms)
    }

    /// When the live part ended, if it has by `now`, for a room that is not
    /// running: a host ended it; its time ran out (the scheduled end plus
    /// the grace); or the room has stood empty for `empty_for_ms` after the
    /// scheduled end (counted from the last leave, or from the scheduled end
    /// if everyone had left before it). `last_event` is the room's last
    /// stored join or leave: (at, was a join).
    pub fn over_at(&self, now: i64, last_event: Option<(i64, bool)>, empty_for_ms: i64) -> Option<i64> {
        if let Some(at) = self.ended_at {
            return Some(at);
        }
        if now >= self.closes_at() {
            return Some(self.closes_at());
        }
        match last_event {
            // Someone is in (or a crash left a join open: start-up closes those).
            Some((_, true)) => None,
            last => {
                let since = last.map_or(self.ends_at, |(at, _)| at.max(self.ends_at));
                (now >= self.ends_at && now - since >= empty_for_ms).then_some(since)
            }
        }
    }
}

/// The session's schedule and marks; `None` if there is no such session.
pub async fn load(db: &Db, session_id: i64) -> Result<Option<Schedule>, sqlx::Error> {
    let row: Option<(i64, i64, Option<i64>, Option<i64>)> =
        sqlx::query_as("select ends_at, live_grace_ms, live_at, ended_at from sessions where id = $1")
            .bind(session_id)
            .fetch_optional(&db.read)
            .await?;
    Ok(row.map(|(ends_at, grace_ms, live_at, ended_at)| Schedule {
        // The programme stores whole seconds.
        ends_at: ends_at.saturating_mul(1000),
        grace_ms,
        live_at,
        ended_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn at_end(live_at: Option<i64>, ended_at: Option<i64>) -> Schedule {
        Schedule { ends_at: 60 * MIN, grace_ms: 30 * MIN, live_at, ended_at }
    }

    #[test]
    fn the_live_part_is_over_when_ended_when_its_time_ran_out_or_when_left_empty_after_the_end() {
        let empty = 10 * MIN;
        // A host ended it.
        assert_eq!(at_end(Some(0), Some(40 * MIN)).over_at(41 * MIN, None, empty), Some(40 * MIN));
        // Running, before the end: not over.
        assert_eq!(at_end(Some(0), None).over_at(30 * MIN, Some((5 * MIN, true)), empty), None);
        // Someone is in after the end, within the grace: not over; past it: over at the close.
        assert_eq!(at_end(Some(0), None).over_at(85 * MIN, Some((5 * MIN, true)), empty), None);
        assert_eq!(at_end(Some(0), None).over_at(95 * MIN, Some((5 * MIN, true)), empty), Some(90 * MIN));
        // Everyone left before the end: over ten minutes after the end, not before.
        assert_eq!(at_end(Some(0), None).over_at(69 * MIN, Some((50 * MIN, false)), empty), None);
        assert_eq!(at_end(Some(0), None).over_at(70 * MIN, Some((50 * MIN, false)), empty), Some(60 * MIN));
        // The last one left after the end: counted from that leave.
        assert_eq!(at_end(Some(0), None).over_at(74 * MIN, Some((65 * MIN, false)), empty), None);
        assert_eq!(at_end(Some(0), None).over_at(75 * MIN, Some((65 * MIN, false)), empty), Some(65 * MIN));
        // Nobody ever came.
        assert_eq!(at_end(None, None).over_at(70 * MIN, None, empty), Some(60 * MIN));
    }
}
