//! What people do in a live room besides watching: chat, questions with
//! upvotes, and polls. Each is stored as it happens, for the replay page and
//! the organiser's exports.
//!
//! These functions hold the rules (lengths, one upvote and one ballot per
//! person, who may moderate) and the storage; the room task calls them and
//! broadcasts what they return, and the REST routes here serve preparation
//! (polls made before the session) and exports.

pub mod chat;
pub mod polls;
pub mod questions;

use crate::http::error::ApiError;

/// Why an interaction was refused. Each variant's text is shown to the person.
#[derive(Debug, thiserror::Error)]
pub enum InteractionError {
    /// Empty after trimming.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// Over the length limit.
    #[error("{what} is too long: at most {max} characters")]
    TooLong { what: &'static str, max: usize },
    /// Sending faster than the room allows.
    #[error("you are sending messages too quickly; wait a few seconds")]
    TooFast,
    /// The message, question, poll or option does not exist in this session.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Only hosts (and for polls, presenters) may do this.
    #[error("only hosts can {0}")]
    NotHost(&'static str),
    /// Only hosts and the presenters an organiser made co-hosts may do this.
    #[error("only hosts and co-hosts can {0}")]
    NotRunner(&'static str),
    /// A second ballot in one poll.
    #[error("you have already voted in this poll")]
    AlreadyVoted,
    /// A ballot outside an open poll, or a change to a poll past that stage.
    #[error("{0}")]
    WrongState(&'static str),
    /// Options that do not fit the poll.
    #[error("{0}")]
    BadChoice(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<InteractionError> for ApiError {
    fn from(e: InteractionError) -> Self {
        match e {
            InteractionError::Empty(field) => ApiError::invalid(field, format!("{field} is empty")),
            e @ InteractionError::TooLong { .. } => ApiError::Invalid { field: None, message: e.to_string() },
            e @ InteractionError::TooFast => ApiError::TooManyRequests(e.to_string()),
            InteractionError::NotFound(what) => ApiError::NotFound(what),
            e @ (InteractionError::NotHost(_) | InteractionError::NotRunner(_)) => ApiError::Forbidden(e.to_string()),
            e @ (InteractionError::AlreadyVoted | InteractionError::WrongState(_)) => {
                ApiError::Conflict { field: None, message: e.to_string() }
            }
            InteractionError::BadChoice(message) => ApiError::invalid("options", message),
            InteractionError::Database(e) => e.into(),
        }
    }
}

/// Trims `text` and checks it is neither empty nor longer than `max` characters.
pub fn clean_text(what: &'static str, text: &str, max: usize) -> Result<String, InteractionError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(InteractionError::Empty(what));
    }
    if text.chars().count() > max {
        return Err(InteractionError::TooLong { what, max });
    }
    Ok(text.to_string())
}

/// Now in Unix milliseconds, the resolution of every `at` column here.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
