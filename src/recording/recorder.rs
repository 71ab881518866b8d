//! One running recording: a task that owns its directory, its timeline and
//! the writer threads of its tracks. The room task talks to it through a
//! [`Recorder`] handle; nothing here holds up the room.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use rtc::rtp::Packet;
use serde_json::{json, Value};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use super::{track, webm::Codec};
use crate::db::Db;

/// What the room tells the recording.
enum Command {
    Track {
        participant: i64,
        name: String,
        kind: &'static str,
        codec: Codec,
        packets: mpsc::Receiver<Packet>,
        ask: track::AskKeyframe,
    },
    Event(Value),
    Stop(oneshot::Sender<()>),
}

/// The room's handle on a running recording.
pub struct Recorder {
    pub id: String,
    clock: Instant,
    tx: mpsc::UnboundedSender<Command>,
}

impl Recorder {
    /// Starts recording `session_id`: the row, the directory and the task.
    pub async fn start(db: &Db, root: &Path, session_id: i64, by: i64) -> anyhow::Result<Recorder> {
        let id = new_id();
        let dir = root.join(&id);
        fs::create_dir_all(&dir)?;
        let timeline = OpenOptions::new().create_new(true).append(true).open(dir.join(super::TIMELINE))?;
        let started_at = chrono::Utc::now().timestamp_millis();
        let mut tx = db.begin().await?;
        sqlx::query(
            "insert into recordings (id, session_id, status, started_at, started_by) values ($1, $2, 'recording', $3, $4)",
        )
        .bind(&id)
        .bind(session_id)
        .bind(started_at)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let clock = Instant::now();
        let task = Task { id: id.clone(), db: db.clone(), dir, clock, timeline, files: 0, started_at };
        tokio::spawn(task.run(rx));
        tracing::info!(session = session_id, recording = %id, "recording started");
        Ok(Recorder { id, clock, tx: commands })
    }

    /// Records a track from now on; returns where its forwarder sends packets.
    /// `ask` requests a keyframe from the publisher.
    pub fn track(
        &self,
        participant: i64,
        name: &str,
        kind: &'static str,
        mime: &str,
        ask: track::AskKeyframe,
    ) -> Option<mpsc::Sender<Packet>> {
        let codec = Codec::from_mime(mime)?;
        let (sender, packets) = mpsc::channel(track::QUEUE);
        self.tx.send(Command::Track { participant, name: name.to_string(), kind, codec, packets, ask }).ok()?;
        Some(sender)
    }

    /// How far into the recording we are.
    pub fn elapsed_ms(&self) -> i64 {
        self.clock.elapsed().as_millis() as i64
    }

    /// Adds a line to the timeline, stamped with the recording's clock.
    pub fn event(&self, event: Value) {
        let _ = self.tx.send(Command::Event(event));
    }

    /// Stops: waits until every track's file is finished (their forwarders
    /// must have dropped their senders) and the row says `ready`.
    pub async fn stop(self) {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Command::Stop(done)).is_ok() {
            let _ = finished.await;
        }
    }
}

/// 128 random bits: the recording's id, directory name and unguessable link.
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A track's first frame is on disk, `start_ms` into the recording.
struct TrackStarted {
    file: String,
    participant: i64,
    name: String,
    kind: &'static str,
    start_ms: i64,
}

