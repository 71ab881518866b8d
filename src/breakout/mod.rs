//! Breakout groups inside a live room: the plan, who is in which group, the
//! timer and the return. Pure state, no I/O: the room (`rooms::room`) asks
//! [`Breakouts::space_of`] where each person is and forwards media only
//! within a space, so a participant in group 1 never receives group 2.
//!
//! See docs/breakouts.md.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::{self, Db},
    http::{
        error::{ApiError, ApiResult, ErrorBody},
        extract::{AuthUser, Json, Path},
    },
    programme, AppState,
};

pub type GroupId = u32;
pub type ParticipantId = i64;

/// Longest a breakout may run, and a sensible default.
pub const MAX_MINUTES: f64 = 120.0;

fn minutes_ms(minutes: f64) -> Result<i64, BreakoutError> {
    if !minutes.is_finite() || minutes <= 0.0 || minutes > MAX_MINUTES {
        return Err(BreakoutError::BadPlan(format!("minutes must be more than 0 and at most {MAX_MINUTES}")));
    }
    Ok((minutes * 60_000.0).round() as i64)
}
/// How long people see the "returning" countdown before they are moved back.
pub const DEFAULT_RETURN_SECONDS: i64 = 30;
/// The warning before the end.
pub const WARNING_MS: i64 = 60_000;

/// What a host sends to open groups.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Plan {
    /// Named groups, each optionally with members chosen by hand.
    #[serde(default)]
    pub groups: Vec<GroupPlan>,
    /// Put everyone not placed by hand into this many groups at random
    /// (groups beyond those named get "Group N").
    #[serde(default)]
    pub random_groups: Option<u32>,
    /// Or: as many groups as it takes to have about this many people in each
    /// (everyone not placed by hand, at random; at least one group, and at
    /// least as many as are named).
    #[serde(default)]
    pub people_per_group: Option<u32>,
    /// Minutes until the groups close on their own (fractions allowed: 0.5 is
    /// thirty seconds).
    pub minutes: f64,
    /// Participants may leave their group for the main room.
    #[serde(default)]
    pub allow_leave: bool,
    /// Seconds of countdown before everyone returns (default 30).
    #[serde(default)]
    pub return_seconds: Option<i64>,
    /// Participants pick their own group (`breakout_choose`).
    #[serde(default)]
    pub self_select: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GroupPlan {
    pub name: String,
    /// A task or prompt shown to the group.
    #[serde(default)]
    pub task: String,
    /// Participant ids placed here by hand. Someone not in the room yet lands
    /// in this group when they join.
    #[serde(default)]
    pub members: Vec<String>,
}

/// Why a breakout command was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BreakoutError {
    /// Groups are already open.
    #[error("breakout groups are already open")]
    AlreadyOpen,
    /// Nothing to move, extend or close.
    #[error("no breakout groups are open")]
    NotOpen,
    /// The plan is not usable; says why.
    #[error("{0}")]
    BadPlan(String),
    /// No such group.
    #[error("there is no group {0}")]
    UnknownGroup(GroupId),
    /// No such participant in the room.
    #[error("that participant is not in the room")]
    UnknownParticipant,
    /// Choosing a group is not allowed in this breakout.
    #[error("the host has not let people choose their group")]
    ChoosingNotAllowed,
    /// Leaving a group is not allowed in this breakout.
    #[error("the host has not allowed leaving groups")]
    LeaveNotAllowed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    id: GroupId,
    name: String,
    task: String,
}

/// What everyone is told about the breakout (in `breakout` messages).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct View {
    pub open: bool,
    pub groups: Vec<GroupView>,
    /// Unix ms when the groups close on their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<i64>,
    /// Unix ms when everyone is moved back (the countdown has started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returning_at: Option<i64>,
    pub allow_leave: bool,
    pub self_select: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GroupView {
    pub id: GroupId,
    pub name: String,
    pub task: String,
    pub members: Vec<String>,
}

