//! Recording cost: four tracks (two 720p-like VP8 videos at ~1.3 Mbps, a
//! camera and a screen, and two Opus audios) recorded for a minute of media.
//! The packets go through the real writer path (`recording::track`: frame
//! reassembly, WebM clusters, file writes). By default they are fed as fast
//! as the writers take them (CPU time / media time is the work a live
//! recording of the same tracks does); with `--live 1` they are paced in real
//! time, as a room delivers them, which adds the cost of waking the writer
//! threads for every packet.
//!
//!     cargo bench --bench recording -- [--seconds 60] [--runs 5] [--live 1]
//!
//! Prints, per run, CPU seconds (user + system, whole process), the share of
//! one core, bytes written and the disk throughput a live recording needs;
//! then the medians.

use std::time::Instant;

use bytes::Bytes;
use rtc::rtp::{codec::vp8::Vp8Payloader, header::Header, packetizer::Payloader, Packet};
use staffroom::recording::{track, webm::Codec};
use tokio::sync::mpsc;

fn arg(name: &str, default: u64) -> u64 {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// A VP8 frame the depacketizer accepts: keyframes carry the start code and a size.
fn vp8_frame(key: bool, len: usize, n: u8) -> Bytes {
    let mut f = vec![if key { 0x10 } else { 0x11 }, 0, 0, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02];
    f.resize(len, n);
    Bytes::from(f)
}

/// One video track's packets for `seconds`: 30 frames a second, ~5.4 KB a
/// frame (1.3 Mbps), a keyframe of 34 KB every 2 s.
fn video_packets(seconds: u64, ssrc: u32) -> Vec<Packet> {
    let mut payloader = Vp8Payloader::default();
    let (mut out, mut seq) = (vec![], 0u16);
    for frame in 0..seconds * 30 {
        let key = frame % 60 == 0;
        let data = vp8_frame(key, if key { 34_000 } else { 5_400 }, frame as u8);
        let parts = payloader.payload(1150, &data).unwrap();
        let n = parts.len();
        for (i, payload) in parts.into_iter().enumerate() {
            let header = Header {
                version: 2,
                marker: i + 1 == n,
                payload_type: 96,
                sequence_number: seq,
                timestamp: frame as u32 * 3000,
                ssrc,
                ..Default::default()
            };
            out.push(Packet { header, payload });
            seq = seq.wrapping_add(1);
        }
    }
    out
}

/// One audio track: 50 Opus packets of 80 bytes a second (32 kbps).
fn audio_packets(seconds: u64, ssrc: u32) -> Vec<Packet> {
    (0..seconds * 50)
        .map(|i| Packet {
            header: Header {
                version: 2,
                marker: true,
                payload_type: 111,
                sequence_number: i as u16,
                timestamp: i as u32 * 960,
                ssrc,
                ..Default::default()
            },
            payload: Bytes::from(vec![0xfc; 80]),
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let seconds = arg("--seconds", 60);
    let runs = arg("--runs", 5);
    let live = arg("--live", 0) == 1;
    let tracks: Vec<(Codec, Vec<Packet>)> = vec![
        (Codec::Vp8, video_packets(seconds, 1)),
        (Codec::Vp8, video_packets(seconds, 2)),
        (Codec::Opus, audio_packets(seconds, 3)),
        (Codec::Opus, audio_packets(seconds, 4)),
    ];
    let packets: usize = tracks.iter().map(|(_, p)| p.len()).sum();
    let pace = if live { "paced in real time" } else { "as fast as they are taken" };
    println!("recording 4 tracks ({packets} RTP packets, {pace}) for {seconds} s of media, {runs} runs");
    let (mut shares, mut rates) = (vec![], vec![]);
    for run in 1..=runs {
        let dir = tempfile::tempdir().unwrap();
        let clock = Instant::now();
        let (cpu0, wall0) = (cpu_seconds(), Instant::now());
        let mut writers = vec![];
        for (i, (codec, packets)) in tracks.iter().enumerate() {
            let (tx, rx) = mpsc::channel(track::QUEUE);
            let path = dir.path().join(format!("{i}.webm"));
            writers.push(track::spawn(path, *codec, clock, rx, Box::new(|_| {}), Box::new(|| {})));
            let packets = packets.clone();
            let rate = if *codec == Codec::Vp8 { 90_000 } else { 48_000 };
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                for p in packets {
                    if live {
                        let due = std::time::Duration::from_micros(p.header.timestamp as u64 * 1_000_000 / rate);
                        tokio::time::sleep_until(start + due).await;
                    }
                    if tx.send(p).await.is_err() {
                        break;
                    }
                }
            });
        }
        let mut bytes = 0;
        for w in writers {
            bytes += w.await.unwrap().bytes;
        }
        let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
        let share = cpu / seconds as f64 * 100.0;
        let rate = bytes as f64 / seconds as f64 / 1024.0;
        println!(
            "run {run}: {cpu:.3} s CPU in {wall:.2} s wall = {share:.2} % of one core live; \
             {:.1} MB written = {rate:.0} KiB/s live",
            bytes as f64 / 1e6
        );
        shares.push(share);
        rates.push(rate);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "median: {:.2} % of one core, {:.0} KiB/s to disk (target: under 3 % of one core)",
        median(&mut shares),
        median(&mut rates)
    );
}
