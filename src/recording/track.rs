//! One recorded track: RTP packets in, a WebM file out. Runs on its own
//! blocking thread so file writes never stall the runtime. Frames are
//! rebuilt from RTP (reordering, dropping incomplete frames) and stamped from
//! their RTP timestamps, not by counting: a track's clock is its sender's.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use rtc::{
    media::io::sample_builder::SampleBuilder,
    rtp::{
        codec::{opus::OpusPacket, vp8::Vp8Packet},
        packetizer::Depacketizer,
        Packet,
    },
};
use tokio::sync::mpsc;

use super::webm::{self, Codec, Writer};

/// Packets waiting for the writer thread; beyond this, newer ones are dropped.
pub const QUEUE: usize = 4096;

/// What a finished track came to.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// When its first frame arrived, on the recording's clock (ms); `None`
    /// if no usable frame ever came (the file is then removed).
    pub start_ms: Option<i64>,
    pub duration_ms: i64,
    pub bytes: u64,
}

/// Told once, when the first frame is on disk: the track's start on the recording's clock.
pub type Started = Box<dyn FnOnce(i64) + Send>;

/// Asks the publisher for a keyframe.
pub type AskKeyframe = Box<dyn Fn() + Send>;

/// How often to ask for a keyframe while a video file waits for its first.
const ASK_EVERY: Duration = Duration::from_millis(700);

/// Writes `packets` to `path` until the sender is dropped; `clock` is the
/// recording's start. A video track asks for a keyframe (`ask`) until its
/// first one arrives.
pub fn spawn(
    path: PathBuf,
    codec: Codec,
    clock: Instant,
    packets: mpsc::Receiver<Packet>,
    started: Started,
    ask: AskKeyframe,
) -> tokio::task::JoinHandle<Written> {
    tokio::task::spawn_blocking(move || {
        let out = (path, codec, clock, started, ask);
        match codec {
            Codec::Vp8 => run(out, packets, SampleBuilder::new(256, Vp8Packet::default(), 90_000)),
            Codec::Opus => run(out, packets, SampleBuilder::new(32, OpusPacket, 48_000)),
        }
    })
}

fn run<D: Depacketizer>(
    (path, codec, clock, started, ask): (PathBuf, Codec, Instant, Started, AskKeyframe),
    mut packets: mpsc::Receiver<Packet>,
    builder: SampleBuilder<D>,
) -> Written {
    let rate: i64 = if codec == Codec::Vp8 { 90_000 } else { 48_000 };
    let mut builder = builder.with_max_time_delay(Duration::from_millis(500));
    let mut file: Option<Writer> = None;
    let mut started = Some(started);
    let mut start_ms = None;
    // RTP timestamps, unwrapped past 2^32, of the first frame and the last.
    let (mut first_ts, mut last_ts) = (0i64, 0i64);
    let mut failed = false;
    let mut asked: Option<Instant> = None;
    while let Some(packet) = packets.blocking_recv() {
        if codec == Codec::Vp8 && file.is_none() && asked.is_none_or(|at| at.elapsed() >= ASK_EVERY) {
            ask();
            asked = Some(Instant::now());
        }
        builder.push(Instant::now(), packet);
        while let Some(sample) = builder.pop(Instant::now()) {
            if failed || sample.data.is_empty() {
                continue;
            }
            let keyframe = codec == Codec::Opus || webm::vp8_keyframe(&sample.data);
            let writer = match &mut file {
                Some(w) => w,
                // Video starts at a keyframe: nothing before one can be decoded.
                None if !keyframe => continue,
                None => match Writer::create(&path, codec, webm::vp8_size(&sample.data)) {
                    Ok(w) => {
                        let ms = clock.elapsed().as_millis() as i64;
                        start_ms = Some(ms);
                        if let Some(tell) = started.take() {
                            tell(ms);
                        }
                        first_ts = sample.packet_timestamp as i64;
                        last_ts = first_ts;
                        file.insert(w)
                    }
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "cannot create a recording file");
                        failed = true;
                        continue;
                    }
                },
            };
            // The nearest unwrapped timestamp to the last one.
            let ts = last_ts + (sample.packet_timestamp.wrapping_sub(last_ts as u32) as i32) as i64;
            last_ts = ts;
            let ms = (ts - first_ts) * 1000 / rate;
            if let Err(e) = writer.push(ms, keyframe, &sample.data) {
                tracing::error!(path = %path.display(), error = %e, "recording write failed; the track stops here");
                failed = true;
            }
        }
    }
    match file {
        None => Written::default(),
        Some(w) => match w.finish() {
            Ok((duration_ms, bytes)) => Written { start_ms, duration_ms, bytes },
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "finishing a recording file failed");
                Written { start_ms, ..Default::default() }
            }
        },
    }
}