/// A change the timer brought about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerEvent {
    /// One minute left.
    Warning,
    /// Time is up: the return countdown started.
    Returning,
    /// Everyone is back in the main room.
    Closed,
}

#[derive(Default)]
pub struct Breakouts {
    groups: Vec<Group>,
    /// Where each person belongs while groups are open; kept across a
    /// reconnect so they come back to their group.
    assignment: HashMap<ParticipantId, GroupId>,
    open: bool,
    ends_at: Option<i64>,
    returning_at: Option<i64>,
    warned: bool,
    allow_leave: bool,
    self_select: bool,
    return_ms: i64,
}

impl Plan {
    /// Checks what can be checked without the room: timer, counts, lengths.
    pub fn validate(&self) -> Result<(), BreakoutError> {
        let mut probe = Breakouts::default();
        probe.open(self, &[], 0).map(|_| ())
    }
}

impl Breakouts {
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Where `p` is: `Some(group)` inside an open breakout, `None` in the main room.
    pub fn space_of(&self, p: ParticipantId) -> Option<GroupId> {
        if self.open {
            self.assignment.get(&p).copied()
        } else {
            None
        }
    }

    pub fn group_name(&self, g: GroupId) -> Option<&str> {
        self.groups.iter().find(|x| x.id == g).map(|x| x.name.as_str())
    }

    /// Opens groups. `present` are the people in the room who may be placed at
    /// random (attendees).
    pub fn open(&mut self, plan: &Plan, present: &[ParticipantId], now_ms: i64) -> Result<(), BreakoutError> {
        if self.open {
            return Err(BreakoutError::AlreadyOpen);
        }
        let duration = minutes_ms(plan.minutes)?;
        let return_seconds = plan.return_seconds.unwrap_or(DEFAULT_RETURN_SECONDS);
        if !(0..=120).contains(&return_seconds) {
            return Err(BreakoutError::BadPlan("return_seconds must be between 0 and 120".into()));
        }
        let random = match (plan.random_groups, plan.people_per_group) {
            (Some(_), Some(_)) => {
                return Err(BreakoutError::BadPlan("ask for random_groups or people_per_group, not both".into()))
            }
            (_, Some(0)) => return Err(BreakoutError::BadPlan("people_per_group must be at least 1".into())),
            (_, Some(size)) => {
                let placed_by_hand: usize = plan.groups.iter().map(|g| g.members.len()).sum();
                let to_place = present.len().saturating_sub(placed_by_hand);
                to_place.div_ceil(size as usize).max(plan.groups.len()).max(1)
            }
            (random, None) => random.unwrap_or(0) as usize,
        };
        let count = plan.groups.len().max(random);
        if count == 0 {
            return Err(BreakoutError::BadPlan("name at least one group, or ask for random_groups".into()));
        }
        if count > 50 {
            return Err(BreakoutError::BadPlan("at most 50 groups".into()));
        }
        let mut groups = vec![];
        for i in 0..count {
            let (name, task) = match plan.groups.get(i) {
                Some(g) => (g.name.trim().to_string(), g.task.trim().to_string()),
                None => (String::new(), String::new()),
            };
            let name = if name.is_empty() { format!("Group {}", i + 1) } else { name };
            if name.chars().count() > 60 || task.chars().count() > 1000 {
                return Err(BreakoutError::BadPlan("group names are at most 60 characters, tasks 1,000".into()));
            }
            groups.push(Group { id: i as GroupId + 1, name, task });
        }
        let mut assignment = HashMap::new();
        for (i, g) in plan.groups.iter().enumerate() {
            for m in &g.members {
                let id: ParticipantId = m.trim().parse().map_err(|_| BreakoutError::UnknownParticipant)?;
                assignment.insert(id, i as GroupId + 1);
            }
        }
        if random > 0 {
            let mut rest: Vec<ParticipantId> =
                present.iter().copied().filter(|p| !assignment.contains_key(p)).collect();
            rest.sort_unstable();
            rest.shuffle(&mut rand::thread_rng());
            // Fill the smallest group first, so hand-placed people count.
            for p in rest {
                let mut sizes: BTreeMap<GroupId, usize> = (1..=random as GroupId).map(|g| (g, 0)).collect();
                for g in assignment.values() {
                    if let Some(n) = sizes.get_mut(g) {
                        *n += 1;
                    }
                }
                let (smallest, _) =
                    sizes.iter().min_by_key(|(g, n)| (**n, **g)).map(|(g, n)| (*g, *n)).unwrap_or((1, 0));
                assignment.insert(p, smallest);
            }
        }
        *self = Breakouts {
            groups,
            assignment,
            open: true,
            ends_at: Some(now_ms + duration),
            returning_at: None,
            warned: false,
            allow_leave: plan.allow_leave,
            self_select: plan.self_select,
            return_ms: return_seconds * 1000,
        };
        Ok(())
    }

