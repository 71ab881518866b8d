//! Chat, questions, hands and polls over the signalling socket, as the room's
//! people see them.

use serde_json::{json, Value};

use crate::{
    both_backends,
    client::{connect, Client},
    helpers::{spawn_app, Backend, TestApp},
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

/// Every (table, column) of the database's schema.
async fn columns(app: &TestApp, backend: Backend) -> Vec<(String, String)> {
    let sql = match backend {
        Backend::Sqlite => {
            "select m.name, p.name from sqlite_master m, pragma_table_info(m.name) p where m.type = 'table'"
        }
        Backend::Postgres => {
            "select table_name::text, column_name::text from information_schema.columns
             where table_schema = current_schema()"
        }
    };
    sqlx::query_as(sql).fetch_all(&app.state.db.read).await.unwrap()
}

async fn an_anonymous_poll_counts_one_vote_each_and_stores_nothing_that_links_a_voter_to_a_choice(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann", "Bob", "Cy"]).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut voters = vec![];
    for token in &attendees {
        let mut c = connect(&app.url, id, Some(&room_token(&app, id, token).await)).await;
        let user_id: i64 = c.join().await["you"]["id"].as_str().unwrap().parse().unwrap();
        voters.push((c, user_id));
    }
    let question = "How confident are you with retrieval practice?";
    let options = ["Very", "Somewhat", "Not yet"];
    host.send(json!({"v": 1, "type": "poll_create", "question": question, "options": options, "anonymous": true, "open": true}));
    let poll = voters[0].0.expect("the poll", of_type("poll")).await;
    let poll_id = poll["poll"]["id"].as_i64().unwrap();
    let option = |i: usize| poll["poll"]["options"][i]["id"].as_i64().unwrap();

    // Ann and Cy choose "Very", Bob "Not yet"; Ann's second vote is refused.
    for (i, choice) in [0, 2, 0].into_iter().enumerate() {
        let voter = &mut voters[i].0;
        voter.send(json!({"v": 1, "type": "vote", "poll_id": poll_id, "options": [option(choice)]}));
        voter.expect("the vote acknowledged", of_type("voted")).await;
    }
    voters[0].0.send(json!({"v": 1, "type": "vote", "poll_id": poll_id, "options": [option(1)]}));
    assert_eq!(voters[0].0.error().await["code"], "already_voted");
    let results = host.expect("three ballots", |m| m["type"] == "poll_results" && m["results"]["ballots"] == 3).await;
    let votes: Vec<i64> =
        results["results"]["counts"].as_array().unwrap().iter().map(|c| c["votes"].as_i64().unwrap()).collect();
    assert_eq!(votes, [2, 0, 1]);

    // What is stored: who voted (once each)...
    let db = &app.state.db.read;
    let mut ballots: Vec<i64> = sqlx::query_scalar("select user_id from poll_ballots where poll_id = $1")
        .bind(poll_id)
        .fetch_all(db)
        .await
        .unwrap();
    ballots.sort();
    let mut expected: Vec<i64> = voters.iter().map(|(_, id)| *id).collect();
    expected.sort();
    assert_eq!(ballots, expected);
    // ...and a count per option, with no row anywhere holding both a person
    // and one of this poll's options.
    let schema = columns(&app, backend).await;
    let has = |table: &str, column: &str| schema.iter().any(|(t, c)| t == table && c == column);
    let with_options: Vec<&String> = schema.iter().filter(|(_, c)| c == "option_id").map(|(t, _)| t).collect();
    assert!(with_options.iter().any(|t| *t == "poll_tallies"), "{with_options:?}");
    for table in with_options {
        let people = ["user_id", "voter_id", "created_by", "at"].into_iter().filter(|c| has(table, c));
        for column in people {
            let linked: i64 = sqlx::query_scalar(&format!(
                "select count(*) from {table} t join poll_options o on o.id = t.option_id
                 where o.poll_id = $1 and t.{column} is not null"
            ))
            .bind(poll_id)
            .fetch_one(db)
            .await
            .unwrap();
            assert_eq!(linked, 0, "{table}.{column} ties this poll's choices to a person or a moment");
        }
    }
    assert!(!has("poll_ballots", "option_id"));
    let tallies: Vec<(i64, i64)> =
        sqlx::query_as("select option_id, votes from poll_tallies where poll_id = $1 order by option_id")
            .bind(poll_id)
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(tallies, [(option(0), 2), (option(1), 0), (option(2), 1)]);
    if matches!(backend, Backend::Postgres) {
        // A row remembers the transaction that last wrote it: every count was
        // rewritten by the last vote, so none points at an earlier voter.
        let writers: i64 = sqlx::query_scalar("select count(distinct xmin::text) from poll_tallies where poll_id = $1")
            .bind(poll_id)
            .fetch_one(db)
            .await
            .unwrap();
        assert_eq!(writers, 1);
    }

    // The results CSV still has the counts, and no one's name or address.
    let csv = app.get_text(&format!("/api/sessions/{id}/polls/{poll_id}/results.csv"), &organiser).await;
    assert!(csv.contains("Very,2") && csv.contains("Somewhat,0") && csv.contains("Not yet,1"), "{csv}");
    assert!(csv.contains("ballots,3"), "{csv}");
    assert!(!csv.contains("oak.sch.uk") && !csv.contains("Ann"), "{csv}");
}
both_backends!(an_anonymous_poll_counts_one_vote_each_and_stores_nothing_that_links_a_voter_to_a_choice);
