//! Settled attendance: when a session's live part ends, each person's live
//! result (minutes live and in groups, and the status that earned against
//! the threshold) is stored once, as a fact, in `attendance_results`, with
//! `sessions.settled_at` as the mark. The record, the certificates and the
//! organiser's report read those rows; nothing rebuilds a whole session on
//! a participant's page load.
//!
//! Settling happens in the transaction that stores the end mark
//! ([`super::journal`]'s `Ended` fact, whoever writes it: the room, or a
//! join attempt finding a room over), so an ended session without results
//! can only be one that ended before results existed. Every reader goes
//! through [`settle_if_due`] first, which settles such a session, and one
//! whose time ran out while no room was open to mark it (a crash), the
//! first time it is read. Settling is guarded by the mark: twice is once.
//!
//! Replay credit keeps arriving after the end, so it is not part of the
//! stored row: it is read per person from their segments (one indexed query
//! over one person's segments, or one session's) and combined with the
//! settled live result by the same rule ([`super::status`]).

use crate::programme::Schedule;
use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::{
    group_ms, presence, status, total_ms, Credit, How, Interval, LiveWindow, Move, RoomEvent, Status, Threshold,
};
use crate::{
    db::{Db, Tx},
    recording::{union_ms, Segment},
};

/// What the rules need of a session, read in one query.
#[derive(Clone, Copy, Debug)]
pub struct SessionFacts {
    pub id: i64,
    /// Scheduled length, ms.
    pub scheduled_ms: i64,
    pub threshold: Threshold,
    pub schedule: Schedule,
    /// When its results were stored (Unix ms), once settled.
    pub settled_at: Option<i64>,
}

impl SessionFacts {
    /// The live window the results are counted in, as of `now`.
    pub fn window(&self, now: i64) -> LiveWindow {
        LiveWindow::of(&self.schedule, now)
    }
}

pub async fn session_facts(conn: &mut AnyConnection, id: i64) -> Result<Option<SessionFacts>, sqlx::Error> {
    let row = sqlx::query(
        "select starts_at, ends_at, live_grace_ms, live_at, ended_at, settled_at, attendance_threshold
         from sessions where id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    // The programme stores whole seconds.
    let starts_at: i64 = row.try_get::<i64, _>("starts_at")?.saturating_mul(1000);
    let ends_at: i64 = row.try_get::<i64, _>("ends_at")?.saturating_mul(1000);
    let percent: i64 = row.try_get("attendance_threshold")?;
    Ok(Some(SessionFacts {
        id,
        scheduled_ms: ends_at.saturating_sub(starts_at).max(0),
        // The column only ever holds what `Threshold::parse` accepted.
        threshold: Threshold::parse(percent).unwrap_or_default(),
        schedule: Schedule {
            ends_at,
            grace_ms: row.try_get("live_grace_ms")?,
            live_at: row.try_get("live_at")?,
            ended_at: row.try_get("ended_at")?,
        },
        settled_at: row.try_get("settled_at")?,
    }))
}

/// One person's live part of a session, in ms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub live_ms: i64,
    pub group_ms: i64,
    /// First and last moment present while live, if ever.
    pub joined_at: Option<i64>,
    pub left_at: Option<i64>,
}

/// The people a session's results are for: confirmed registrants and
/// everyone who joined the room (of them, only `only` if given).
async fn people(conn: &mut AnyConnection, session_id: i64, only: Option<i64>) -> Result<Vec<i64>, sqlx::Error> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "select user_id from registrations where session_id = $1 and status = 'confirmed'
         union select user_id from room_events where session_id = $1",
    )
    .bind(session_id)
    .fetch_all(&mut *conn)
    .await?;
    ids.retain(|id| only.is_none_or(|o| o == *id));
    ids.sort_unstable();
    Ok(ids)
}

