//! The room's side of recording: starting and stopping the recorder,
//! tapping the main stage's tracks, and the timeline of what the main room saw.

use std::collections::HashSet;

use super::{
    actor::{Recording, RoomTask},
    command::RoomCommand,
    protocol::{ErrorCode, ServerMessage},
    room::{Effect, ParticipantId, TrackId},
};
use crate::{interaction::InteractionError, recording::Recorder};

impl RoomTask {
    /// A host or co-host asked to record: the row and directory are made off the room task.
    pub(super) fn start_recording(&mut self, who: ParticipantId) {
        if !self.state.identity(who).is_some_and(|i| i.grants.runs_room()) {
            return self.refuse(who, InteractionError::NotRunner("start recording"));
        }
        if !matches!(self.recording, Recording::Off) {
            return self.refuse(who, InteractionError::WrongState("the session is already being recorded"));
        }
        self.recording = Recording::Starting;
        let (db, dir, sid, room) =
            (self.rooms.db.clone(), self.rooms.recordings_dir.clone(), self.session_id, self.tx.clone());
        tokio::spawn(async move {
            let result = Recorder::start(&db, &dir, sid, who).await.map_err(|e| {
                tracing::error!(error = ?e, "a recording could not start");
                "the recording could not start; try again".to_string()
            });
            let _ = room.send(RoomCommand::RecordingStarted { by: who, result });
        });
    }

    pub(super) fn recording_started(&mut self, by: ParticipantId, result: Result<Recorder, String>) {
        match result {
            Err(message) => {
                self.recording = Recording::Off;
                self.send_to(by, ServerMessage::error(ErrorCode::Internal, message));
            }
            Ok(recorder) => {
                let recording_id = recorder.id.clone();
                let participants = self.state.participants();
                recorder.event(serde_json::json!({"type": "participants", "participants": participants}));
                self.recording = Recording::On { recorder, tracks: HashSet::new() };
                for (track, ..) in self.state.main_room_tracks() {
                    self.record_track(&track);
                }
                self.broadcast(ServerMessage::Recording { on: true, recording_id });
            }
        }
    }

    /// Records `track` if a recording runs and the track is on the main stage.
    pub(super) fn record_track(&mut self, track: &TrackId) {
        let Recording::On { recorder, tracks } = &mut self.recording else { return };
        let Some((_, owner, kind, mime)) = self.state.main_room_tracks().into_iter().find(|(t, ..)| t == track) else {
            return;
        };
        let (Some(source), Some(identity)) = (self.sources.get(track), self.state.identity(owner)) else {
            return;
        };
        // A video file starts at a keyframe: the writer asks the publisher for
        // one (through the engine) until one arrives. A single request is
        // not enough: a browser may drop one that comes just after a keyframe
        // it sent (seen with Chrome when someone joined a moment before).
        let asker = source.clone();
        let ask: crate::recording::track::AskKeyframe = Box::new(move || asker.request_keyframe());
        if let Some(packets) = recorder.track(owner, &identity.name, kind.as_str(), &mime, ask) {
            source.record(Some(packets));
            tracks.insert(track.clone());
        }
    }

    /// Stops the recording, if one runs: its files are finished before this returns.
    pub(super) async fn stop_recording(&mut self, by: Option<ParticipantId>) {
        let Recording::On { recorder, tracks } = std::mem::replace(&mut self.recording, Recording::Off) else {
            return;
        };
        for track in &tracks {
            if let Some(source) = self.sources.get(track) {
                source.record(None);
            }
        }
        let recording_id = recorder.id.clone();
        if let Some(by) = by.and_then(|p| self.state.identity(p)) {
            recorder.event(serde_json::json!({"type": "stopped_by", "name": by.name}));
        }
        self.broadcast(ServerMessage::Recording { on: false, recording_id: recording_id.clone() });
        if by.is_some() {
            // Finished off the room task; everyone hears when it can be replayed.
            let room = self.tx.clone();
            tokio::spawn(async move {
                recorder.stop().await;
                let replay_url = format!("/replay.html?id={recording_id}");
                let saved = ServerMessage::RecordingSaved { recording_id, replay_url };
                let _ = room.send(RoomCommand::Deliver(vec![Effect::Broadcast { except: None, message: saved }]));
            });
        } else {
            // The room is closing: finish before it goes.
            recorder.stop().await;
        }
    }

    /// Adds what the main room saw to the recording's timeline: chat,
    /// questions, polls, who is on stage and speaking, tracks coming and going.
    pub(super) fn note(&self, message: &ServerMessage) {
        let Recording::On { recorder, .. } = &self.recording else { return };
        let wanted = matches!(
            message,
            ServerMessage::Chat { .. }
                | ServerMessage::ChatDeleted { .. }
                | ServerMessage::Question { .. }
                | ServerMessage::QuestionDeleted { .. }
                | ServerMessage::Poll { .. }
                | ServerMessage::PollResults { .. }
                | ServerMessage::ParticipantJoined { .. }
                | ServerMessage::ParticipantLeft { .. }
                | ServerMessage::ParticipantUpdated { .. }
                | ServerMessage::TrackPublished { .. }
                | ServerMessage::TrackUnpublished { .. }
                | ServerMessage::ActiveSpeaker { group: None, .. }
                | ServerMessage::Breakout { .. }
                | ServerMessage::Phase { .. }
        );
        if wanted {
            match serde_json::to_value(message) {
                Ok(value) => recorder.event(value),
                Err(e) => tracing::warn!(error = %e, "a timeline event could not be written"),
            }
        }
    }
}
