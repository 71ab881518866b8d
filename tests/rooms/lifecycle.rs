//! Co-hosts: a presenter an organiser made co-host may take the room live
//! (and record); a plain presenter may not. The grant travels in the room
//! token and the room's rules check it.

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    client::connect,
    helpers::{spawn_app, Backend},
    room_token, session_in_lobby,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_co_host_may_take_the_room_live_and_record_and_a_plain_presenter_may_not() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, attendees) = session_in_lobby(&app, &["Ann"]).await;
    let (_, session) = app.get(&format!("/api/sessions/{id}"), Some(&organiser)).await;
    let priya = session["presenters"][0]["id"].as_i64().unwrap();

    // A plain presenter: publish, but no running of the room.
    let (status, ticket) = app.post(&format!("/api/sessions/{id}/join"), Some(&presenter), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    assert_eq!(ticket["grants"], json!({"publish": true, "subscribe": true, "host": false, "cohost": false}));
    let mut plain = connect(&app.url, id, Some(ticket["token"].as_str().unwrap())).await;
    plain.join().await;
    plain.send(json!({"v": 1, "type": "go_live"}));
    let refused = plain.error().await;
    assert_eq!(refused["code"], "not_host", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("co-hosts"), "{refused}");
    plain.send(json!({"v": 1, "type": "record_start"}));
    assert_eq!(plain.error().await["code"], "not_host");
    drop(plain);

    // The organiser makes Priya co-host; her next token carries it.
    let (status, updated) = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/sessions/{id}/presenters/{priya}/cohost"),
            Some(&organiser),
            Some(json!({"cohost": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (status, ticket) = app.post(&format!("/api/sessions/{id}/join"), Some(&presenter), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    assert_eq!(ticket["grants"]["cohost"], true);
    assert_eq!(ticket["grants"]["host"], false);
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    let mut cohost = connect(&app.url, id, Some(ticket["token"].as_str().unwrap())).await;
    cohost.join().await;

    // Ann in the lobby cannot; the co-host can, and everyone hears of it.
    ann.send(json!({"v": 1, "type": "go_live"}));
    assert_eq!(ann.error().await["code"], "not_host");
    cohost.send(json!({"v": 1, "type": "go_live"}));
    ann.expect("the room going live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    cohost.send(json!({"v": 1, "type": "record_start"}));
    cohost.expect("the recording starting", |m| m["type"] == "recording" && m["on"] == true).await;

    // Ending the session stays the host's.
    cohost.send(json!({"v": 1, "type": "end_session"}));
    assert_eq!(cohost.error().await["code"], "not_host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_a_host_ended_leaves_the_programme_and_shows_who_attended_missed_and_presented() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, people) = session_in_lobby(&app, &["Ann", "Ben"]).await;
    let (_, before) = app.get(&format!("/api/sessions/{id}"), None).await;
    assert_eq!(before["life"], "open", "the room opens 30 minutes before the start: {before}");

    // The host takes it live and records; Ann is there, Ben never comes.
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &people[0]).await)).await;
    ann.join().await;
    host.send(json!({"v": 1, "type": "go_live"}));
    ann.expect("the room going live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    assert_eq!(app.get(&format!("/api/sessions/{id}"), None).await.1["life"], "live");
    host.send(json!({"v": 1, "type": "record_start"}));
    host.expect("the recording starting", |m| m["type"] == "recording" && m["on"] == true).await;
    host.send(json!({"v": 1, "type": "end_session"}));
    ann.closed().await;

    // Settled once the recording is finished: out of the programme, under Past.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, s) = app.get(&format!("/api/sessions/{id}"), None).await;
        if s["life"] == "settled" {
            assert_eq!(s["replay_ready"], true, "{s}");
            break;
        }
        assert_eq!(s["life"], "ended", "{s}");
        assert!(std::time::Instant::now() < deadline, "the recording was finished: {s}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ids =
        |v: serde_json::Value| v.as_array().unwrap().iter().map(|s| s["id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(app.get("/api/sessions", None).await.1), Vec::<i64>::new());
    assert_eq!(ids(app.get("/api/sessions?past=true", None).await.1), vec![id]);

    // My sessions: Ann attended, Ben missed it (both with the replay), Priya presented.
    let mine = |token: String| {
        let app = &app;
        async move {
            let (status, list) = app.get("/api/me/sessions", Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{list}");
            assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
            list[0].clone()
        }
    };
    let ann_view = mine(people[0].clone()).await;
    assert_eq!(
        (ann_view["attended"].clone(), ann_view["presenting"].clone()),
        (json!(true), json!(false)),
        "{ann_view}"
    );
    assert!(ann_view["replay_url"].as_str().unwrap().starts_with("/replay.html?id="), "{ann_view}");
    let ben_view = mine(people[1].clone()).await;
    assert_eq!(ben_view["attended"], false, "{ben_view}");
    assert_eq!(ben_view["replay_url"], ann_view["replay_url"]);
    let priya_view = mine(presenter.clone()).await;
    assert_eq!((priya_view["presenting"].clone(), priya_view["attended"].clone()), (json!(true), json!(null)));
    assert_eq!(priya_view["life"], "settled");

    // Nothing left to invite people to, or to join.
    let (status, err) = app
        .post(&format!("/api/sessions/{id}/invitations"), Some(&organiser), json!({"text": "cara@school.test"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err["error"].as_str().unwrap().contains("has ended"), "{err}");
    let (status, _) = app.post(&format!("/api/sessions/{id}/join"), Some(&people[1]), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Its places are settled too: none taken, none given up, though the scheduled end is still to come.
    let cy = app.sign_up("Cy", "cy@oak.sch.uk").await;
    let (status, err) = app.post(&format!("/api/sessions/{id}/registration"), Some(&cy), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    let (status, err) =
        app.request(reqwest::Method::DELETE, &format!("/api/sessions/{id}/registration"), Some(&people[1]), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err["error"].as_str().unwrap().contains("has ended"), "{err}");
    assert_eq!(mine(people[1].clone()).await["my_registration"]["status"], "confirmed");
}
