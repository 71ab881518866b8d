//! Driving Janus 1.1.2's VideoRoom over its HTTP API with the same generator
//! peers: one presenter publishing the same stream, N subscribers to its feed.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use webrtc::peer_connection::RTCSessionDescription;

use crate::client::{MediaPeer, Received, Stream};

pub const ROOM: u64 = 1234;

/// The host's first address. Janus (libnice) never gathers loopback
/// candidates, so Janus and its peers use this address instead; packets to
/// one of the host's own addresses still travel over the kernel's loopback
/// device, never a wire. scripts/janus-config.sh picks the same address.
pub fn local_ip() -> String {
    let out = Command::new("hostname").arg("-I").output().expect("hostname -I");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("the host has an address").to_string()
}

pub struct Janus {
    child: Child,
    pub pid: u32,
    pub url: String,
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Janus with the loopback configuration of scripts/janus-config.sh.
pub async fn start(dir: &Path, port: u16) -> Janus {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/janus-config.sh");
    let ok = Command::new(script).arg(dir).arg(port.to_string()).status().expect("scripts/janus-config.sh runs");
    assert!(ok.success(), "the Janus configuration is written");
    let log = std::fs::File::create(dir.join("janus.log")).unwrap();
    let child = Command::new("janus")
        .arg("-C")
        .arg(dir.join("janus.jcfg"))
        .arg("-F")
        .arg(dir)
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("janus starts (apt-get install janus)");
    let janus = Janus { pid: child.id(), child, url: format!("http://127.0.0.1:{port}/janus") };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{}/info", janus.url)).send().await.is_ok() {
            return janus;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Janus did not answer on {}", janus.url);
}

/// One Janus session with one VideoRoom handle.
struct Handle {
    http: reqwest::Client,
    session: String,
    handle: String,
}

fn tx() -> String {
    format!("{:x}", rand::random::<u64>())
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let res = http.post(url).json(&body).send().await.expect("Janus answers");
    res.json().await.expect("Janus sends JSON")
}

impl Handle {
    async fn new(http: &reqwest::Client, url: &str) -> Handle {
        let created = post(http, url, json!({"janus": "create", "transaction": tx()})).await;
        let session = format!("{url}/{}", created["data"]["id"]);
        let attached =
            post(http, &session, json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": tx()}))
                .await;
        let handle = format!("{session}/{}", attached["data"]["id"]);
        Handle { http: http.clone(), session, handle }
    }

    async fn message(&self, body: Value, jsep: Option<Value>) {
        let mut m = json!({"janus": "message", "transaction": tx(), "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let ack = post(&self.http, &self.handle, m).await;
        assert!(ack["janus"] == "ack" || ack["janus"] == "success", "Janus refused: {ack}");
    }

    /// Long-polls the session until an event carrying a JSEP arrives (10 s).
    async fn jsep_event(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let res = self.http.get(format!("{}?maxev=1", self.session)).send().await.expect("Janus long-poll");
            let v: Value = res.json().await.unwrap();
            for e in v.as_array().cloned().unwrap_or_else(|| vec![v]) {
                if e.get("jsep").is_some() {
                    return e;
                }
                if e["janus"] == "event" && e["plugindata"]["data"]["error"].is_string() {
                    panic!("Janus VideoRoom error: {e}");
                }
            }
        }
        panic!("no JSEP from Janus within 10 s");
    }

    /// Sends our ICE candidates to Janus as they are gathered.
    fn trickle(&self, peer: &mut MediaPeer) {
        let mut candidates = std::mem::replace(&mut peer.candidates, tokio::sync::mpsc::unbounded_channel().1);
        let (http, url) = (self.http.clone(), self.handle.clone());
        tokio::spawn(async move {
            while let Some(c) = candidates.recv().await {
                let body = json!({"janus": "trickle", "transaction": tx(), "candidate": c});
                let _ = http.post(&url).json(&body).send().await;
            }
        });
    }
}

/// The presenter: joins the room as a publisher with the stream; returns
/// the peer (its `sent` counter) and the feed id subscribers ask for.
pub async fn publish(url: &str, stream: Stream) -> (MediaPeer, Value) {
    let http = reqwest::Client::new();
    let h = Handle::new(&http, url).await;
    let mut peer = MediaPeer::new(&format!("{}:0", local_ip())).await;
    peer.publish(stream).await;
    let offer = peer.pc.create_offer(None).await.unwrap();
    peer.pc.set_local_description(offer).await.unwrap();
    h.trickle(&mut peer);
    let sdp = peer.pc.local_description().await.unwrap().sdp;
    h.message(
        json!({"request": "joinandconfigure", "room": ROOM, "ptype": "publisher", "display": "presenter", "audio": true, "video": true}),
        Some(json!({"type": "offer", "sdp": sdp})),
    )
    .await;
    let e = h.jsep_event().await;
    let answer = e["jsep"]["sdp"].as_str().unwrap().to_string();
    if std::env::var_os("JANUS_DEBUG").is_some() {
        eprintln!("offer:\n{sdp}\nanswer:\n{answer}");
    }
    peer.pc
        .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .expect("Janus's answer applies");
    let feed = e["plugindata"]["data"]["id"].clone();
    (peer, feed)
}

/// A viewer's first steps: a handle that joins as a subscriber to `feed`;
/// returns it, Janus's offer and when the join began.
async fn join_subscriber(url: &str, feed: Value) -> (Handle, String, Instant) {
    let http = reqwest::Client::new();
    let joined_at = Instant::now();
    let h = Handle::new(&http, url).await;
    h.message(json!({"request": "join", "room": ROOM, "ptype": "subscriber", "streams": [{"feed": feed}]}), None).await;
    let e = h.jsep_event().await;
    (h, e["jsep"]["sdp"].as_str().unwrap().to_string(), joined_at)
}

/// A viewer: subscribes to `feed`, answers Janus's offer, starts.
pub async fn subscribe(url: &str, feed: Value) -> (MediaPeer, Instant) {
    let (h, offer, joined_at) = join_subscriber(url, feed).await;
    let mut peer = MediaPeer::new(&format!("{}:0", local_ip())).await;
    peer.pc.set_remote_description(RTCSessionDescription::offer(offer).unwrap()).await.expect("Janus's offer applies");
    let answer = peer.pc.create_answer(None).await.unwrap();
    peer.pc.set_local_description(answer).await.unwrap();
    h.trickle(&mut peer);
    let sdp = peer.pc.local_description().await.unwrap().sdp;
    h.message(json!({"request": "start", "room": ROOM}), Some(json!({"type": "answer", "sdp": sdp}))).await;
    (peer, joined_at)
}

/// [`subscribe`] with a light viewer (`light_viewer.rs`) instead of a full
/// peer; its one candidate is in its answer.
pub async fn subscribe_light(url: String, feed: Value) -> (super::light_viewer::LightViewer, Instant) {
    let (h, offer, joined_at) = join_subscriber(&url, feed).await;
    let viewer = super::light_viewer::LightViewer::new(&local_ip()).await;
    answer_and_start(&h, &viewer.ops, offer).await;
    (viewer, joined_at)
}

/// [`subscribe`] with a counting viewer (`counting_viewer.rs`) of `pool`.
pub async fn subscribe_counting(
    url: String,
    feed: Value,
    pool: Arc<super::counting_viewer::Pool>,
) -> (super::counting_viewer::CountingViewer, Instant) {
    let (h, offer, joined_at) = join_subscriber(&url, feed).await;
    let viewer = super::counting_viewer::CountingViewer::new(&pool, &local_ip());
    answer_and_start(&h, &viewer.ops, offer).await;
    (viewer, joined_at)
}

/// Answers Janus's offer with `ops`'s peer connection (its one candidate is
/// in its answer) and starts the subscription.
async fn answer_and_start(h: &Handle, ops: &super::light_viewer::Ops, offer: String) {
    let answer = ops.answer(offer).await;
    h.message(json!({"request": "start", "room": ROOM}), Some(json!({"type": "answer", "sdp": answer}))).await;
}

pub type Counted = (Arc<Mutex<Received>>, Instant);

/// [`subscribe`] with owned arguments, to run as its own task.
pub async fn subscribe_owned(url: String, feed: Value) -> (MediaPeer, Instant) {
    subscribe(&url, feed).await
}
