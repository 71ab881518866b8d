use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;
use staffroom::interaction::{chat, polls, questions, InteractionError};

use crate::{
    both_backends,
    helpers::{spawn_app, Backend, TestApp},
};

async fn user_id(app: &TestApp, token: &str) -> i64 {
    app.get("/api/me", Some(token)).await.1["id"].as_i64().unwrap()
}

async fn chat_is_stored_length_limited_and_only_hosts_remove_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let session = app.session(&organiser, "Chatty", 10, Duration::days(1)).await;
    let ann = user_id(&app, &app.sign_up("Ann", "ann@oak.sch.uk").await).await;
    let db = &app.state.db;

    let first = chat::post(db, session, ann, "  <b>Hello</b> from Oak!  ", None).await.unwrap();
    assert_eq!((first.body.as_str(), first.author_name.as_str()), ("<b>Hello</b> from Oak!", "Ann"));
    let second = chat::post(db, session, ann, "Second", None).await.unwrap();
    assert!(matches!(chat::post(db, session, ann, "   ", None).await, Err(InteractionError::Empty(_))));
    let long = "x".repeat(chat::MAX_CHARS + 1);
    assert!(matches!(chat::post(db, session, ann, &long, None).await, Err(InteractionError::TooLong { .. })));

    assert!(matches!(chat::delete(db, session, first.id, ann, false).await, Err(InteractionError::NotHost(_))));
    chat::delete(db, session, first.id, ann, true).await.unwrap();
    assert!(matches!(chat::delete(db, session, first.id, ann, true).await, Err(InteractionError::NotFound(_))));
    let recent = chat::recent(db, session, None, 50).await.unwrap();
    assert_eq!(recent, vec![second.clone()]);
    // What is said in a breakout group stays with that group.
    let in_group = chat::post(db, session, ann, "In group two", Some(2)).await.unwrap();
    assert_eq!(chat::recent(db, session, None, 50).await.unwrap(), vec![second]);
    assert_eq!(chat::recent(db, session, Some(2), 50).await.unwrap(), vec![in_group]);
    assert_eq!(chat::recent(db, session, Some(1), 50).await.unwrap(), vec![]);
}
both_backends!(chat_is_stored_length_limited_and_only_hosts_remove_messages);

async fn questions_take_one_upvote_per_person_and_hosts_answer_and_highlight(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let host = user_id(&app, &organiser).await;
    let session = app.session(&organiser, "Q&A", 10, Duration::days(1)).await;
    let ann = user_id(&app, &app.sign_up("Ann", "ann@oak.sch.uk").await).await;
    let bob = user_id(&app, &app.sign_up("Bob", "bob@oak.sch.uk").await).await;
    let db = &app.state.db;

    let q1 = questions::ask(db, session, ann, "How do I start retrieval practice?").await.unwrap();
    let q2 = questions::ask(db, session, bob, "What about mixed-age classes?").await.unwrap();
    assert_eq!(questions::upvote(db, session, q2.id, ann).await.unwrap().map(|q| q.votes), Some(1));
    assert!(questions::upvote(db, session, q2.id, ann).await.unwrap().is_none(), "one upvote per person: no news");
    assert_eq!(questions::upvote(db, session, q2.id, bob).await.unwrap().map(|q| q.votes), Some(2));

    let listed = questions::list(db, session, ann).await.unwrap();
    assert_eq!(listed.iter().map(|q| q.id).collect::<Vec<_>>(), [q2.id, q1.id], "most upvoted first");
    assert_eq!(listed[0].you_voted, Some(true));
    assert_eq!(listed[1].you_voted, Some(false));

    assert!(matches!(questions::highlight(db, session, Some(q1.id), false).await, Err(InteractionError::NotHost(_))));
    questions::highlight(db, session, Some(q1.id), true).await.unwrap();
    let listed = questions::list(db, session, host).await.unwrap();
    assert_eq!(listed[0].id, q1.id, "the highlighted question comes first");
    assert!(listed[0].highlighted);
    let answered = questions::set_answered(db, session, q1.id, true, true).await.unwrap();
    assert!(answered.answered && !answered.highlighted);
    let listed = questions::list(db, session, host).await.unwrap();
    assert_eq!(listed.last().unwrap().id, q1.id, "answered questions go last");

    assert!(matches!(questions::delete(db, session, q2.id, ann, false).await, Err(InteractionError::NotHost(_))));
    questions::delete(db, session, q2.id, bob, false).await.unwrap();
    assert_eq!(questions::list(db, session, host).await.unwrap().len(), 1);
}
both_backends!(questions_take_one_upvote_per_person_and_hosts_answer_and_highlight);

