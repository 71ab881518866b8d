//! Breakout groups with real peers: isolation, moves, broadcast, the timer's
//! return to the main room, and a reconnect back into the group.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    client::{connect, Client, Crossing},
    helpers::{spawn_app, Backend},
    room_token, session_with_people,
};

/// Track ids whose packet count grows over `window`.
async fn flowing(client: &Client, window: Duration) -> BTreeSet<String> {
    let before = client.received.lock().unwrap().packets.clone();
    tokio::time::sleep(window).await;
    let after = client.received.lock().unwrap().packets.clone();
    after.into_iter().filter(|(t, n)| *n > before.get(t).copied().unwrap_or(0)).map(|(t, _)| t).collect()
}

/// Waits until what `client` receives is exactly `tracks`.
async fn receives_exactly(client: &Client, tracks: &BTreeSet<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = flowing(client, Duration::from_millis(700)).await;
        if &now == tracks {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: receiving {now:?}, wanted {tracks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_people_in_three_random_groups_hear_only_their_group_and_come_back_to_the_presenter() {
    let app = spawn_app(Backend::Sqlite).await;
    let names = ["Ann", "Ben", "Cat", "Dan", "Eve", "Fay", "Gus"];
    let (id, organiser, presenter, attendees) = session_with_people(&app, &names).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut priya = connect(&app.url, id, Some(&room_token(&app, id, &presenter).await)).await;
    priya.join().await;
    priya.publish();
    let mut people: Vec<Client> = vec![];
    let mut ids: Vec<String> = vec![];
    for token in &attendees {
        let mut c = connect(&app.url, id, Some(&room_token(&app, id, token).await)).await;
        ids.push(c.join().await["you"]["id"].as_str().unwrap().to_string());
        people.push(c);
    }
    // Track owners, as the host sees them announced.
    let mut owner: HashMap<String, String> = HashMap::new();
    let video =
        host.expect("the presenter's video", |m| m["type"] == "track_published" && m["track"]["kind"] == "video").await;
    owner.insert(
        video["track"]["id"].as_str().unwrap().into(),
        video["track"]["participant_id"].as_str().unwrap().into(),
    );
    note_tracks(&mut host, &mut owner);

    // Bad input first: nothing changes.
    people[0].send(json!({"v": 1, "type": "breakout_open", "random_groups": 3, "minutes": 5}));
    assert_eq!(people[0].error().await["code"], "not_host");
    host.send(json!({"v": 1, "type": "breakout_open", "random_groups": 3, "minutes": 0}));
    assert_eq!(host.error().await["code"], "bad_message");
    host.send(json!({"v": 1, "type": "breakout_move", "participant_id": ids[0], "group": 1}));
    assert_eq!(host.error().await["code"], "wrong_state");

    host.send(json!({"v": 1, "type": "breakout_open", "random_groups": 3, "minutes": 5, "return_seconds": 1,
                     "groups": [{"name": "Keep", "task": "What will you keep from remote teaching?"}]}));
    let view = people[0].expect("the groups", |m| m["type"] == "breakout" && m["breakout"]["open"] == true).await;
    let mut group_of: BTreeMap<String, u64> = BTreeMap::new();
    for g in view["breakout"]["groups"].as_array().unwrap() {
        for m in g["members"].as_array().unwrap() {
            group_of.insert(m.as_str().unwrap().into(), g["id"].as_u64().unwrap());
        }
    }
    assert_eq!(group_of.len(), 7, "every attendee is placed: {view}");
    let mut sizes: Vec<usize> = (1..=3).map(|g| group_of.values().filter(|x| **x == g).count()).collect();
    sizes.sort();
    assert_eq!(sizes, [2, 2, 3]);
    assert_eq!(view["breakout"]["groups"][0]["task"], "What will you keep from remote teaching?");
    host.send(json!({"v": 1, "type": "breakout_open", "random_groups": 2, "minutes": 5}));
    assert_eq!(host.error().await["code"], "wrong_state", "opening twice is refused");

    // Everyone speaks in their group.
    for c in &people {
        c.publish();
    }
    until_announced(&mut host, &mut owner, 2 + 14, "all group tracks announced").await;
    let tracks_of = |who: &[String], owner: &HashMap<String, String>| -> BTreeSet<String> {
        owner.iter().filter(|(_, o)| who.contains(o)).map(|(t, _)| t.clone()).collect()
    };
    let mates = |me: &str, group_of: &BTreeMap<String, u64>| -> Vec<String> {
        group_of.iter().filter(|(p, g)| **g == group_of[me] && p.as_str() != me).map(|(p, _)| p.clone()).collect()
    };
    for (c, me) in people.iter().zip(&ids) {
        receives_exactly(c, &tracks_of(&mates(me, &group_of), &owner), &format!("{me} in group {}", group_of[me]))
            .await;
    }

    // A move: Ann goes to another group and hears its members instead.
    let from = group_of[&ids[0]];
    let to = if from == 1 { 2 } else { 1 };
    host.send(json!({"v": 1, "type": "breakout_move", "participant_id": ids[0], "group": to}));
    people[0]
        .expect("Ann's move", |m| {
            m["type"] == "breakout"
                && m["breakout"]["groups"][to as usize - 1]["members"].as_array().unwrap().contains(&json!(ids[0]))
        })
        .await;
    group_of.insert(ids[0].clone(), to);
    // Her own tracks stay published: in her new group she may still speak.
    receives_exactly(&people[0], &tracks_of(&mates(&ids[0], &group_of), &owner), "Ann after the move").await;
    host.send(json!({"v": 1, "type": "breakout_move", "participant_id": "424242", "group": 1}));
    assert_eq!(host.error().await["code"], "not_found");
    host.send(json!({"v": 1, "type": "breakout_move", "participant_id": ids[1], "group": 99}));
    assert_eq!(host.error().await["code"], "not_found");

    // A broadcast reaches every group.
    host.send(json!({"v": 1, "type": "breakout_broadcast", "text": "Two minutes left: agree one thing to keep."}));
    for c in people.iter_mut() {
        let m = c.expect("the broadcast", |m| m["type"] == "breakout_message").await;
        assert_eq!(m["text"], "Two minutes left: agree one thing to keep.");
    }
    // Group chat stays in the group.
    let speaker = (0..ids.len()).find(|i| !mates(&ids[*i], &group_of).is_empty()).unwrap();
    people[speaker].send(json!({"v": 1, "type": "chat", "body": "hello group"}));
    let mate = mates(&ids[speaker], &group_of)[0].clone();
    let mate_index = ids.iter().position(|i| *i == mate).unwrap();
    people[mate_index].expect("group chat", |m| m["type"] == "chat" && m["message"]["body"] == "hello group").await;
    let outsider = ids.iter().position(|i| group_of[i] != group_of[&ids[speaker]]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        people[outsider].drain().iter().all(|m| m["message"]["body"] != "hello group"),
        "chat leaked out of the group"
    );

    // A reconnect lands back in the group.
    let gus = ids.len() - 1;
    people[gus].send(json!({"v": 1, "type": "leave"}));
    let mut again = connect(&app.url, id, Some(&room_token(&app, id, &attendees[gus]).await)).await;
    again.join().await;
    let back = again.expect("the groups on return", |m| m["type"] == "breakout").await;
    let home = group_of[&ids[gus]];
    assert!(back["breakout"]["groups"][home as usize - 1]["members"].as_array().unwrap().contains(&json!(ids[gus])));
    note_tracks(&mut host, &mut owner);
    let wanted: BTreeSet<String> = tracks_of(&mates(&ids[gus], &group_of), &owner)
        .into_iter()
        .filter(|t| owner.get(t).is_some_and(|o| *o != ids[gus]))
        .collect();
    receives_exactly(&again, &wanted, "Gus back in his group").await;
    people[gus] = again;

    // Time is up: a short countdown, then everyone is back with the presenter.
    host.send(json!({"v": 1, "type": "breakout_close"}));
    for c in people.iter_mut() {
        c.expect("the return", |m| m["type"] == "breakout_timer" && m["event"] == "closed").await;
    }
    let presenter_tracks = tracks_of(&[priya_id(&owner, &ids)], &owner);
    for (i, c) in people.iter().enumerate() {
        receives_exactly(c, &presenter_tracks, &format!("attendee {i} back in the main room")).await;
    }
    let moves: i64 =
        sqlx::query_scalar("select count(*) from breakout_moves").fetch_one(&app.state.db.read).await.unwrap();
    assert!(moves >= 7 + 1 + 7, "moves are recorded: {moves}");
}

/// Two attendees in one group: Ann publishes, and Ben publishes just as the
/// server offers him Ann's tracks, meeting that offer as `crossing` says (a
/// breakout move makes the server offer while the page opens the camera).
/// Waits until each receives exactly the other's audio and video, and
/// returns Ben, whose messages tell how the server took the crossing.
async fn publishing_while_the_server_offers(crossing: Crossing) -> Client {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    let ann_id = ann.join().await["you"]["id"].as_str().unwrap().to_string();
    let mut ben = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    let ben_id = ben.join().await["you"]["id"].as_str().unwrap().to_string();
    // Nothing is published yet, so the server's first offer to Ben carries Ann's tracks.
    ben.publish_on_next_offer(crossing);
    host.send(json!({"v": 1, "type": "breakout_open", "random_groups": 1, "minutes": 5}));
    for c in [&mut ann, &mut ben] {
        c.expect("the group", |m| m["type"] == "breakout" && m["breakout"]["open"] == true).await;
    }
    ann.publish();
    let mut owner: HashMap<String, String> = HashMap::new();
    until_announced(&mut host, &mut owner, 4, "both members' tracks announced").await;
    let tracks_of = |who: &str| -> BTreeSet<String> {
        owner.iter().filter(|(_, o)| o.as_str() == who).map(|(t, _)| t.clone()).collect()
    };
    assert_eq!(tracks_of(&ann_id).len(), 2, "{owner:?}");
    receives_exactly(&ben, &tracks_of(&ann_id), "Ben receives Ann").await;
    receives_exactly(&ann, &tracks_of(&ben_id), "Ann receives Ben").await;
    ben
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_that_crosses_the_servers_gets_glare_and_media_still_flows_both_ways() {
    let mut ben = publishing_while_the_server_offers(Crossing::Offer).await;
    assert_eq!(ben.error().await["code"], "glare");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_sent_as_the_answer_is_refused_and_the_server_offers_again_so_media_still_flows() {
    let mut ben = publishing_while_the_server_offers(Crossing::OfferAsAnswer).await;
    let error = ben.error().await;
    assert_eq!(error["code"], "bad_sdp");
    assert!(error["message"].as_str().unwrap().contains("not an answer to the server's offer"), "{error}");
}

/// Records the owner of every track the host has seen announced.
fn note_tracks(host: &mut Client, owner: &mut HashMap<String, String>) {
    for m in host.drain() {
        if m["type"] == "track_published" {
            owner.insert(
                m["track"]["id"].as_str().unwrap().into(),
                m["track"]["participant_id"].as_str().unwrap().into(),
            );
        }
    }
}

/// Waits until the host has seen `n` tracks announced, noting their owners.
async fn until_announced(host: &mut Client, owner: &mut HashMap<String, String>, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while owner.len() < n {
        assert!(Instant::now() < deadline, "{what}: {owner:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        note_tracks(host, owner);
    }
}

/// The presenter: the owner of tracks that is not an attendee.
fn priya_id(owner: &HashMap<String, String>, attendees: &[String]) -> String {
    owner.values().find(|o| !attendees.contains(o)).cloned().expect("the presenter's tracks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_timer_runs_out_everyone_counts_down_and_returns_on_their_own() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    host.send(json!({"v": 1, "type": "breakout_open", "random_groups": 1, "minutes": 0.03, "return_seconds": 1}));
    let opened = ann.expect("the group", |m| m["type"] == "breakout" && m["breakout"]["open"] == true).await;
    let ends_at = opened["breakout"]["ends_at"].as_i64().unwrap();
    host.send(json!({"v": 1, "type": "breakout_extend", "minutes": -1}));
    assert_eq!(host.error().await["code"], "bad_message", "a negative extension is refused");
    ann.expect("the countdown", |m| m["type"] == "breakout_timer" && m["event"] == "returning").await;
    let returning =
        ann.expect("the return time", |m| m["type"] == "breakout" && m["breakout"]["returning_at"].is_i64()).await;
    assert!(returning["breakout"]["returning_at"].as_i64().unwrap() >= ends_at);
    ann.expect("back in the main room", |m| m["type"] == "breakout_timer" && m["event"] == "closed").await;
    let closed = ann.expect("the closed state", |m| m["type"] == "breakout" && m["breakout"]["open"] == false).await;
    assert!(closed["breakout"]["ends_at"].is_null());
    ann.send(json!({"v": 1, "type": "breakout_help"}));
    assert_eq!(ann.error().await["code"], "wrong_state", "no group to ask from any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_saved_before_the_session_opens_in_one_click_and_people_may_choose_their_group() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let ann_id = app.get("/api/me", Some(&attendees[0])).await.1["id"].to_string();
    let plan = json!({"minutes": 10, "self_select": true, "groups": [
        {"name": "Primary", "task": "Phonics routines", "members": [ann_id]},
        {"name": "Secondary", "task": "Retrieval starters"}]});
    let path = format!("/api/sessions/{id}/breakout-plan");
    let (status, _) = app.request(reqwest::Method::PUT, &path, Some(&attendees[1]), Some(plan.clone())).await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    let (status, e) = app
        .request(reqwest::Method::PUT, &path, Some(&presenter), Some(json!({"minutes": 0, "random_groups": 2})))
        .await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (status, saved) = app.request(reqwest::Method::PUT, &path, Some(&presenter), Some(plan)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{saved}");
    assert_eq!(app.get(&path, Some(&organiser)).await.1["groups"][1]["name"], "Secondary");

    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    let mut ben = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    let ben_id = ben.join().await["you"]["id"].clone();
    host.send(json!({"v": 1, "type": "breakout_open_saved"}));
    let view = ann.expect("the saved groups", |m| m["type"] == "breakout" && m["breakout"]["open"] == true).await;
    assert_eq!(view["breakout"]["groups"][0]["members"], json!([ann_id.trim_matches('"')]));
    assert_eq!(view["breakout"]["groups"][0]["task"], "Phonics routines");
    assert_eq!(view["breakout"]["self_select"], true);
    ben.send(json!({"v": 1, "type": "breakout_choose", "group": 2}));
    let chosen = host
        .expect("Ben's choice", |m| m["type"] == "breakout" && m["breakout"]["groups"][1]["members"] == json!([ben_id]))
        .await;
    assert_eq!(chosen["breakout"]["groups"][1]["name"], "Secondary");
    ben.send(json!({"v": 1, "type": "breakout_choose", "group": 7}));
    assert_eq!(ben.error().await["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_into_a_group_shows_what_was_said_there_and_returning_shows_the_main_rooms_chat() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann", "Ben", "Cat"]).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut people = vec![];
    let mut ids = vec![];
    for token in &attendees {
        let mut c = connect(&app.url, id, Some(&room_token(&app, id, token).await)).await;
        ids.push(c.join().await["you"]["id"].as_str().unwrap().to_string());
        people.push(c);
    }
    let bodies = |m: &serde_json::Value| -> Vec<String> {
        m["chat"].as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap().to_string()).collect()
    };
    let history_of =
        |group: serde_json::Value| move |m: &serde_json::Value| m["type"] == "chat_history" && m["group"] == group;

    people[0].send(json!({"v": 1, "type": "chat", "body": "Hello everyone"}));
    host.expect("the main room's chat", |m| m["type"] == "chat" && m["message"]["body"] == "Hello everyone").await;
    host.send(json!({"v": 1, "type": "breakout_open", "minutes": 5, "return_seconds": 1, "groups": [
        {"name": "Keep", "members": [ids[0], ids[1]]}, {"name": "Change", "members": []}]}));
    // Nothing has been said in the group yet: its chat starts empty.
    for c in &mut people[..2] {
        let history = c.expect("the group's chat on arrival", history_of(json!(1))).await;
        assert_eq!(bodies(&history), Vec::<String>::new());
    }
    people[0].send(json!({"v": 1, "type": "chat", "body": "One idea to keep"}));
    people[1].expect("group chat", |m| m["type"] == "chat" && m["message"]["body"] == "One idea to keep").await;

    // Cat, moved in later, sees what the group said, and not the main room's chat.
    host.send(json!({"v": 1, "type": "breakout_move", "participant_id": ids[2], "group": 1}));
    let history = people[2].expect("the group's chat for a latecomer", history_of(json!(1))).await;
    assert_eq!(bodies(&history), ["One idea to keep"]);
    assert_eq!(history["chat"][0]["author_name"], "Ann");
    // So does a host visiting, and someone rejoining lands back in the group with its chat.
    host.send(json!({"v": 1, "type": "breakout_visit", "group": 1}));
    assert_eq!(bodies(&host.expect("the visited group's chat", history_of(json!(1))).await), ["One idea to keep"]);
    people[1].send(json!({"v": 1, "type": "leave"}));
    let mut ben = connect(&app.url, id, Some(&room_token(&app, id, &attendees[1]).await)).await;
    ben.join().await;
    assert_eq!(bodies(&ben.expect("the group's chat on rejoining", history_of(json!(1))).await), ["One idea to keep"]);
    people[1] = ben;
    // Nobody else moved: the group's members are not sent it again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!people[0].drain().iter().any(|m| m["type"] == "chat_history"), "only people who move get the history");

    // Back in the main room, everyone sees the main room's chat again, without the group's.
    host.send(json!({"v": 1, "type": "breakout_close"}));
    for c in people.iter_mut().chain([&mut host]) {
        let history = c.expect("the main room's chat on return", history_of(json!(null))).await;
        assert_eq!(bodies(&history), ["Hello everyone"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_per_group_makes_as_many_groups_as_the_room_needs() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = session_with_people(&app, &["Ann", "Ben", "Cat", "Dev", "Eve"]).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut people = vec![];
    for token in &attendees {
        let mut c = connect(&app.url, id, Some(&room_token(&app, id, token).await)).await;
        c.join().await;
        people.push(c);
    }
    host.send(json!({"v": 1, "type": "breakout_open", "people_per_group": 2, "random_groups": 2, "minutes": 5}));
    assert!(host.error().await["message"].as_str().unwrap().contains("not both"));
    host.send(json!({"v": 1, "type": "breakout_open", "people_per_group": 2, "minutes": 5}));
    let opened = host.expect("the groups", |m| m["type"] == "breakout" && m["breakout"]["open"] == true).await;
    let groups = opened["breakout"]["groups"].as_array().unwrap();
    let mut sizes: Vec<usize> = groups.iter().map(|g| g["members"].as_array().unwrap().len()).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 2, 2], "five attendees, two a group: three groups ({opened})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_opened_in_the_lobby_still_hear_only_their_group_after_the_host_goes_live() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = crate::session_in_lobby(&app, &["Ann", "Ben", "Cat", "Dan"]).await;
    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut people: Vec<Client> = vec![];
    let mut ids: Vec<String> = vec![];
    for token in &attendees {
        let mut c = connect(&app.url, id, Some(&room_token(&app, id, token).await)).await;
        ids.push(c.join().await["you"]["id"].as_str().unwrap().to_string());
        people.push(c);
    }
    host.send(json!({"v": 1, "type": "breakout_open", "minutes": 5,
                     "groups": [{"name": "A", "members": [ids[0], ids[1]]}, {"name": "B", "members": [ids[2], ids[3]]}]}));
    for c in people.iter_mut() {
        c.expect("the groups", |m| m["type"] == "breakout" && m["breakout"]["open"] == true).await;
        c.publish();
    }
    let mut owner: HashMap<String, String> = HashMap::new();
    until_announced(&mut host, &mut owner, 8, "all group tracks announced").await;
    let mates = |i: usize| -> BTreeSet<String> {
        let group = if i < 2 { [0, 1] } else { [2, 3] };
        let others: Vec<&String> = group.iter().filter(|j| **j != i).map(|j| &ids[*j]).collect();
        owner.iter().filter(|(_, o)| others.contains(o)).map(|(t, _)| t.clone()).collect()
    };
    for (i, c) in people.iter().enumerate() {
        receives_exactly(c, &mates(i), &format!("{} in the lobby", ids[i])).await;
    }

    host.send(json!({"v": 1, "type": "go_live"}));
    host.expect("the room going live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    for (i, c) in people.iter().enumerate() {
        receives_exactly(c, &mates(i), &format!("{} after going live", ids[i])).await;
    }
}