struct Task {
    id: String,
    db: Db,
    dir: PathBuf,
    clock: Instant,
    timeline: File,
    files: u32,
    started_at: i64,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut writers: JoinSet<(String, track::Written)> = JoinSet::new();
        // Writer threads say here when their first frame is on disk; the row
        // is stored from this task, so it is always in before the track's end.
        let (started_tx, mut started) = mpsc::unbounded_channel::<TrackStarted>();
        self.write_event(json!({"type": "recording_started", "at": self.started_at}));
        let stopped = loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Track { participant, name, kind, codec, packets, ask }) => {
                        self.files += 1;
                        let file = format!("{participant}-{kind}-{}.webm", self.files);
                        let tell = started_tx.clone();
                        let first = TrackStarted { file: file.clone(), participant, name, kind, start_ms: 0 };
                        let on_start: track::Started = Box::new(move |start_ms| {
                            let _ = tell.send(TrackStarted { start_ms, ..first });
                        });
                        let writer = track::spawn(self.dir.join(&file), codec, self.clock, packets, on_start, ask);
                        writers.spawn(async move { (file, writer.await.unwrap_or_default()) });
                    }
                    Some(Command::Event(event)) => self.write_event(event),
                    Some(Command::Stop(done)) => break Some(done),
                    None => break None,
                },
                Some(track) = started.recv() => self.track_started(track).await,
                Some(Ok((file, written))) = writers.join_next(), if !writers.is_empty() => {
                    self.track_finished(&mut started, &file, written).await;
                }
            }
        };
        while let Some(joined) = writers.join_next().await {
            if let Ok((file, written)) = joined {
                self.track_finished(&mut started, &file, written).await;
            }
        }
        let duration = self.clock.elapsed().as_millis() as i64;
        self.write_event(json!({"type": "recording_stopped"}));
        if let Err(e) = finish_row(&self.db, &self.dir, &self.id, "ready", self.started_at + duration, duration).await {
            tracing::error!(recording = %self.id, error = ?e, "failed to mark a recording finished");
        }
        tracing::info!(recording = %self.id, duration_ms = duration, "recording stopped");
        if let Some(done) = stopped {
            let _ = done.send(());
        }
    }

    fn write_event(&mut self, mut event: Value) {
        if let Value::Object(map) = &mut event {
            map.insert("t".into(), json!(self.clock.elapsed().as_millis() as i64));
        }
        let mut line = event.to_string();
        line.push('\n');
        // One write per line: a crash can tear only the last one, which readers skip.
        if let Err(e) = self.timeline.write_all(line.as_bytes()) {
            tracing::error!(recording = %self.id, error = %e, "timeline write failed");
        }
    }

    /// The row for a track is written when its first frame is on disk, so a
    /// crash recovery knows where the file starts on the recording's clock.
    async fn track_started(&self, t: TrackStarted) {
        let result = async {
            let mut tx = self.db.begin().await?;
            sqlx::query(
                "insert into recording_tracks (recording_id, file, participant_id, name, kind, start_ms)
                 values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&self.id)
            .bind(&t.file)
            .bind(t.participant)
            .bind(&t.name)
            .bind(t.kind)
            .bind(t.start_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        if let Err(e) = result.await {
            tracing::error!(recording = %self.id, file = %t.file, error = ?e, "failed to store a recorded track");
        }
    }

    async fn track_finished(
        &mut self,
        started: &mut mpsc::UnboundedReceiver<TrackStarted>,
        file: &str,
        written: track::Written,
    ) {
        // A finished writer's start was sent before it ended: store it first.
        while let Ok(track) = started.try_recv() {
            self.track_started(track).await;
        }
        let Some(start_ms) = written.start_ms else {
            // No frame ever came (a camera that was off): nothing to keep.
            let _ = fs::remove_file(self.dir.join(file));
            return;
        };
        self.write_event(json!({"type": "track_finished", "file": file, "start_ms": start_ms,
                                "duration_ms": written.duration_ms}));
        if let Err(e) = set_track(&self.db, &self.id, file, written.duration_ms, written.bytes as i64).await {
            tracing::error!(recording = %self.id, file, error = ?e, "failed to store a track's duration");
        }
    }
}

pub(super) async fn set_track(db: &Db, id: &str, file: &str, duration_ms: i64, bytes: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("update recording_tracks set duration_ms = $1, bytes = $2 where recording_id = $3 and file = $4")
        .bind(duration_ms)
        .bind(bytes)
        .bind(id)
        .bind(file)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Marks a recording finished with its size on disk.
pub(super) async fn finish_row(
    db: &Db,
    dir: &Path,
    id: &str,
    status: &str,
    stopped_at: i64,
    duration_ms: i64,
) -> Result<(), sqlx::Error> {
    let bytes = dir_size(dir) as i64;
    let mut tx = db.begin().await?;
    sqlx::query("update recordings set status = $1, stopped_at = $2, duration_ms = $3, bytes = $4 where id = $5")
        .bind(status)
        .bind(stopped_at)
        .bind(duration_ms)
        .bind(bytes)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
