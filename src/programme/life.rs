//! Where a session is in its life, worked out the same way for every page:
//! upcoming, open (the room lets people in), live (a host took it live),
//! ended (the live part is over, a recording is still being finished),
//! settled (over, and every recording is finished: attendance and replay are
//! final). The end comes from the rooms (a host ended it, its time ran out,
//! or the room stood empty), so the programme, the session page, My
//! sessions and the organiser's page can never disagree about it.

use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::Schedule;
use super::{Session, Status};
use crate::AppState;

/// Presenters go backstage, and attendees into the lobby, this long before the start.
pub const OPENS_BEFORE_MINUTES: i64 = 30;

#[derive(Clone, Copy, Debug, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Life {
    /// Before the room opens.
    Upcoming,
    /// The room is open (from 30 minutes before the start): presenters
    /// backstage, attendees in the lobby.
    Open,
    /// A host took the room live.
    Live,
    /// The live part is over; a recording is still being finished.
    Ended,
    /// Over, with every recording finished.
    Settled,
}

impl Life {
    /// Ended or settled: nothing more to join, register for or cancel.
    pub fn is_over(self) -> bool {
        matches!(self, Life::Ended | Life::Settled)
    }
}

/// Sets `life` on each session as of now.
pub async fn fill_life(state: &AppState, sessions: &mut [Session]) -> Result<(), sqlx::Error> {
    let now = Utc::now().timestamp_millis();
    for s in sessions {
        s.life = life_of(state, s, now).await?;
    }
    Ok(())
}

async fn life_of(state: &AppState, s: &Session, now: i64) -> Result<Life, sqlx::Error> {
    let schedule = Schedule {
        ends_at: s.ends_at.timestamp_millis(),
        grace_ms: s.live_grace_ms,
        live_at: s.live_at,
        ended_at: s.ended_at,
    };
    // Only a session a host ended, or one past its scheduled end, can be over,
    // so the rooms are asked only then; a cancelled one never had a room to ask.
    let over = if s.status == Status::Cancelled {
        s.ended_at.is_some() || now >= schedule.ends_at
    } else if s.ended_at.is_some() || now >= schedule.ends_at {
        state.rooms.ended_at(s.id, &schedule).await?.is_some()
    } else {
        false
    };
    let opens = (s.starts_at - chrono::Duration::minutes(OPENS_BEFORE_MINUTES)).timestamp_millis();
    Ok(match () {
        _ if over && s.recordings_running > 0 => Life::Ended,
        _ if over => Life::Settled,
        _ if s.live_at.is_some() => Life::Live,
        _ if now >= opens => Life::Open,
        _ => Life::Upcoming,
    })
}
