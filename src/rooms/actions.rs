//! What a participant asks the room to do (chat, questions, hands, polls,
//! breakouts, stage and moderation): permissions from the token's grants,
//! rules in `RoomState` and `crate::interaction`, storage off the actor.

use std::time::Instant;

use super::{
    actor::{now_ms, Recording, RoomTask},
    command::RoomCommand,
    protocol::{Action, ErrorCode, ServerMessage},
    room::{Effect, ParticipantId},
};
use crate::interaction::{chat, polls, questions, InteractionError};

impl RoomTask {
    /// Runs `work` (database writes) off the room task, then delivers its
    /// effects through the room; a refusal goes back to `who` as an `error`.
    fn off_task<F>(&self, who: ParticipantId, work: F)
    where
        F: std::future::Future<Output = Result<Vec<Effect>, InteractionError>> + Send + 'static,
    {
        let room = self.tx.clone();
        tokio::spawn(async move {
            let fx = match work.await {
                Ok(fx) => fx,
                Err(e) => {
                    if let InteractionError::Database(db) = &e {
                        tracing::error!(error = ?db, "interaction failed");
                    }
                    let message = match &e {
                        InteractionError::Database(_) => "that could not be saved; try again".to_string(),
                        other => other.to_string(),
                    };
                    vec![Effect::Send(who, ServerMessage::error(ErrorCode::from(&e), message))]
                }
            };
            let _ = room.send(RoomCommand::Deliver(fx));
        });
    }