/// Applies the rules (mod.rs) to the session's joins, leaves and moves, in
/// `window`: each person's merged presence (for the people-present series)
/// and their live part. `only` limits it to one person's rows.
pub async fn from_rows(
    conn: &mut AnyConnection,
    session_id: i64,
    window: LiveWindow,
    only: Option<i64>,
) -> Result<Vec<(i64, Vec<Interval>, Live)>, sqlx::Error> {
    let (events_sql, moves_sql) = match only {
        None => (
            "select user_id, kind, at from room_events where session_id = $1 order by at, id",
            "select user_id, group_name, at from breakout_moves where session_id = $1 order by at, id",
        ),
        Some(_) => (
            "select user_id, kind, at from room_events where session_id = $1 and user_id = $2 order by at, id",
            "select user_id, group_name, at from breakout_moves where session_id = $1 and user_id = $2 order by at, id",
        ),
    };
    let bound = |sql| {
        let query = sqlx::query_as::<_, (i64, Option<String>, i64)>(sql).bind(session_id);
        match only {
            Some(user) => query.bind(user),
            None => query,
        }
    };
    let mut events: HashMap<i64, Vec<RoomEvent>> = HashMap::new();
    for (user_id, kind, at) in bound(events_sql).fetch_all(&mut *conn).await? {
        let event = if kind.as_deref() == Some("join") { RoomEvent::Join(at) } else { RoomEvent::Leave(at) };
        events.entry(user_id).or_default().push(event);
    }
    let mut moves: HashMap<i64, Vec<Move>> = HashMap::new();
    for (user_id, group, at) in bound(moves_sql).fetch_all(&mut *conn).await? {
        moves.entry(user_id).or_default().push(Move { at, in_group: group.is_some() });
    }
    let mut out = vec![];
    for user_id in people(conn, session_id, only).await? {
        let intervals = presence(events.get(&user_id).map(Vec::as_slice).unwrap_or_default(), window);
        let live = Live {
            live_ms: total_ms(&intervals),
            group_ms: group_ms(moves.get(&user_id).map(Vec::as_slice).unwrap_or_default(), &intervals),
            joined_at: intervals.first().map(|i| i.start),
            left_at: intervals.last().map(|i| i.end),
        };
        out.push((user_id, intervals, live));
    }
    Ok(out)
}

/// The status the live part alone earns (replay is added when read).
fn live_status(live: &Live, facts: &SessionFacts) -> Status {
    let credit = Credit { live_ms: live.live_ms, scheduled_ms: facts.scheduled_ms, replayed_ms: 0, recorded_ms: 0 };
    status(credit, facts.threshold).0
}

