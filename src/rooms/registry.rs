//! Every live room of this server, by session id: opens a room's actor on
//! the first join and forgets it when it closes.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{
    actor::RoomTask,
    command::{JoinError, Outbox, RoomCommand},
    protocol::History,
    room::{ConnId, Identity},
};
use crate::{attendance::journal, db::Db, media::Media, programme::Schedule};

/// Every live room of this server, by session id.
pub struct Rooms {
    pub(super) db: Db,
    pub(super) media: Media,
    pub(super) recordings_dir: PathBuf,
    pub(super) heartbeat: Duration,
    /// How long a room may stay empty after the scheduled end before the live part is over.
    pub(super) empty_room_end: Duration,
    rooms: Mutex<HashMap<i64, (u64, mpsc::UnboundedSender<RoomCommand>)>>,
    next_id: AtomicU64,
}

impl Rooms {
    pub fn new(db: Db, media: Media, recordings_dir: PathBuf, heartbeat: Duration, empty_room_end: Duration) -> Rooms {
        Rooms {
            db,
            media,
            recordings_dir,
            heartbeat,
            empty_room_end,
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn next_conn(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn room(self: &Arc<Self>, session_id: i64) -> mpsc::UnboundedSender<RoomCommand> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, tx)) = rooms.get(&session_id) {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        let generation = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        rooms.insert(session_id, (generation, tx.clone()));
        let room = RoomTask::new(session_id, generation, self.clone(), tx.clone());
        tokio::spawn(room.run(rx).instrument(tracing::info_span!("room", session = session_id)));
        tx
    }

    /// Enters `session_id`'s room, starting it if nobody is in.
    pub async fn join(
        self: &Arc<Self>,
        session_id: i64,
        identity: Identity,
        conn: ConnId,
        out: Outbox,
        history: History,
        live: bool,
        schedule: Schedule,
    ) -> Result<(), JoinError> {
        for _ in 0..3 {
            let (reply, answer) = oneshot::channel();
            let command = RoomCommand::Join {
                identity: identity.clone(),
                conn,
                out: out.clone(),
                history: history.clone(),
                live,
                schedule,
                reply,
            };
            if self.room(session_id).send(command).is_err() {
                continue;
            }
            match answer.await {
                // A room closing as the join arrived: the next try opens a fresh one.
                Ok(Err(JoinError::Closing)) | Err(_) => continue,
                Ok(result) => return result,
            }
        }
        Err(JoinError::Closing)
    }

    /// Passes a command to the room, if it is still running.
    pub fn send(&self, session_id: i64, command: RoomCommand) {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, tx)) = rooms.get(&session_id) {
            let _ = tx.send(command);
        }
    }

    /// Ends every room (at shutdown), so that everyone in one is recorded as
    /// having left with reason `ended` and told so (close code 4010).
    pub async fn end_all(&self) {
        let rooms: Vec<_> = {
            let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms.values().map(|(_, tx)| tx.clone()).collect()
        };
        let mut waiting = vec![];
        for tx in rooms {
            let (done, ended) = oneshot::channel();
            if tx.send(RoomCommand::End { done }).is_ok() {
                waiting.push(ended);
            }
        }
        let all = futures_util::future::join_all(waiting);
        if tokio::time::timeout(Duration::from_secs(10), all).await.is_err() {
            tracing::warn!("some rooms did not end within 10 seconds");
        }
    }

    /// When the live part of `session_id` ended, if it has (see
    /// [`Schedule::over_at`]). The first time a room that is not running is
    /// found over, the end is stored; a running room stores its own.
    pub async fn ended_at(&self, session_id: i64, schedule: &Schedule) -> Result<Option<i64>, sqlx::Error> {
        let now = chrono::Utc::now().timestamp_millis();
        if schedule.ended_at.is_some() || self.is_open(session_id) {
            // A running room's last join may still be on its way to the journal:
            // only the clock can say it is over.
            return Ok(schedule.ended_at.or((now >= schedule.closes_at()).then(|| schedule.closes_at())));
        }
        let last = journal::last_event(&self.db, session_id).await?;
        let over = schedule.over_at(now, last, self.empty_room_end.as_millis() as i64);
        if let Some(at) = over {
            journal::mark_ended(&self.db, session_id, at).await?;
        }
        Ok(over)
    }

    /// Whether `session_id`'s room is running on this server.
    pub fn is_open(&self, session_id: i64) -> bool {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.get(&session_id).is_some_and(|(_, tx)| !tx.is_closed())
    }

    pub(super) fn closed(&self, session_id: i64, generation: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.get(&session_id).is_some_and(|(g, _)| *g == generation) {
            rooms.remove(&session_id);
        }
    }
}
