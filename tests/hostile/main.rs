//! A hostile attendee, in a test binary of its own: its flood keeps both
//! cores busy, and the media tests in `tests/rooms` (which count lost
//! packets) must not share the machine with it.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

#[allow(dead_code)]
#[path = "../rooms/client.rs"]
mod client;

#[allow(dead_code)]
#[path = "../rooms/people.rs"]
mod people;

mod flood;

pub use people::{room_token, session_with_people};
