//! RTP packets as a publisher may send them (any order, loss, duplicates,
//! any payload) through the recorder's track writer into a WebM file, then
//! the file through crash recovery: neither may panic, whatever arrives.
#![no_main]

use std::{sync::OnceLock, time::Instant};

use libfuzzer_sys::fuzz_target;
use staffroom::recording::{
    track,
    webm::{self, Codec},
};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap())
}

/// Each packet: 1 byte of flags (bit 0: marker), 2 of sequence number, 4 of
/// timestamp, 1 of payload length, then the payload. The first byte of all
/// picks the codec.
fn packets(data: &[u8]) -> Vec<rtc::rtp::Packet> {
    let mut out = vec![];
    let mut rest = data;
    while rest.len() >= 8 {
        let (head, tail) = rest.split_at(8);
        let len = (head[7] as usize).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        let mut packet = rtc::rtp::Packet::default();
        packet.header.version = 2;
        packet.header.marker = head[0] & 1 == 1;
        packet.header.sequence_number = u16::from_be_bytes([head[1], head[2]]);
        packet.header.timestamp = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
        packet.payload = bytes::Bytes::copy_from_slice(payload);
        out.push(packet);
        rest = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else { return };
    let codec = if pick & 1 == 0 { Codec::Vp8 } else { Codec::Opus };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.webm");
    let written = runtime().block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel(track::QUEUE);
        let handle = track::spawn(path.clone(), codec, Instant::now(), rx, Box::new(|_| {}), Box::new(|| {}));
        for packet in packets(data) {
            let _ = tx.send(packet).await;
        }
        drop(tx);
        handle.await.expect("the track writer does not panic")
    });
    if written.start_ms.is_some() {
        let _ = webm::recover(&path);
    }
});