    /// Chat, questions, hands and polls. Permissions come from the token's
    /// grants; the rules and storage live in `crate::interaction`.
    pub(super) async fn act(&mut self, who: ParticipantId, action: Action) {
        let Some(identity) = self.state.identity(who).cloned() else { return };
        let host = identity.grants.host;
        // Co-hosts may go live, record and run breakouts, as hosts do.
        let runs = identity.grants.runs_room();
        let db = self.rooms.db.clone();
        let sid = self.session_id;
        let all = |message| Effect::Broadcast { except: None, message };
        match action {
            Action::Hand { raised } => {
                let fx = self.state.set_hand(who, raised, now_ms());
                self.apply(fx).await;
            }
            Action::HandLower { participant_id } => {
                if !host {
                    return self.refuse(who, InteractionError::NotHost("lower hands"));
                }
                let Ok(target) = participant_id.parse::<ParticipantId>() else {
                    return self.refuse(who, InteractionError::NotFound("participant"));
                };
                let fx = self.state.set_hand(target, false, now_ms());
                self.apply(fx).await;
            }
            Action::Chat { body } => {
                // A message that would be refused anyway does not use up the allowance.
                let checked = crate::interaction::clean_text("message", &body, chat::MAX_CHARS);
                if let Err(e) = checked.and_then(|_| self.chat_throttle.check(who, Instant::now())) {
                    return self.refuse(who, e);
                }
                // Chat inside a breakout group stays in the group.
                let space = self.state.space_of(who);
                self.off_task(who, async move {
                    let message = chat::post(&db, sid, who, &body, space).await?;
                    Ok(vec![Effect::ToSpace(space, ServerMessage::Chat { message })])
                });
            }
            Action::ChatDelete { id } => self.off_task(who, async move {
                chat::delete(&db, sid, id, who, host).await?;
                Ok(vec![all(ServerMessage::ChatDeleted { id })])
            }),
            Action::Ask { body } => {
                if let Err(e) = self.chat_throttle.check(who, Instant::now()) {
                    return self.refuse(who, e);
                }
                self.off_task(who, async move {
                    let question = questions::ask(&db, sid, who, &body).await?;
                    Ok(vec![all(ServerMessage::Question { question })])
                });
            }
            Action::Upvote { id } => self.off_task(who, async move {
                // Only a new vote is news.
                let question = questions::upvote(&db, sid, id, who).await?;
                Ok(question.into_iter().map(|question| all(ServerMessage::Question { question })).collect())
            }),
            Action::QuestionAnswered { id, answered } => self.off_task(who, async move {
                let question = questions::set_answered(&db, sid, id, answered, host).await?;
                Ok(vec![all(ServerMessage::Question { question })])
            }),
            Action::QuestionHighlight { id } => self.off_task(who, async move {
                // Both the newly highlighted question and the one it replaces change.
                let before: Vec<i64> =
                    questions::list(&db, sid, who).await?.into_iter().filter(|q| q.highlighted).map(|q| q.id).collect();
                questions::highlight(&db, sid, id, host).await?;
                let mut fx = vec![];
                for qid in before.into_iter().chain(id) {
                    let mut question = questions::load(&db, sid, qid).await?;
                    question.you_voted = None;
                    fx.push(all(ServerMessage::Question { question }));
                }
                Ok(fx)
            }),
            Action::QuestionDelete { id } => self.off_task(who, async move {
                questions::delete(&db, sid, id, who, host).await?;
                Ok(vec![all(ServerMessage::QuestionDeleted { id })])
            }),
            Action::PollCreate { question, options, multiple, anonymous, open } => {
                if !host {
                    return self.refuse(who, InteractionError::NotHost("create polls"));
                }
                self.off_task(who, async move {
                    let input = polls::PollInput { question, options, multiple, anonymous };
                    let poll = polls::create(&db, sid, who, &input, open).await?;
                    let results = polls::results(&db, sid, poll.id).await?;
                    let announce = ServerMessage::Poll { poll };
                    Ok(vec![
                        if open { all(announce) } else { Effect::ToHosts(announce) },
                        Effect::ToHosts(ServerMessage::PollResults { results }),
                    ])
                });
            }
            Action::PollOpen { id } | Action::PollClose { id } | Action::PollReveal { id } => {
                let step = match action {
                    Action::PollOpen { .. } => Some(polls::PollStatus::Open),
                    Action::PollClose { .. } => Some(polls::PollStatus::Closed),
                    _ => None,
                };
                self.off_task(who, async move {
                    let poll = match step {
                        Some(to) => polls::set_status(&db, sid, id, to, host).await?,
                        None => polls::reveal(&db, sid, id, host).await?,
                    };
                    let results = polls::results(&db, sid, id).await?;
                    let revealed = poll.revealed;
                    let mut fx = vec![all(ServerMessage::Poll { poll })];
                    let results = ServerMessage::PollResults { results };
                    fx.push(if revealed { all(results) } else { Effect::ToHosts(results) });
                    Ok(fx)
                });
            }
            Action::BreakoutOpen { plan } => {
                let fx = self.state.breakout_open(who, &plan, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutMove { participant_id, group } => {
                let target = participant_id.parse::<ParticipantId>().unwrap_or(-1);
                let fx = self.state.breakout_move(who, target, group, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutVisit { group } => {
                let fx = self.state.breakout_move(who, who, group, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutChoose { group } => {
                let fx = self.state.breakout_choose(who, group, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutOpenSaved => {
                if !runs {
                    return self.refuse(who, InteractionError::NotRunner("open breakout groups"));
                }
                let room = self.tx.clone();
                tokio::spawn(async move {
                    let command = match crate::breakout::saved_plan(&db, sid).await {
                        Ok(Some(plan)) => RoomCommand::OpenPlan { by: who, plan },
                        Ok(None) => RoomCommand::Deliver(vec![Effect::Send(
                            who,
                            ServerMessage::error(ErrorCode::NotFound, "no breakout plan was saved for this session"),
                        )]),
                        Err(e) => {
                            tracing::error!(error = ?e, "failed to load the breakout plan");
                            RoomCommand::Deliver(vec![Effect::Send(
                                who,
                                ServerMessage::error(ErrorCode::Internal, "the saved plan could not be loaded"),
                            )])
                        }
                    };
                    let _ = room.send(command);
                });
            }
            Action::BreakoutLeave => {
                let fx = self.state.breakout_leave(who, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutExtend { minutes } => {
                let fx = self.state.breakout_extend(who, minutes, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutClose => {
                let fx = self.state.breakout_close(who, now_ms());
                self.apply(fx).await;
            }
            Action::BreakoutBroadcast { text } => {
                let fx = self.state.breakout_broadcast(who, &text);
                self.apply(fx).await;
            }
            Action::BreakoutHelp => {
                let fx = self.state.breakout_help(who);
                self.apply(fx).await;
            }
            Action::RecordStart => self.start_recording(who),
            Action::RecordStop => {
                if !runs {
                    return self.refuse(who, InteractionError::NotRunner("stop recording"));
                }
                if !matches!(self.recording, Recording::On { .. }) {
                    return self.refuse(who, InteractionError::WrongState("the session is not being recorded"));
                }
                self.stop_recording(Some(who)).await;
            }
            Action::Chapter { title } => {
                if !runs {
                    return self.refuse(who, InteractionError::NotRunner("mark chapters"));
                }
                let title = match crate::interaction::clean_text("title", &title, 120) {
                    Ok(t) => t,
                    Err(e) => return self.refuse(who, e),
                };
                let Recording::On { recorder, .. } = &self.recording else {
                    return self
                        .refuse(who, InteractionError::WrongState("chapters can only be marked while recording"));
                };
                let t_ms = recorder.elapsed_ms();
                recorder.event(serde_json::json!({"type": "chapter", "title": title, "by": identity.name}));
                let fx = vec![Effect::ToHosts(ServerMessage::Chapter { title, t_ms })];
                self.apply(fx).await;
            }
            control @ (Action::GoLive
            | Action::EndSession
            | Action::StageInvite { .. }
            | Action::StageAccept
            | Action::StageDecline
            | Action::StageRemove { .. }
            | Action::Mute { .. }
            | Action::Unmute { .. }
            | Action::Remove { .. }) => self.control(who, control).await,
            Action::Vote { poll_id, options } => self.off_task(who, async move {
                let results = polls::vote(&db, sid, poll_id, who, &options).await?;
                let revealed = polls::load(&db, sid, poll_id).await?.revealed;
                let results = ServerMessage::PollResults { results };
                Ok(vec![
                    Effect::Send(who, ServerMessage::Voted { poll_id }),
                    if revealed { all(results) } else { Effect::ToHosts(results) },
                ])
            }),
        }
    }

    /// Stage, mutes and removals: the rules are in `RoomState`.
    async fn control(&mut self, who: ParticipantId, action: Action) {
        let target = |id: &str| id.parse::<ParticipantId>().unwrap_or(-1);
        let fx = match action {
            Action::StageInvite { participant_id } => self.state.stage_invite(who, target(&participant_id)),
            Action::StageAccept => self.state.stage_accept(who),
            Action::StageDecline => self.state.stage_decline(who),
            Action::StageRemove { participant_id } => self.state.stage_remove(who, target(&participant_id)),
            Action::Mute { participant_id, kind } => self.state.mute(who, target(&participant_id), &kind),
            Action::Unmute { participant_id, kind } => {
                let target = participant_id.as_deref().map_or(who, target);
                self.state.unmute(who, target, &kind)
            }
            Action::Remove { participant_id, bar } => self.state.remove(who, target(&participant_id), bar, now_ms()),
            Action::GoLive => {
                let fx = self.state.go_live(who, now_ms());
                let went_live = fx.iter().any(|e| matches!(e, Effect::WentLive));
                self.apply(fx).await;
                if went_live {
                    self.record_if_automatic(who);
                }
                return;
            }
            Action::EndSession => {
                if !self.state.identity(who).is_some_and(|i| i.grants.host) {
                    return self.refuse(who, InteractionError::NotHost("end the session"));
                }
                self.finish(now_ms(), "the host ended the session").await;
                return;
            }
            _ => return,
        };
        self.apply(fx).await;
    }

    pub(super) fn refuse(&self, who: ParticipantId, e: InteractionError) {
        self.send_to(who, ServerMessage::error(ErrorCode::from(&e), e.to_string()));
    }

    /// The session records itself from going live when its organiser said so.
    fn record_if_automatic(&self, host: ParticipantId) {
        let (db, sid, room) = (self.rooms.db.clone(), self.session_id, self.tx.clone());
        tokio::spawn(async move {
            match crate::programme::load(&db, sid).await {
                Ok(Some(session)) if session.record_automatically => {
                    let _ = room.send(RoomCommand::RecordAutomatically { by: host });
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = ?e, "could not read whether to record automatically"),
            }
        });
    }
}
