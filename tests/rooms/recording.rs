//! Recording a live room: a real VP8 + Opus clip (encoded by ffmpeg) is
//! published through the room while a host records; the files are checked
//! with Debian's ffprobe, as a player would read them. Then the crash case:
//! the server is killed mid-recording and finishes the files on restart.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    both_backends,
    client::{connect, Client, Clip},
    helpers::{spawn_app, Backend, TestApp},
    room_token, session_with_people,
};

/// What ffprobe reads from a file: (duration s, codec, frames decoded).
fn probe(path: &Path) -> (Option<f64>, String, u64) {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "format=duration:stream=codec_name,nb_read_frames"])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs (Debian's ffmpeg: .ci/run installs it)");
    assert!(out.status.success(), "ffprobe reads {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stream = &v["streams"][0];
    (
        v["format"]["duration"].as_str().and_then(|d| d.parse().ok()),
        stream["codec_name"].as_str().unwrap_or_default().to_string(),
        stream["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0),
    )
}

/// The presenter publishing `clip` (still held at its first frame) and a
/// host, both in the room, the host having seen both tracks arrive.
async fn presenter_and_host(
    app: &TestApp,
    id: i64,
    presenter: &str,
    organiser: &str,
    clip: Arc<Clip>,
) -> (Client, Client) {
    let mut priya = connect(&app.url, id, Some(&room_token(app, id, presenter).await)).await;
    priya.join().await;
    priya.publish_clip(clip);
    let mut host = connect(&app.url, id, Some(&room_token(app, id, organiser).await)).await;
    host.join().await;
    for kind in ["video", "audio"] {
        priya.expect("a track published", |m| m["type"] == "track_published" && m["track"]["kind"] == kind).await;
    }
    (priya, host)
}

async fn start_recording(host: &mut Client) -> String {
    host.send(json!({"v": 1, "type": "record_start"}));
    let on = host.expect("recording on", |m| m["type"] == "recording" && m["on"] == true).await;
    on["recording_id"].as_str().unwrap().to_string()
}

/// An organiser's (or anyone's) request to change who may watch.
async fn open(app: &TestApp, access: &str, token: &str, to: &str) -> (StatusCode, Value) {
    app.request(reqwest::Method::PUT, access, Some(token), Some(json!({ "open_to": to }))).await
}

/// A recorded file's size, as the organiser's client learns it (a one-byte Range request).
async fn track_bytes(app: &TestApp, token: &str, url: &str) -> u64 {
    let response = app
        .client
        .get(format!("{}{url}", app.url))
        .bearer_auth(token)
        .header("range", "bytes=0-0")
        .send()
        .await
        .unwrap();
    let range = response.headers()["content-range"].to_str().unwrap().to_string();
    range.rsplit('/').next().unwrap().parse().unwrap()
}

/// A recorded file fetched as a player fetches it: whole, or the bytes
/// `from..=to` with a Range request.
async fn fetch(app: &TestApp, token: &str, url: &str, range: Option<(u64, u64)>) -> Vec<u8> {
    let mut request = app.client.get(format!("{}{url}", app.url)).bearer_auth(token);
    if let Some((from, to)) = range {
        request = request.header("range", format!("bytes={from}-{to}"));
    }
    let response = request.send().await.unwrap();
    let expected = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    assert_eq!(response.status(), expected, "{url}");
    response.bytes().await.unwrap().to_vec()
}

/// When the first frame of `stream` (`v` or `a`) of the WebM file `whole`
/// that is not wholly inside its first `sent` bytes plays, in ms from the
/// file's start (ffprobe reads each frame's time, position and size).
fn first_frame_not_sent_ms(whole: &[u8], sent: u64, stream: &str, dir: &Path) -> i64 {
    let path = dir.join(format!("whole-{stream}.webm"));
    std::fs::write(&path, whole).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "quiet", "-select_streams", stream, "-show_entries", "packet=pts_time,pos,size", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let number = |p: &Value, k: &str| p[k].as_str().and_then(|x| x.parse::<f64>().ok()).unwrap();
    let packets = v["packets"].as_array().unwrap();
    let missing = packets
        .iter()
        .find(|p| number(p, "pos") + number(p, "size") > sent as f64)
        .expect("a frame past half the file");
    (number(missing, "pts_time") * 1000.0).round() as i64
}

async fn download(app: &TestApp, token: &str, url: &str, to: &Path) {
    let bytes = app.client.get(format!("{}{url}", app.url)).bearer_auth(token).send().await.unwrap();
    assert_eq!(bytes.status(), StatusCode::OK);
    std::fs::write(to, bytes.bytes().await.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_clip_comes_out_as_two_playable_webm_tracks_in_sync_with_its_timeline() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let work = tempfile::tempdir().unwrap();
    let clip = Arc::new(Clip::make(work.path(), 10));
    assert_eq!(clip.video.len(), 300, "10 s of VP8 at 30 fps");
    let (mut priya, mut host) = presenter_and_host(&app, id, &presenter, &organiser, clip.clone()).await;

    // Only hosts record, and only a running recording stops or takes chapters.
    priya.send(json!({"v": 1, "type": "record_start"}));
    assert_eq!(priya.error().await["code"], "not_host");
    host.send(json!({"v": 1, "type": "record_stop"}));
    assert!(host.error().await["message"].as_str().unwrap().contains("not being recorded"));
    host.send(json!({"v": 1, "type": "chapter", "title": "Too early"}));
    assert!(host.error().await["message"].as_str().unwrap().contains("only be marked while recording"));

    let recording_id = start_recording(&mut host).await;
    priya.expect("the presenter sees the indicator", |m| m["type"] == "recording" && m["on"] == true).await;
    host.send(json!({"v": 1, "type": "record_start"}));
    assert!(host.error().await["message"].as_str().unwrap().contains("already being recorded"));
    clip.go.notify_one();
    let played = Instant::now();

    // Someone joining while it runs is told at once.
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    ann.expect("the recording notice on joining", |m| m["type"] == "recording" && m["on"] == true).await;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    ann.send(json!({"v": 1, "type": "chat", "body": "Hello from Ann"}));
    ann.expect("the chat", |m| m["type"] == "chat").await;
    tokio::time::sleep(Duration::from_millis(4000)).await;
    host.send(json!({"v": 1, "type": "chapter", "title": "Part 2: feedback"}));
    let chapter = host.expect("the chapter marked", |m| m["type"] == "chapter").await;
    assert!((4500..6500).contains(&chapter["t_ms"].as_i64().unwrap()), "{chapter}");
    // The clip lasts 10 s; stop a little after.
    tokio::time::sleep(Duration::from_millis(10_400).saturating_sub(played.elapsed())).await;
    host.send(json!({"v": 1, "type": "record_stop"}));
    ann.expect("the indicator goes off", |m| m["type"] == "recording" && m["on"] == false).await;
    let saved = ann.expect("the replay is ready", |m| m["type"] == "recording_saved").await;
    assert_eq!(saved["replay_url"], format!("/replay.html?id={recording_id}"));

    // The session's registrants see it; only organisers see its size.
    let (status, list) = app.get(&format!("/api/sessions/{id}/recordings"), Some(&attendees[1])).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["id"], recording_id.as_str());
    assert_eq!(list[0]["status"], "ready");
    assert!(list[0]["bytes"].is_null());
    let (_, list) = app.get(&format!("/api/sessions/{id}/recordings"), Some(&organiser)).await;
    assert!(list[0]["bytes"].as_i64().unwrap() > 100_000, "{list}");

    let (status, detail) = app.get(&format!("/api/recordings/{recording_id}"), Some(&attendees[0])).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let tracks = detail["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2, "{detail}");
    let starts: Vec<i64> = tracks.iter().map(|t| t["start_ms"].as_i64().unwrap()).collect();
    assert!((starts[0] - starts[1]).abs() <= 100, "audio and video start within 100 ms: {starts:?}");
    for track in tracks {
        let path = work.path().join(track["file"].as_str().unwrap());
        download(&app, &attendees[0], track["url"].as_str().unwrap(), &path).await;
        let (duration, codec, frames) = probe(&path);
        let duration = duration.expect("a finished file has a duration");
        eprintln!("{}: {codec}, {duration} s, {frames} frames, starts at {} ms", track["file"], track["start_ms"]);
        assert!((9.5..=10.5).contains(&duration), "{} lasts {duration} s", track["file"]);
        let ms = track["duration_ms"].as_i64().unwrap() as f64 / 1000.0;
        assert!((ms - duration).abs() < 0.1, "the listing agrees with the file: {ms} vs {duration}");
        match track["kind"].as_str().unwrap() {
            "video" => {
                assert_eq!(codec, "vp8");
                assert!((295..=305).contains(&frames), "{frames} video frames decoded");
            }
            _ => {
                assert_eq!(codec, "opus");
                assert!((490..=510).contains(&frames), "{frames} audio frames decoded");
            }
        }
    }

    // The timeline: the chat at its moment, the chapter, the stop.
    let timeline = detail["timeline"].as_array().unwrap();
    let chat = timeline.iter().find(|e| e["type"] == "chat").expect("the chat is in the timeline");
    assert_eq!(chat["message"]["body"], "Hello from Ann");
    assert!((800..3000).contains(&chat["t"].as_i64().unwrap()), "{chat}");
    let chapter = timeline.iter().find(|e| e["type"] == "chapter").expect("the chapter is in the timeline");
    assert_eq!(chapter["title"], "Part 2: feedback");
    assert!(timeline.iter().any(|e| e["type"] == "recording_stopped"));

    // The single-file download is made in the background: both streams, the whole length.
    let deadline = Instant::now() + Duration::from_secs(90);
    let download_url = loop {
        let (_, list) = app.get(&format!("/api/sessions/{id}/recordings"), Some(&attendees[0])).await;
        match list[0]["download_status"].as_str() {
            Some("ready") => break list[0]["download_url"].as_str().unwrap().to_string(),
            Some(s @ ("failed" | "empty")) => panic!("the download came to {s}: {list}"),
            _ => assert!(Instant::now() < deadline, "the download was made within 90 s: {list}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let path = work.path().join("download.webm");
    download(&app, &attendees[0], &download_url, &path).await;
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration:stream=codec_name", "-of", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codecs: Vec<&str> =
        v["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    assert_eq!(codecs, ["vp8", "opus"], "{v}");
    let length: f64 = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((9.5..=11.0).contains(&length), "the download lasts {length} s");

    // Range requests: a slice, and a range past the end.
    let url = format!("{}{}", app.url, tracks[0]["url"].as_str().unwrap());
    let part = app.client.get(&url).bearer_auth(&attendees[0]).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap().len(), 100);
    let past =
        app.client.get(&url).bearer_auth(&attendees[0]).header("range", "bytes=999999999-").send().await.unwrap();
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // Someone not registered sees neither the recording nor its files.
    let stranger = app.sign_up("Sam Stranger", "sam@elm.sch.uk").await;
    let (status, body) = app.get(&format!("/api/recordings/{recording_id}"), Some(&stranger)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let denied = app.client.get(&url).bearer_auth(&stranger).send().await.unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let (status, list) = app.get(&format!("/api/sessions/{id}/recordings"), Some(&stranger)).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])), "nothing is listed to them");

    // An organiser opens it to everyone signed in (only organisers can, and only to known audiences).
    let access = format!("/api/recordings/{recording_id}/access");
    assert_eq!(open(&app, &access, &attendees[0], "everyone").await.0, StatusCode::FORBIDDEN);
    let (status, body) = open(&app, &access, &organiser, "the whole world").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = open(&app, &access, &organiser, "everyone").await;
    assert_eq!((status, body["open_to"].as_str()), (StatusCode::OK, Some("everyone")), "{body}");
    let (status, _) = app.get(&format!("/api/recordings/{recording_id}"), Some(&stranger)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.client.get(&url).bearer_auth(&stranger).send().await.unwrap().status(), StatusCode::OK);
    let (_, list) = app.get(&format!("/api/sessions/{id}/recordings"), Some(&stranger)).await;
    assert_eq!(list[0]["id"], recording_id.as_str());
    open(&app, &access, &organiser, "participants").await;
    let (status, _) = app.get(&format!("/api/recordings/{recording_id}"), Some(&stranger)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "closed again");
    let (status, _) = app.get(&format!("/api/recordings/{}", "0".repeat(32)), Some(&organiser)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Watched segments: overlaps count once, repeats change nothing, nonsense is refused.
    let watched = format!("/api/recordings/{recording_id}/watched");
    let report = |segments: Value| app.post(&watched, Some(&attendees[0]), json!({ "segments": segments }));
    let (status, body) = report(json!([{"start_ms": 0, "end_ms": 4000}, {"start_ms": 2000, "end_ms": 6000}])).await;
    assert_eq!((status, body["watched_ms"].as_i64()), (StatusCode::OK, Some(6000)), "{body}");
    let (_, body) = report(json!([{"start_ms": 0, "end_ms": 3000}])).await;
    assert_eq!(body["watched_ms"], 6000, "a shorter repeat never shrinks a segment");
    let (status, body) = report(json!([{"start_ms": -5, "end_ms": 3000}])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = report(json!([{"start_ms": 5000, "end_ms": 4000}])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = report(json!([{"start_ms": 0, "end_ms": 600_000}])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, detail) = app.get(&format!("/api/recordings/{recording_id}"), Some(&attendees[0])).await;
    assert_eq!(detail["watched_ms"], 6000);

    // Deleting: organisers only; the files go.
    let (status, _) = app
        .request(reqwest::Method::DELETE, &format!("/api/recordings/{recording_id}"), Some(&attendees[0]), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        app.request(reqwest::Method::DELETE, &format!("/api/recordings/{recording_id}"), Some(&organiser), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!app.data_dir.path().join("recordings").join(&recording_id).exists());
    let (_, list) = app.get(&format!("/api/sessions/{id}/recordings"), Some(&organiser)).await;
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_recording_leaves_playable_files_and_finishes_them_on_restart() {
    let mut app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, _) = session_with_people(&app, &["Ann"]).await;
    let (mut server, in_process_url) = crate::serve_process(&mut app, &[]).await;

    let work = tempfile::tempdir().unwrap();
    let clip = Arc::new(Clip::make(work.path(), 10));
    let (_priya, mut host) = presenter_and_host(&app, id, &presenter, &organiser, clip.clone()).await;
    let recording_id = start_recording(&mut host).await;
    clip.go.notify_one();
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.kill().expect("SIGKILL");
    server.wait().unwrap();
    let killed_after = 5.0;

    // Before any repair: the files play up to within 2 s of the kill.
    let dir: PathBuf = app.data_dir.path().join("recordings").join(&recording_id);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "webm"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let (_, codec, frames) = probe(file);
        let per_second = if codec == "vp8" { 30.0 } else { 50.0 };
        let seconds = frames as f64 / per_second;
        eprintln!("after the kill at {killed_after} s, {} plays {seconds} s", file.display());
        assert!(seconds >= killed_after - 2.0, "{} plays {seconds} s of {killed_after} s", file.display());
    }

    // On restart the recording is finished and marked recovered.
    app.url = in_process_url;
    app.restart().await;
    let (status, detail) = app.get(&format!("/api/recordings/{recording_id}"), Some(&organiser)).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["status"], "recovered");
    let total = detail["duration_ms"].as_i64().unwrap();
    assert!((3000..=5600).contains(&total), "recovered duration {total} ms");
    for track in detail["tracks"].as_array().unwrap() {
        let path = dir.join(track["file"].as_str().unwrap());
        let (duration, _, frames) = probe(&path);
        let duration = duration.expect("a recovered file has a duration");
        let listed = track["duration_ms"].as_i64().unwrap() as f64 / 1000.0;
        assert!((duration - listed).abs() < 0.1, "{duration} s in the file, {listed} s listed");
        assert!(duration >= killed_after - 2.0 && duration <= killed_after + 0.5, "{duration} s");
        assert!(frames > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_set_to_record_automatically_records_from_going_live() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, _, attendees) = crate::session_in_lobby(&app, &["Ann"]).await;
    // The organiser ticks "record automatically" in the session's form (a PUT of the whole session).
    let (_, s) = app.get(&format!("/api/sessions/{id}"), Some(&organiser)).await;
    assert_eq!(s["record_automatically"], false);
    let presenters: Vec<Value> = s["presenters"].as_array().unwrap().iter().map(|p| p["email"].clone()).collect();
    let body = json!({
        "title": s["title"], "description": s["description"], "kind": s["kind"], "series": s["series"],
        "subject": s["subject"], "phase": s["phase"], "audiences": s["audiences"], "presenters": presenters,
        "starts_at": s["starts_at"], "ends_at": s["ends_at"], "capacity": s["capacity"], "record_automatically": true,
    });
    let (status, saved) =
        app.request(reqwest::Method::PUT, &format!("/api/sessions/{id}"), Some(&organiser), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["record_automatically"], true);

    let mut host = connect(&app.url, id, Some(&room_token(&app, id, &organiser).await)).await;
    host.join().await;
    let mut ann = connect(&app.url, id, Some(&room_token(&app, id, &attendees[0]).await)).await;
    ann.join().await;
    // Nothing is recorded in the lobby.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!ann.drain().iter().any(|m| m["type"] == "recording"));
    host.send(json!({"v": 1, "type": "go_live"}));
    ann.expect("recording starts with the session", |m| m["type"] == "recording" && m["on"] == true).await;
    let (_, list) = app.get(&format!("/api/sessions/{id}/recordings"), Some(&organiser)).await;
    assert_eq!(list[0]["status"], "recording", "{list}");
    // Ending the session finishes the recording.
    host.send(json!({"v": 1, "type": "end_session"}));
    ann.closed().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = app.get(&format!("/api/sessions/{id}/recordings"), Some(&organiser)).await;
        if list[0]["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "the recording was finished when the session ended: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reported_past_what_was_recorded_earns_no_credit_and_no_certificate() {
    let app = spawn_app(Backend::Sqlite).await;
    let (id, organiser, presenter, attendees) = session_with_people(&app, &["Ann", "Ben"]).await;
    let work = tempfile::tempdir().unwrap();
    let clip = Arc::new(Clip::make(work.path(), 3));
    let (_priya, mut host) = presenter_and_host(&app, id, &presenter, &organiser, clip.clone()).await;
    let asked = Instant::now();
    let recording_id = start_recording(&mut host).await;
    clip.go.notify_one();
    let played = Instant::now();

    // Ben never attends: he learns the recording's id, fetches what has been
    // written of its files 2.5 s in and, while its length is still unknown,
    // claims to have watched for ever.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, running) = app.get(&format!("/api/recordings/{recording_id}"), Some(&attendees[1])).await;
    assert_eq!(running["status"], "recording", "{running}");
    let tracks: Vec<String> =
        running["tracks"].as_array().unwrap().iter().map(|t| t["url"].as_str().unwrap().to_string()).collect();
    for url in &tracks {
        fetch(&app, &attendees[1], url, None).await;
    }
    let existed = asked.elapsed().as_millis() as i64;
    let watched = format!("/api/recordings/{recording_id}/watched");
    let forge = |segments: Value| app.post(&watched, Some(&attendees[1]), json!({ "segments": segments }));
    let (status, body) = forge(json!([{"start_ms": 0, "end_ms": i64::MAX}])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let credited = body["watched_ms"].as_i64().unwrap();
    assert!(
        credited < existed,
        "only what had been written when he fetched can have played: {credited} of {existed} ms"
    );
    let (status, body) = forge(json!([{"start_ms": i64::MAX - 1, "end_ms": i64::MAX}])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = forge(json!([{"start_ms": 0, "end_ms": i64::MAX}, {"start_ms": 1, "end_ms": i64::MAX}])).await;
    assert_eq!(status, StatusCode::OK, "overlapping giants neither overflow nor add up: {body}");
    assert!(body["watched_ms"].as_i64().unwrap() < existed, "{body}");

    tokio::time::sleep(Duration::from_millis(3_500).saturating_sub(played.elapsed())).await;
    host.send(json!({"v": 1, "type": "record_stop"}));
    host.expect("the replay is ready", |m| m["type"] == "recording_saved").await;
    // Finished, he fetches the first half of each file and claims the whole again.
    let (_, detail) = app.get(&format!("/api/recordings/{recording_id}"), Some(&attendees[1])).await;
    for track in detail["tracks"].as_array().unwrap() {
        let half = track_bytes(&app, &organiser, track["url"].as_str().unwrap()).await / 2;
        fetch(&app, &attendees[1], track["url"].as_str().unwrap(), Some((0, half))).await;
    }
    let length = detail["duration_ms"].as_i64().unwrap();
    assert!(length >= 3_000, "{detail}");
    let (status, body) = forge(json!([{"start_ms": 0, "end_ms": length}])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let credited = body["watched_ms"].as_i64().unwrap();
    assert!(
        credited > 0 && credited * 4 < length * 3,
        "some seconds, short of the threshold: {credited} of {length} ms"
    );

    // The organiser's report and Ben's own record agree: not attended.
    let (_, report) = app.get(&format!("/api/sessions/{id}/attendance"), Some(&organiser)).await;
    let ben = report["people"].as_array().unwrap().iter().find(|p| p["name"] == "Ben").unwrap().clone();
    assert_ne!(ben["status"], "attended", "{ben}");
    assert_eq!(ben["minutes_replayed"], 0, "{ben}");
    let (_, mine) = app.get("/api/me/attendance", Some(&attendees[1])).await;
    assert!(
        mine["entries"].as_array().unwrap().iter().all(|e| e["status"] != "attended"),
        "no attended entry for Ben: {mine}"
    );
    assert_eq!(mine["total_minutes_credited"], 0, "{mine}");
    // His record shows the seconds he could have seen, as partly, and no certificate is issued for it.
    let (status, record) = app.get("/api/me/record", Some(&attendees[1])).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    let entry = record["entries"].as_array().unwrap().iter().find(|e| e["session_id"] == id).cloned().unwrap();
    assert_eq!((entry["status"].as_str(), entry["minutes"].as_i64()), (Some("partly"), Some(0)), "{entry}");
    let (status, body) = app
        .post(
            &format!("/api/me/record/entries/{}/certificate", entry["id"]),
            Some(&attendees[1]),
            json!({"holder_name": "Ben"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no certificate for a forged replay: {body}");
}

/// The server binary run as a newcomer runs it: from an empty folder with no
/// STAFFROOM_* settings but its address, so its data dir is the relative
/// `./data`. Killed when dropped.
struct Newcomer {
    child: std::process::Child,
    url: String,
    client: crate::helpers::CheckedClient,
}

impl Newcomer {
    fn command(folder: &Path) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_staffroom"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STAFFROOM_") {
                command.env_remove(key);
            }
        }
        command.current_dir(folder).env("RUST_LOG", "warn");
        command
    }

    async fn start(folder: &Path) -> Newcomer {
        let port = crate::helpers::free_port();
        let child = Self::command(folder)
            .env("STAFFROOM_ADDR", format!("127.0.0.1:{port}"))
            .env("STAFFROOM_RTC_PORT", "0")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the staffroom binary starts");
        let server = Newcomer { child, url: format!("http://127.0.0.1:{port}"), client: Default::default() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.client.get(format!("{}/healthz", server.url)).send().await.is_err() {
            assert!(Instant::now() < deadline, "the server came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

impl Drop for Newcomer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_file_download_is_made_with_the_default_relative_data_dir() {
    let folder = tempfile::tempdir().unwrap();
    let created = Newcomer::command(folder.path())
        .args(["create-organiser", "--email", "olu@staffroom.test", "--name", "Olu Organiser"])
        .args(["--password", "organiser-password"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let server = Newcomer::start(folder.path()).await;
    let post = reqwest::Method::POST;
    let signin = json!({"email": "olu@staffroom.test", "password": "organiser-password"});
    let organiser =
        server.call(post.clone(), "/api/auth/signin", None, Some(signin)).await["token"].as_str().unwrap().to_string();
    let signup = json!({"name": "Priya Presenter", "email": "priya@staffroom.test", "password": "correct horse", "school": "", "stage": "teacher"});
    let presenter =
        server.call(post.clone(), "/api/auth/signup", None, Some(signup)).await["token"].as_str().unwrap().to_string();
    // She follows the link in her verification mail, read from the mail files in ./data.
    let mails = folder.path().join("data").join("outbox-files");
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        // The decoded `.txt`: the `.eml` beside it is quoted-printable.
        let found = std::fs::read_dir(&mails).into_iter().flatten().flatten().find_map(|e| {
            e.path().extension().filter(|x| *x == "txt")?;
            let text = std::fs::read_to_string(e.path()).ok().filter(|t| t.contains("priya@staffroom.test"))?;
            let at = text.find("/verify.html?token=")? + "/verify.html?token=".len();
            text[at..].split_whitespace().next().map(str::to_string)
        });
        if let Some(token) = found {
            break token;
        }
        assert!(Instant::now() < deadline, "a verification mail file for Priya in {}", mails.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let verified = server.call(post.clone(), "/api/auth/verify", None, Some(json!({"token": token}))).await;
    assert_eq!(verified["email_verified"], true, "{verified}");
    let starts = chrono::Utc::now() + chrono::Duration::minutes(10);
    let session = json!({
        "title": "Questioning in maths", "kind": "webinar", "series": null, "subject": null, "phase": "all",
        "audiences": ["teacher"], "presenters": ["priya@staffroom.test"], "capacity": 30, "status": "published",
        "starts_at": starts.to_rfc3339(), "ends_at": (starts + chrono::Duration::hours(1)).to_rfc3339(),
    });
    let id = server.call(post.clone(), "/api/sessions", Some(&organiser), Some(session)).await["id"].as_i64().unwrap();
    let join = format!("/api/sessions/{id}/join");
    let room_token = |token: String| {
        let server = &server;
        let (post, join) = (post.clone(), join.clone());
        async move { server.call(post, &join, Some(&token), Some(json!({}))).await["token"].as_str().unwrap().to_string() }
    };

    // A short clip through the live room while the host records it.
    let work = tempfile::tempdir().unwrap();
    let clip = Arc::new(Clip::make(work.path(), 3));
    let mut priya = connect(&server.url, id, Some(&room_token(presenter).await)).await;
    priya.join().await;
    priya.publish_clip(clip.clone());
    let mut host = connect(&server.url, id, Some(&room_token(organiser.clone()).await)).await;
    host.join().await;
    for kind in ["video", "audio"] {
        priya.expect("a track published", |m| m["type"] == "track_published" && m["track"]["kind"] == kind).await;
    }
    host.send(json!({"v": 1, "type": "go_live"}));
    host.expect("live", |m| m["type"] == "phase" && m["phase"] == "live").await;
    let recording_id = start_recording(&mut host).await;
    clip.go.notify_one();
    tokio::time::sleep(Duration::from_millis(3400)).await;
    host.send(json!({"v": 1, "type": "record_stop"}));
    host.expect("the recording saved", |m| m["type"] == "recording_saved").await;

    // The download is made in the relative ./data, and is a playable file.
    let deadline = Instant::now() + Duration::from_secs(90);
    let download_url = loop {
        let list =
            server.call(reqwest::Method::GET, &format!("/api/sessions/{id}/recordings"), Some(&organiser), None).await;
        match list[0]["download_status"].as_str() {
            Some("ready") => break list[0]["download_url"].as_str().unwrap().to_string(),
            Some(s @ ("failed" | "empty")) => panic!("the download came to {s} with ./data as the data dir: {list}"),
            _ => assert!(Instant::now() < deadline, "the download was made within 90 s: {list}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(folder.path().join("data/recordings").join(&recording_id).join("download.webm").is_file());
    let bytes =
        server.client.get(format!("{}{download_url}", server.url)).bearer_auth(&organiser).send().await.unwrap();
    assert_eq!(bytes.status(), StatusCode::OK);
    let path = work.path().join("download.webm");
    std::fs::write(&path, bytes.bytes().await.unwrap()).unwrap();
    let (duration, codec, frames) = probe(&path);
    assert_eq!(codec, "vp8");
    assert!(frames > 30, "{frames} frames");
    let duration = duration.expect("the download has a duration");
    assert!((2.5..=4.5).contains(&duration), "the download lasts {duration} s");
}

/// Replay credit is what was watched of what the server sent: a player
/// that reports the whole recording is believed only as far as the bytes it
/// fetched go (mapped to time through the files' clusters), for every file
/// on the stage at each moment.
async fn replay_credit_goes_no_further_than_the_bytes_the_server_sent_to_that_person(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, organiser, presenter, attendees) = session_with_people(&app, &["Ann", "Ben", "Cat"]).await;
    let (ann, ben, cat) = (&attendees[0], &attendees[1], &attendees[2]);
    let work = tempfile::tempdir().unwrap();
    let clip = Arc::new(Clip::make(work.path(), 4));
    let (_priya, mut host) = presenter_and_host(&app, id, &presenter, &organiser, clip.clone()).await;
    start_recording(&mut host).await;
    clip.go.notify_one();
    tokio::time::sleep(Duration::from_millis(4_300)).await;
    host.send(json!({"v": 1, "type": "record_stop"}));
    let saved = host.expect("the replay is ready", |m| m["type"] == "recording_saved").await;
    let recording_id = saved["recording_id"].as_str().unwrap().to_string();

    let (_, detail) = app.get(&format!("/api/recordings/{recording_id}"), Some(ann)).await;
    let length = detail["duration_ms"].as_i64().unwrap();
    assert!(length > 3_500, "{detail}");
    let tracks = detail["tracks"].as_array().unwrap();
    let track = |kind: &str| {
        let track = tracks.iter().find(|t| t["kind"] == kind).unwrap_or_else(|| panic!("a {kind} track: {detail}"));
        (track["url"].as_str().unwrap().to_string(), track["start_ms"].as_i64().unwrap())
    };
    let files = [("v", track("video")), ("a", track("audio"))];
    let watched = format!("/api/recordings/{recording_id}/watched");
    let everything = json!({"segments": [{"start_ms": 0, "end_ms": length}]});

    // Ben fetched nothing: reporting the whole recording earns nothing.
    let (status, body) = app.post(&watched, Some(ben), everything.clone()).await;
    assert_eq!((status, body["watched_ms"].as_i64()), (StatusCode::OK, Some(0)), "{body}");

    // Cat fetches both files whole (with her bearer header: players fetch
    // with the session cookie or a header, never a token in the URL), and is
    // believed in full.
    let mut wholes = vec![];
    for (_, (url, _)) in &files {
        assert!(!url.contains('?'), "{url}");
        wholes.push(fetch(&app, cat, url, None).await);
    }
    let (_, body) = app.post(&watched, Some(cat), everything.clone()).await;
    assert_eq!(body["watched_ms"].as_i64(), Some(length), "{body}");

    // Ann fetches the first half of each file with a Range request, and
    // reports the whole recording: she is credited up to the start of the
    // first cluster (at most a second of media) she was not sent whole, in
    // whichever file that comes first.
    let mut sent_to = i64::MAX;
    for ((stream, (url, start)), whole) in files.iter().zip(&wholes) {
        let half = whole.len() as u64 / 2;
        fetch(&app, ann, url, Some((0, half - 1))).await;
        sent_to = sent_to.min(start + first_frame_not_sent_ms(whole, half, stream, work.path()));
    }
    let (status, body) = app.post(&watched, Some(ann), everything.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let credited = body["watched_ms"].as_i64().unwrap();
    eprintln!("Ann was sent half of each file (the first frame she lacks plays at {sent_to} ms): credited {credited} of {length} ms");
    assert!(
        credited <= sent_to && credited > sent_to - 1_000,
        "credit ends at the start of the cluster of the first frame she was not sent: {credited} ms, that frame at {sent_to} ms"
    );
    assert!(credited < length - 1_000, "{credited} of {length}");

    // The rest fetched (a seek forward, say), the same report is believed in full.
    for ((_, (url, _)), whole) in files.iter().zip(&wholes) {
        let size = whole.len() as u64;
        fetch(&app, ann, url, Some((size / 2, size - 1))).await;
    }
    let (_, body) = app.post(&watched, Some(ann), everything.clone()).await;
    assert_eq!(body["watched_ms"].as_i64(), Some(length), "{body}");

    // What each was sent is stored, merged, per person and file.
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "select s.file, s.start_byte, s.end_byte from replay_served s join users u on u.id = s.user_id
         where s.recording_id = $1 and u.email = 'ann@oak.sch.uk' order by s.file",
    )
    .bind(&recording_id)
    .fetch_all(&app.state.db.read)
    .await
    .unwrap();
    let mut stored: Vec<u64> = rows.iter().map(|(_, a, b)| (b - a) as u64).collect();
    assert!(rows.iter().all(|(_, a, _)| *a == 0), "the two halves of each file merged into one range: {rows:?}");
    let mut sizes: Vec<u64> = wholes.iter().map(|w| w.len() as u64).collect();
    stored.sort();
    sizes.sort();
    assert_eq!(stored, sizes, "{rows:?}");
}
both_backends!(replay_credit_goes_no_further_than_the_bytes_the_server_sent_to_that_person);