async fn a_prepared_poll_is_opened_voted_once_each_and_exported(backend: Backend) {
    let app = spawn_app(backend).await;
    let organiser = app.organiser().await;
    let session = app.session(&organiser, "Polling", 10, Duration::days(1)).await;
    let ann_token = app.sign_up("Ann", "ann@oak.sch.uk").await;
    let ann = user_id(&app, &ann_token).await;
    let bob = user_id(&app, &app.sign_up("Bob", "bob@oak.sch.uk").await).await;
    let db = &app.state.db;

    let input = json!({"question": "Which do you use most?", "options": ["Quizzes", "Flashcards", "Brain dumps"]});
    let (status, _) = app.post(&format!("/api/sessions/{session}/polls"), Some(&ann_token), input.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, e) = app
        .post(
            &format!("/api/sessions/{session}/polls"),
            Some(&organiser),
            json!({"question": "?", "options": ["Only one"]}),
        )
        .await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("options")));
    let (status, poll) = app.post(&format!("/api/sessions/{session}/polls"), Some(&organiser), input).await;
    assert_eq!(status, StatusCode::CREATED, "{poll}");
    assert_eq!(poll["status"], "draft");
    let poll_id = poll["id"].as_i64().unwrap();
    let option = |i: usize| poll["options"][i]["id"].as_i64().unwrap();

    assert!(matches!(polls::vote(db, session, poll_id, ann, &[option(0)]).await, Err(InteractionError::WrongState(_))));
    assert!(matches!(
        polls::set_status(db, session, poll_id, polls::PollStatus::Open, false).await,
        Err(InteractionError::NotHost(_))
    ));
    polls::set_status(db, session, poll_id, polls::PollStatus::Open, true).await.unwrap();
    assert!(matches!(
        polls::vote(db, session, poll_id, ann, &[option(0), option(1)]).await,
        Err(InteractionError::BadChoice(_))
    ));
    polls::vote(db, session, poll_id, ann, &[option(0)]).await.unwrap();
    assert!(matches!(polls::vote(db, session, poll_id, ann, &[option(1)]).await, Err(InteractionError::AlreadyVoted)));
    let results = polls::vote(db, session, poll_id, bob, &[option(0)]).await.unwrap();
    assert_eq!(results.ballots, 2);
    assert_eq!(results.counts.iter().map(|c| c.votes).collect::<Vec<_>>(), [2, 0, 0]);
    let closed = polls::set_status(db, session, poll_id, polls::PollStatus::Closed, true).await.unwrap();
    assert_eq!(closed.status, polls::PollStatus::Closed);
    assert!(polls::reveal(db, session, poll_id, true).await.unwrap().revealed);

    let csv = app.get_text(&format!("/api/sessions/{session}/polls/{poll_id}/results.csv"), &organiser).await;
    assert!(csv.contains("Quizzes,2"), "{csv}");
    assert!(csv.contains("Ann,ann@oak.sch.uk,Quizzes"), "{csv}");

    // An anonymous poll exports counts only.
    let (_, secret) = app
        .post(
            &format!("/api/sessions/{session}/polls"),
            Some(&organiser),
            json!({"question": "How confident are you?", "options": ["Very", "Somewhat"], "anonymous": true, "multiple": true}),
        )
        .await;
    let secret_id = secret["id"].as_i64().unwrap();
    polls::set_status(db, session, secret_id, polls::PollStatus::Open, true).await.unwrap();
    let both: Vec<i64> = secret["options"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect();
    polls::vote(db, session, secret_id, ann, &both).await.unwrap();
    let csv = app.get_text(&format!("/api/sessions/{session}/polls/{secret_id}/results.csv"), &organiser).await;
    assert!(csv.contains("Very,1") && csv.contains("Somewhat,1"), "{csv}");
    assert!(!csv.contains("ann@oak.sch.uk"), "{csv}");

    // Options a spreadsheet would run as formulas are exported as text.
    let (_, risky) = app
        .post(
            &format!("/api/sessions/{session}/polls"),
            Some(&organiser),
            json!({"question": "=HYPERLINK(\"http://evil.example\")", "options": ["=1+1", "\t=2+2"]}),
        )
        .await;
    let risky_id = risky["id"].as_i64().unwrap();
    polls::set_status(db, session, risky_id, polls::PollStatus::Open, true).await.unwrap();
    polls::vote(db, session, risky_id, ann, &[risky["options"][1]["id"].as_i64().unwrap()]).await.unwrap();
    let csv = app.get_text(&format!("/api/sessions/{session}/polls/{risky_id}/results.csv"), &organiser).await;
    // (A leading TAB is trimmed from a label when the poll is made; `cell` defuses it in any export.)
    assert!(csv.contains("'=1+1,0") && csv.contains("'=2+2,1"), "{csv}");
    assert!(csv.contains("Ann,ann@oak.sch.uk,'=2+2"), "each ballot's choice too: {csv}");
    assert!(csv.contains("question,\"'=HYPERLINK"), "{csv}");
    assert!(!csv.lines().any(|l| l.split(',').any(|c| c.starts_with(['=', '\t']))), "{csv}");
}
both_backends!(a_prepared_poll_is_opened_voted_once_each_and_exported);