/// Settles `session_id` inside `tx` if it has ended and is not settled yet:
/// sets the mark and stores everyone's result. Returns whether it did. The
/// guarded update makes a second settler (another transaction that read
/// the session unsettled) do nothing once the first commits.
pub async fn settle_in(tx: &mut Tx, session_id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let marked = sqlx::query(
        "update sessions set settled_at = $1 where id = $2 and settled_at is null and ended_at is not null",
    )
    .bind(now)
    .bind(session_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if marked == 0 {
        return Ok(false);
    }
    let written = write_results(tx, session_id, now).await?;
    tracing::info!(session = session_id, people = written, "attendance settled");
    Ok(true)
}

/// Rewrites a settled session's results (after a threshold correction),
/// inside the transaction that made the correction. Returns whether the
/// session was settled (and so re-settled).
pub async fn resettle_in(tx: &mut Tx, session_id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let settled: Option<i64> = sqlx::query_scalar("select settled_at from sessions where id = $1")
        .bind(session_id)
        .fetch_one(&mut **tx)
        .await?;
    if settled.is_none() {
        return Ok(false);
    }
    let written = write_results(tx, session_id, now).await?;
    tracing::info!(session = session_id, people = written, "attendance re-settled");
    Ok(true)
}

/// Replaces the session's result rows with the rules applied to its rows in
/// the live window closed by its end mark.
async fn write_results(tx: &mut Tx, session_id: i64, now: i64) -> Result<usize, sqlx::Error> {
    let facts = session_facts(tx, session_id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let ended_at = facts.schedule.ended_at.ok_or(sqlx::Error::RowNotFound)?;
    let results = from_rows(tx, session_id, facts.window(ended_at), None).await?;
    sqlx::query("delete from attendance_results where session_id = $1").bind(session_id).execute(&mut **tx).await?;
    for (user_id, _, live) in &results {
        sqlx::query(
            "insert into attendance_results (session_id, user_id, live_ms, group_ms, joined_at, left_at,
                 scheduled_ms, threshold_percent, live_status, settled_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(session_id)
        .bind(*user_id)
        .bind(live.live_ms)
        .bind(live.group_ms)
        .bind(live.joined_at)
        .bind(live.left_at)
        .bind(facts.scheduled_ms)
        .bind(i64::from(facts.threshold.percent()))
        .bind(live_status(live, &facts).as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(results.len())
}

/// Settles `session_id` now if it is due and not settled: it has an end
/// mark (stored before results existed), or its time ran out (the scheduled
/// end plus the grace) while no room was open to mark it, as after a crash.
/// An open room (a heartbeat is stored) marks its own end. Every reader
/// calls this first, so no reader can miss a settlement.
pub async fn settle_if_due(db: &Db, facts: &SessionFacts, now: i64) -> Result<bool, sqlx::Error> {
    if facts.settled_at.is_some() {
        return Ok(false);
    }
    let at = match facts.schedule.ended_at {
        Some(at) => at,
        None if now >= facts.schedule.closes_at() && !room_is_open(db, facts.id).await? => facts.schedule.closes_at(),
        None => return Ok(false),
    };
    // Storing the end mark settles, in the same transaction (and only the first mark counts).
    super::journal::mark_ended(db, facts.id, at).await?;
    Ok(true)
}

async fn room_is_open(db: &Db, session_id: i64) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("select count(*) from room_heartbeats where session_id = $1")
        .bind(session_id)
        .fetch_one(&db.read)
        .await?;
    Ok(n > 0)
}

/// Reads the session's facts, settling it first if due.
pub async fn facts(db: &Db, session_id: i64, now: i64) -> Result<Option<SessionFacts>, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    let Some(facts) = session_facts(&mut conn, session_id).await? else { return Ok(None) };
    drop(conn);
    if settle_if_due(db, &facts, now).await? {
        let mut conn = db.read.acquire().await?;
        return session_facts(&mut conn, session_id).await;
    }
    Ok(Some(facts))
}

/// One person's result for one session: the settled live part (or, while
/// the session runs, the live part so far) with their replay credit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonResult {
    pub session_id: i64,
    pub user_id: i64,
    pub live: Live,
    /// Unique ms watched, summed over the session's finished recordings.
    pub replayed_ms: i64,
    /// The length of those recordings, summed.
    pub recorded_ms: i64,
    pub scheduled_ms: i64,
    pub threshold: Threshold,
    pub status: Status,
    pub how: Option<How>,
    /// Whether the live part is the settled fact (else it is provisional).
    pub settled: bool,
}

impl PersonResult {
    fn new(facts: &SessionFacts, user_id: i64, live: Live, stored: Option<Stored>, replay: Replay) -> PersonResult {
        let (scheduled_ms, threshold) = match &stored {
            Some(s) => (s.scheduled_ms, s.threshold),
            None => (facts.scheduled_ms, facts.threshold),
        };
        let credit = Credit {
            live_ms: live.live_ms,
            scheduled_ms,
            replayed_ms: replay.watched_ms,
            recorded_ms: replay.recorded_ms,
        };
        let (status, how) = status(credit, threshold);
        PersonResult {
            session_id: facts.id,
            user_id,
            live,
            replayed_ms: replay.watched_ms,
            recorded_ms: replay.recorded_ms,
            scheduled_ms,
            threshold,
            status,
            how,
            settled: facts.settled_at.is_some(),
        }
    }

    /// CPD minutes: the larger of live and replayed minutes, at most the
    /// scheduled length (watching the replay of what you attended adds nothing).
    pub fn minutes_credited(&self) -> i64 {
        super::minutes(self.live.live_ms).max(super::minutes(self.replayed_ms)).min(super::minutes(self.scheduled_ms))
    }
}

/// A stored row's settled context.
#[derive(Clone, Copy, Debug)]
struct Stored {
    scheduled_ms: i64,
    threshold: Threshold,
}

#[derive(Clone, Copy, Debug, Default)]
struct Replay {
    watched_ms: i64,
    recorded_ms: i64,
}

/// Whose rows to read: one session's, or one person's across sessions.
#[derive(Clone, Copy)]
enum Whose {
    Session(i64),
    Person(i64),
}

/// Stored results, by (session, person).
async fn stored(db: &Db, whose: Whose) -> Result<HashMap<(i64, i64), (Live, Stored)>, sqlx::Error> {
    let (filter, id) = match whose {
        Whose::Session(id) => ("session_id", id),
        Whose::Person(id) => ("user_id", id),
    };
    let rows = sqlx::query(&format!(
        "select session_id, user_id, live_ms, group_ms, joined_at, left_at, scheduled_ms, threshold_percent
         from attendance_results where {filter} = $1"
    ))
    .bind(id)
    .fetch_all(&db.read)
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        let live = Live {
            live_ms: r.try_get("live_ms")?,
            group_ms: r.try_get("group_ms")?,
            joined_at: r.try_get("joined_at")?,
            left_at: r.try_get("left_at")?,
        };
        let percent: i64 = r.try_get("threshold_percent")?;
        let stored = Stored {
            scheduled_ms: r.try_get("scheduled_ms")?,
            threshold: Threshold::parse(percent).unwrap_or_default(),
        };
        out.insert((r.try_get("session_id")?, r.try_get("user_id")?), (live, stored));
    }
    Ok(out)
}

/// Replay credit by (session, person): what was watched of what exists
/// (docs/attendance.md, "Replay crediting"), and the recordings' length.
async fn replays(db: &Db, whose: Whose) -> Result<HashMap<(i64, i64), Replay>, sqlx::Error> {
    let (filter, id) = match whose {
        Whose::Session(id) => ("r.session_id = $1", id),
        Whose::Person(id) => ("s.user_id = $1", id),
    };
    // Only finished recordings have a length to measure against.
    let mut segments: HashMap<(i64, i64, String), Vec<Segment>> = HashMap::new();
    for row in sqlx::query(&format!(
        "select r.session_id, s.user_id, s.recording_id, s.start_ms, s.end_ms, r.duration_ms
         from replay_segments s join recordings r on r.id = s.recording_id
         where {filter} and r.duration_ms is not null"
    ))
    .bind(id)
    .fetch_all(&db.read)
    .await?
    {
        let segment = Segment { start_ms: row.try_get("start_ms")?, end_ms: row.try_get("end_ms")? };
        if let Some(segment) = segment.clip(row.try_get("duration_ms")?) {
            let key = (row.try_get("session_id")?, row.try_get("user_id")?, row.try_get("recording_id")?);
            segments.entry(key).or_default().push(segment);
        }
    }
    let mut recorded: HashMap<i64, i64> = HashMap::new();
    for row in sqlx::query(&format!(
        "select session_id, duration_ms from recordings where duration_ms is not null and session_id in (
             select r.session_id from replay_segments s join recordings r on r.id = s.recording_id where {filter})"
    ))
    .bind(id)
    .fetch_all(&db.read)
    .await?
    {
        let total = recorded.entry(row.try_get("session_id")?).or_default();
        *total = total.saturating_add(row.try_get("duration_ms")?);
    }
    let mut out: HashMap<(i64, i64), Replay> = HashMap::new();
    for ((session, user, _), segs) in segments {
        let replay = out.entry((session, user)).or_default();
        replay.watched_ms = replay.watched_ms.saturating_add(union_ms(segs));
        replay.recorded_ms = recorded.get(&session).copied().unwrap_or(0);
    }
    Ok(out)
}