    /// Moves `p` to `group`, or to the main room with `None`.
    pub fn move_to(&mut self, p: ParticipantId, group: Option<GroupId>) -> Result<(), BreakoutError> {
        if !self.open {
            return Err(BreakoutError::NotOpen);
        }
        match group {
            Some(g) if !self.groups.iter().any(|x| x.id == g) => Err(BreakoutError::UnknownGroup(g)),
            Some(g) => {
                self.assignment.insert(p, g);
                Ok(())
            }
            None => {
                self.assignment.remove(&p);
                Ok(())
            }
        }
    }

    /// A participant picks a group, when the host allows it.
    pub fn choose(&mut self, p: ParticipantId, group: GroupId) -> Result<(), BreakoutError> {
        if !self.open {
            return Err(BreakoutError::NotOpen);
        }
        if !self.self_select {
            return Err(BreakoutError::ChoosingNotAllowed);
        }
        self.move_to(p, Some(group))
    }

    /// A participant goes back to the main room themselves.
    pub fn leave_group(&mut self, p: ParticipantId) -> Result<(), BreakoutError> {
        if !self.open {
            return Err(BreakoutError::NotOpen);
        }
        if !self.allow_leave {
            return Err(BreakoutError::LeaveNotAllowed);
        }
        self.assignment.remove(&p);
        Ok(())
    }

    pub fn extend(&mut self, minutes: f64, now_ms: i64) -> Result<(), BreakoutError> {
        if !self.open {
            return Err(BreakoutError::NotOpen);
        }
        let more = minutes_ms(minutes)?;
        let base = self.ends_at.unwrap_or(now_ms).max(now_ms);
        self.ends_at = Some(base + more);
        self.returning_at = None;
        self.warned = self.ends_at.is_some_and(|e| e - now_ms <= WARNING_MS);
        Ok(())
    }

    /// The host closes the groups: the return countdown starts now.
    pub fn close(&mut self, now_ms: i64) -> Result<(), BreakoutError> {
        if !self.open {
            return Err(BreakoutError::NotOpen);
        }
        self.returning_at = Some(self.returning_at.unwrap_or(now_ms + self.return_ms).min(now_ms + self.return_ms));
        Ok(())
    }

    /// Advances the timer.
    pub fn tick(&mut self, now_ms: i64) -> Option<TimerEvent> {
        if !self.open {
            return None;
        }
        if let Some(at) = self.returning_at {
            if now_ms >= at {
                self.open = false;
                self.returning_at = None;
                self.ends_at = None;
                return Some(TimerEvent::Closed);
            }
            return None;
        }
        let ends = self.ends_at?;
        if now_ms >= ends {
            self.returning_at = Some(now_ms + self.return_ms);
            return Some(TimerEvent::Returning);
        }
        if !self.warned && ends - now_ms <= WARNING_MS {
            self.warned = true;
            return Some(TimerEvent::Warning);
        }
        None
    }

