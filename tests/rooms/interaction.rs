//! Chat, questions, hands and polls over the signalling socket, as the room's
//! people see them.

use serde_json::{json, Value};

use crate::{
    client::{connect, Client},
    helpers::{spawn_app, Backend},
    room_token, session_with_people,
};

fn of_type<'a>(t: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |m: &Value| m["type"] == t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_questions_hands_and_polls_reach_the_right_people() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann", "Bob"]).await;
    let enter = |token: String| {
        let url = app.url.clone();
        async move {
            let mut c: Client = connect(&url, id, Some(&token)).await;
            c.join().await;
            let history = c.expect("history", of_type("history")).await;
            (c, history)
        }
    };
    let (mut host, _) = enter(room_token(&app, id, &organiser).await).await;
    let (mut ann, _) = enter(room_token(&app, id, &attendees[0]).await).await;
    let (mut bob, _) = enter(room_token(&app, id, &attendees[1]).await).await;

    // Chat reaches everyone, as plain text.
    ann.send(json!({"v": 1, "type": "chat", "body": "<i>Hello</i> from Oak"}));
    let mut ids = vec![];
    for c in [&mut host, &mut bob, &mut ann] {
        let m = c.expect("Ann's chat", of_type("chat")).await;
        assert_eq!(m["message"]["body"], "<i>Hello</i> from Oak");
        assert_eq!(m["message"]["author_name"], "Ann");
        ids.push(m["message"]["id"].clone());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    let chat_id = ids[0].clone();
    // Only a host removes it.
    bob.send(json!({"v": 1, "type": "chat_delete", "id": chat_id}));
    assert_eq!(bob.error().await["code"], "not_host");
    host.send(json!({"v": 1, "type": "chat_delete", "id": chat_id}));
    assert_eq!(ann.expect("the removal", of_type("chat_deleted")).await["id"], chat_id);

    // A question, upvoted once per person.
    bob.send(json!({"v": 1, "type": "ask", "body": "How often should we quiz?"}));
    let q = ann.expect("Bob's question", of_type("question")).await;
    let qid = q["question"]["id"].clone();
    ann.send(json!({"v": 1, "type": "upvote", "id": qid}));
    ann.send(json!({"v": 1, "type": "upvote", "id": qid}));
    let upvoted = host.expect("an upvote", |m| m["type"] == "question" && m["question"]["votes"] == 1).await;
    assert_eq!(upvoted["question"]["body"], "How often should we quiz?");
    // The repeat changed nothing, so nobody is told of it again.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let repeats = host.drain().into_iter().filter(|m| m["type"] == "question" && m["question"]["votes"] == 1).count();
    assert_eq!(repeats, 0, "a repeated upvote is not broadcast");
    host.send(json!({"v": 1, "type": "question_answered", "id": qid, "answered": true}));
    bob.expect("answered", |m| m["type"] == "question" && m["question"]["answered"] == true).await;

    // Hands queue for the host; the raiser hears about their own hand.
    bob.send(json!({"v": 1, "type": "hand", "raised": true}));
    bob.expect("own hand", |m| m["type"] == "hand" && m["raised"] == true).await;
    ann.send(json!({"v": 1, "type": "hand", "raised": true}));
    let queue = host.expect("two hands", |m| m["type"] == "hands" && m["queue"].as_array().unwrap().len() == 2).await;
    assert_eq!(queue["queue"][0]["name"], "Bob");
    ann.send(json!({"v": 1, "type": "hand_lower", "participant_id": queue["queue"][0]["participant_id"]}));
    assert_eq!(ann.error().await["code"], "not_host");
    host.send(json!({"v": 1, "type": "hand_lower", "participant_id": queue["queue"][0]["participant_id"]}));
    bob.expect("hand lowered", |m| m["type"] == "hand" && m["raised"] == false).await;
    assert!(ann.drain().iter().all(|m| m["type"] != "hands"), "attendees do not see the queue");

    // A live poll: everyone sees it, votes once, hosts see results live,
    // attendees when revealed.
    ann.send(json!({"v": 1, "type": "poll_create", "question": "Nope?", "options": ["a", "b"], "open": true}));
    assert_eq!(ann.error().await["code"], "not_host");
    host.send(json!({"v": 1, "type": "poll_create", "question": "Which works best?", "options": ["Quizzes", "Flashcards"], "open": true}));
    let poll = bob.expect("the poll", of_type("poll")).await;
    let poll_id = poll["poll"]["id"].clone();
    let quizzes = poll["poll"]["options"][0]["id"].clone();
    bob.send(json!({"v": 1, "type": "vote", "poll_id": poll_id, "options": [quizzes]}));
    bob.expect("the vote acknowledged", of_type("voted")).await;
    bob.send(json!({"v": 1, "type": "vote", "poll_id": poll_id, "options": [quizzes]}));
    assert_eq!(bob.error().await["code"], "already_voted");
    let live = host.expect("live results", |m| m["type"] == "poll_results" && m["results"]["ballots"] == 1).await;
    assert_eq!(live["results"]["counts"][0]["votes"], 1);
    assert!(ann.drain().iter().all(|m| m["type"] != "poll_results"), "results are hidden until revealed");
    host.send(json!({"v": 1, "type": "poll_reveal", "id": poll_id}));
    let shown = ann.expect("revealed results", of_type("poll_results")).await;
    assert_eq!(shown["results"]["counts"][0]["label"], "Quizzes");

    // Someone joining later gets the history: chat without the removed
    // message, the question, and the revealed poll with its results.
    ann.send(json!({"v": 1, "type": "chat", "body": "Thanks!"}));
    host.expect("Thanks", |m| m["type"] == "chat" && m["message"]["body"] == "Thanks!").await;
    let (_, history) = enter(room_token(&app, id, &attendees[1]).await).await;
    let chat: Vec<&str> = history["chat"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(chat, ["Thanks!"]);
    assert_eq!(history["questions"][0]["votes"], 1);
    assert_eq!(history["polls"][0]["revealed"], true);
    assert_eq!(history["poll_results"][0]["ballots"], 1);
    assert_eq!(history["voted"], json!([poll_id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_flood_and_bad_interaction_messages_are_refused_and_the_room_goes_on() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, _, _, attendees) = session_with_people(&app, &["Ann", "Bob"]).await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    let mut bob = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    bob.join().await;
    for i in 0..8 {
        ann.send(json!({"v": 1, "type": "chat", "body": format!("spam {i}")}));
    }
    ann.send(json!({"v": 1, "type": "chat", "body": "x".repeat(1001)}));
    ann.send(json!({"v": 1, "type": "upvote", "id": "seven"}));
    ann.send(json!({"v": 1, "type": "vote", "poll_id": 999, "options": [1]}));
    let mut codes = vec![];
    for _ in 0..6 {
        codes.push(ann.error().await["code"].as_str().unwrap().to_string());
    }
    codes.sort();
    assert_eq!(codes, ["bad_message", "not_found", "too_fast", "too_fast", "too_fast", "too_long"]);
    let bob_saw = bob.expect("the first messages", |m| m["type"] == "chat" && m["message"]["body"] == "spam 4").await;
    assert_eq!(bob_saw["message"]["author_name"], "Ann");
    bob.send(json!({"v": 1, "type": "chat", "body": "still here"}));
    ann.expect("Bob's message", |m| m["type"] == "chat" && m["message"]["body"] == "still here").await;
    let stored: i64 =
        sqlx::query_scalar("select count(*) from chat_messages").fetch_one(&app.state.db.read).await.unwrap();
    assert_eq!(stored, 6, "five from Ann inside the limit, one from Bob");
}