/// Everyone's result for one session (settling it first if due), and
/// everyone's merged presence in the live window (for the people-present
/// series, which is drawn from the rows).
pub async fn session_results(
    db: &Db,
    session_id: i64,
    now: i64,
) -> Result<Option<(SessionFacts, Vec<PersonResult>, Vec<Vec<Interval>>)>, sqlx::Error> {
    let Some(facts) = facts(db, session_id, now).await? else { return Ok(None) };
    let close = facts.schedule.ended_at.unwrap_or(now);
    let mut conn = db.read.acquire().await?;
    let computed = from_rows(&mut conn, session_id, facts.window(close), None).await?;
    drop(conn);
    let mut stored = stored(db, Whose::Session(session_id)).await?;
    let mut replays = replays(db, Whose::Session(session_id)).await?;
    let mut people = vec![];
    let mut present = vec![];
    for (user_id, intervals, live) in computed {
        // Once settled, the stored row is the result, whatever the rows say now.
        let (live, row) = match (facts.settled_at, stored.remove(&(session_id, user_id))) {
            (Some(_), Some((live, row))) => (live, Some(row)),
            (Some(_), None) => (Live::default(), None),
            (None, _) => (live, None),
        };
        let replay = replays.remove(&(session_id, user_id)).unwrap_or_default();
        people.push(PersonResult::new(&facts, user_id, live, row, replay));
        present.push(intervals);
    }
    if facts.settled_at.is_some() {
        // Settled rows for anyone the rows no longer name (say, a registration cancelled since).
        for ((_, user_id), (live, row)) in stored {
            let replay = replays.remove(&(session_id, user_id)).unwrap_or_default();
            people.push(PersonResult::new(&facts, user_id, live, Some(row), replay));
        }
    }
    // People who only watched the replay: no live part.
    for ((_, user_id), replay) in replays {
        people.push(PersonResult::new(&facts, user_id, Live::default(), None, replay));
    }
    Ok(Some((facts, people, present)))
}