    /// The state as clients see it; `present` filters members to those in the room.
    pub fn view(&self, present: impl Fn(ParticipantId) -> bool) -> View {
        View {
            open: self.open,
            groups: self
                .groups
                .iter()
                .map(|g| {
                    let mut members: Vec<ParticipantId> = self
                        .assignment
                        .iter()
                        .filter(|(p, group)| **group == g.id && present(**p))
                        .map(|(p, _)| *p)
                        .collect();
                    members.sort_unstable();
                    GroupView {
                        id: g.id,
                        name: g.name.clone(),
                        task: g.task.clone(),
                        members: members.into_iter().map(|p| p.to_string()).collect(),
                    }
                })
                .collect(),
            ends_at: if self.open { self.ends_at } else { None },
            returning_at: self.returning_at,
            allow_leave: self.allow_leave,
            self_select: self.self_select,
        }
    }
}

/// The plan saved for a session, if any.
pub async fn saved_plan(db: &Db, session_id: i64) -> Result<Option<Plan>, sqlx::Error> {
    let text: Option<String> = sqlx::query_scalar("select plan from breakout_plans where session_id = $1")
        .bind(session_id)
        .fetch_optional(&db.read)
        .await?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

async fn require_runner(state: &AppState, user: &crate::auth::User, session_id: i64) -> ApiResult<()> {
    programme::load(&state.db, session_id).await?.ok_or(ApiError::NotFound("session"))?;
    if user.is_organiser || programme::is_presenter(&state.db, session_id, user.id).await? {
        Ok(())
    } else {
        Err(ApiError::forbidden("only the session's presenters and organisers can plan breakout groups"))
    }
}

/// Save the breakout plan for a session ahead of time (organisers and the
/// session's presenters); a host opens it in the room with `breakout_open_saved`.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), put, path = "/api/sessions/{id}/breakout-plan", tag = "rooms", request_body = Plan,
    responses((status = 200, body = Plan), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn save(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
    Json(plan): Json<Plan>,
) -> ApiResult<Json<Plan>> {
    require_runner(&state, &user, id).await?;
    plan.validate().map_err(|e| ApiError::invalid("plan", e.to_string()))?;
    let text = serde_json::to_string(&plan).map_err(anyhow::Error::from)?;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "insert into breakout_plans (session_id, plan, updated_by, updated_at) values ($1, $2, $3, $4)
         on conflict (session_id) do update set plan = excluded.plan, updated_by = excluded.updated_by,
         updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(&text)
    .bind(user.id)
    .bind(db::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(plan))
}

/// The saved breakout plan of a session.
#[utoipa::path(security(("bearer" = []), ("cookie" = [])), get, path = "/api/sessions/{id}/breakout-plan", tag = "rooms",
    responses((status = 200, body = Plan), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(State(state): State<AppState>, AuthUser(user): AuthUser, Path(id): Path<i64>) -> ApiResult<Json<Plan>> {
    require_runner(&state, &user, id).await?;
    Ok(Json(saved_plan(&state.db, id).await?.ok_or(ApiError::NotFound("breakout plan"))?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, save))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(random: u32, minutes: f64) -> Plan {
        Plan { random_groups: Some(random), minutes, ..Default::default() }
    }

    #[test]
    fn seven_people_in_three_random_groups_are_spread_evenly() {
        let mut b = Breakouts::default();
        let people: Vec<i64> = (1..=7).collect();
        b.open(&plan(3, 10.0), &people, 0).unwrap();
        let mut sizes = [0; 3];
        for p in &people {
            sizes[b.space_of(*p).unwrap() as usize - 1] += 1;
        }
        sizes.sort();
        assert_eq!(sizes, [2, 2, 3]);
        assert_eq!(b.open(&plan(3, 10.0), &people, 0), Err(BreakoutError::AlreadyOpen));
    }

    #[test]
    fn people_per_group_makes_as_many_groups_as_it_takes() {
        let mut b = Breakouts::default();
        let people: Vec<i64> = (1..=7).collect();
        let by_size = Plan { people_per_group: Some(3), minutes: 5.0, ..Default::default() };
        b.open(&by_size, &people, 0).unwrap();
        let mut sizes = [0; 3];
        for p in &people {
            sizes[b.space_of(*p).unwrap() as usize - 1] += 1;
        }
        sizes.sort();
        assert_eq!(sizes, [2, 2, 3], "7 people, about 3 a group: 3 groups");
        let both = Plan { random_groups: Some(2), ..by_size.clone() };
        assert!(matches!(Breakouts::default().open(&both, &people, 0), Err(BreakoutError::BadPlan(_))));
        let zero = Plan { people_per_group: Some(0), ..by_size.clone() };
        assert!(matches!(Breakouts::default().open(&zero, &people, 0), Err(BreakoutError::BadPlan(_))));
        assert!(by_size.validate().is_ok(), "a saved plan by size is valid before anyone is there");
    }

    #[test]
    fn bad_plans_and_moves_are_refused_and_change_nothing() {
        let mut b = Breakouts::default();
        assert!(matches!(b.open(&plan(2, 0.0), &[1], 0), Err(BreakoutError::BadPlan(_))));
        assert!(matches!(b.open(&plan(2, -5.0), &[1], 0), Err(BreakoutError::BadPlan(_))));
        assert!(matches!(b.open(&plan(0, 5.0), &[1], 0), Err(BreakoutError::BadPlan(_))));
        assert_eq!(b.move_to(1, Some(1)), Err(BreakoutError::NotOpen));
        let by_hand = Plan {
            groups: vec![GroupPlan { name: "A".into(), task: String::new(), members: vec!["someone".into()] }],
            minutes: 5.0,
            ..Default::default()
        };
        assert_eq!(b.open(&by_hand, &[1], 0), Err(BreakoutError::UnknownParticipant));
        assert!(!b.is_open());
        b.open(&plan(2, 5.0), &[1, 2], 0).unwrap();
        assert_eq!(b.choose(1, 2), Err(BreakoutError::ChoosingNotAllowed));
        assert_eq!(b.move_to(1, Some(9)), Err(BreakoutError::UnknownGroup(9)));
        assert_eq!(b.leave_group(1), Err(BreakoutError::LeaveNotAllowed));
        assert!(matches!(b.extend(0.0, 0), Err(BreakoutError::BadPlan(_))));
    }

    #[test]
    fn someone_placed_by_hand_who_is_not_here_yet_lands_in_their_group_on_arrival() {
        let mut b = Breakouts::default();
        let p = Plan {
            groups: vec![GroupPlan { name: "Mentors".into(), task: String::new(), members: vec!["42".into()] }],
            minutes: 5.0,
            self_select: true,
            ..Default::default()
        };
        b.open(&p, &[1], 0).unwrap();
        assert_eq!(b.space_of(42), Some(1));
        assert_eq!(b.space_of(1), None, "not placed: chooses for themselves");
        b.choose(1, 1).unwrap();
        assert_eq!(b.space_of(1), Some(1));
    }

    #[test]
    fn the_timer_warns_then_counts_down_then_brings_everyone_back() {
        let mut b = Breakouts::default();
        let p = Plan { return_seconds: Some(30), ..plan(2, 2.0) };
        b.open(&p, &[1, 2], 0).unwrap();
        assert_eq!(b.tick(30_000), None);
        assert_eq!(b.tick(60_000), Some(TimerEvent::Warning));
        assert_eq!(b.tick(61_000), None);
        b.extend(1.0, 61_000).unwrap();
        assert_eq!(b.tick(119_000), None, "extended by a minute");
        assert_eq!(b.tick(125_000), Some(TimerEvent::Warning));
        assert_eq!(b.tick(180_000), Some(TimerEvent::Returning));
        assert!(b.space_of(1).is_some(), "still in the group during the countdown");
        assert_eq!(b.tick(210_000), Some(TimerEvent::Closed));
        assert_eq!(b.space_of(1), None);
    }
}