/// One person's result for every session they registered for, joined or
/// replayed (settling any that are due first): the stored results, their
/// replay credit, and the live part so far of a session still running.
pub async fn person_results(db: &Db, user_id: i64, now: i64) -> Result<Vec<PersonResult>, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "select session_id from attendance_results where user_id = $1
         union select session_id from room_events where user_id = $1
         union select r.session_id from replay_segments s join recordings r on r.id = s.recording_id
               where s.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&db.read)
    .await?;
    let mut sessions = vec![];
    for id in ids {
        let mut conn = db.read.acquire().await?;
        let Some(facts) = session_facts(&mut conn, id).await? else { continue };
        drop(conn);
        sessions.push(facts);
    }
    for facts in &mut sessions {
        if settle_if_due(db, facts, now).await? {
            let mut conn = db.read.acquire().await?;
            *facts = session_facts(&mut conn, facts.id).await?.unwrap_or(*facts);
        }
    }
    let mut stored = stored(db, Whose::Person(user_id)).await?;
    let mut replays = replays(db, Whose::Person(user_id)).await?;
    let mut out = vec![];
    for facts in sessions {
        let replay = replays.remove(&(facts.id, user_id)).unwrap_or_default();
        let result = match (facts.settled_at, stored.remove(&(facts.id, user_id))) {
            (Some(_), Some((live, row))) => PersonResult::new(&facts, user_id, live, Some(row), replay),
            // Settled without a row: they only watched.
            (Some(_), None) => PersonResult::new(&facts, user_id, Live::default(), None, replay),
            // Still running: the live part so far, from their own rows.
            (None, _) => {
                let mut conn = db.read.acquire().await?;
                let close = facts.schedule.ended_at.unwrap_or(now);
                let live = from_rows(&mut conn, facts.id, facts.window(close), Some(user_id))
                    .await?
                    .pop()
                    .map(|(_, _, live)| live)
                    .unwrap_or_default();
                PersonResult::new(&facts, user_id, live, None, replay)
            }
        };
        out.push(result);
    }
    Ok(out)
}

/// One person's result for one session, if the session exists.
pub async fn person_result(
    db: &Db,
    session_id: i64,
    user_id: i64,
    now: i64,
) -> Result<Option<PersonResult>, sqlx::Error> {
    Ok(person_results(db, user_id, now).await?.into_iter().find(|r| r.session_id == session_id))
}
