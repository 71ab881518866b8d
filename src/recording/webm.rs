//! A WebM writer for one track, built for recording live media: frames go to
//! disk a cluster at a time as they arrive (each cluster is written whole,
//! with its size), so a file cut short by a crash still plays up to its last
//! cluster. `finish` then adds the seek index (Cues), the duration and the
//! segment size in place: no remux. `recover` does the same for a file a
//! crash left open, after cutting off a torn last cluster.
//!
//! Layout (see docs/recording.md):
//! ```text
//! EBML header | Segment (size patched on finish)
//!   Void       reserved, becomes SeekHead + Void on finish
//!   Info       TimestampScale 1 ms, apps, Void reserved for Duration
//!   Tracks     one TrackEntry (VP8 video or Opus audio)
//!   Cluster*   Timestamp + SimpleBlocks, at most ~1 s each, known size
//!   Cues       on finish: one point per cluster that starts with a keyframe
//! ```

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::Path,
};

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const SEEK: u32 = 0x4DBB;
const SEEK_ID: u32 = 0x53AB;
const SEEK_POSITION: u32 = 0x53AC;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const CLUSTER: u32 = 0x1F43_B675;
const CLUSTER_TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const CUES: u32 = 0x1C53_BB6B;
const CUE_POINT: u32 = 0xBB;
const CUE_TIME: u32 = 0xB3;
const CUE_TRACK_POSITIONS: u32 = 0xB7;
const CUE_TRACK: u32 = 0xF7;
const CUE_CLUSTER_POSITION: u32 = 0xF1;
const VOID: u32 = 0xEC;

/// Bytes kept free after the segment start for the SeekHead written on finish.
const SEEK_HEAD_SPACE: usize = 96;
/// A cluster is closed once it spans this much media, so a crash loses at most about a second.
const CLUSTER_MS: i64 = 1000;
/// The size field of a segment still being written: "unknown".
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
/// The same, as `parse_header` reads it.
const UNKNOWN: u64 = 0x00FF_FFFF_FFFF_FFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Vp8,
    Opus,
}

impl Codec {
    pub fn from_mime(mime: &str) -> Option<Codec> {
        match mime.to_ascii_lowercase().as_str() {
            "video/vp8" => Some(Codec::Vp8),
            "audio/opus" => Some(Codec::Opus),
            _ => None,
        }
    }
}

/// Whether a VP8 frame is a keyframe (RFC 6386 §9.1: bit 0 of the first byte is 0).
pub fn vp8_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// A VP8 keyframe's picture size (RFC 6386 §9.1), when the frame is one.
pub fn vp8_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || !vp8_keyframe(frame) || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

/// Writes one track's frames to a WebM file as they arrive.
pub struct Writer {
    file: File,
    codec: Codec,
    /// Where the segment's data starts: positions in SeekHead and Cues count from here.
    segment_data: u64,
    /// The reserved Void for the duration, inside Info.
    duration_slot: u64,
    /// Blocks of the open cluster, and its timestamp.
    blocks: Vec<u8>,
    cluster_ms: Option<i64>,
    cluster_has_keyframe: bool,
    cues: Vec<(i64, u64)>,
    last_ms: i64,
    frame_ms: i64,
    bytes: u64,
}

impl Writer {
    /// Creates the file and writes its header; `size` is the first keyframe's
    /// picture size for video.
    pub fn create(path: &Path, codec: Codec, size: Option<(u16, u16)>) -> io::Result<Writer> {
        let mut file = OpenOptions::new().create_new(true).write(true).read(true).open(path)?;
        let mut head = Vec::with_capacity(512);
        element(
            &mut head,
            EBML,
            &[
                uint(0x4286, 1),
                uint(0x42F7, 1),
                uint(0x42F2, 4),
                uint(0x42F3, 8),
                string(0x4282, "webm"),
                uint(0x4287, 4),
                uint(0x4285, 2),
            ]
            .concat(),
        );
        put_id(&mut head, SEGMENT);
        head.extend_from_slice(&UNKNOWN_SIZE);
        let segment_data = head.len() as u64;
        void(&mut head, SEEK_HEAD_SPACE);
        let mut info = Vec::new();
        info.extend(uint(TIMESTAMP_SCALE, 1_000_000));
        info.extend(string(MUXING_APP, "staffroom"));
        info.extend(string(WRITING_APP, "staffroom"));
        let duration_at = info.len();
        void(&mut info, 11); // a Duration (float64) is 11 bytes
        put_id(&mut head, INFO);
        put_size(&mut head, info.len() as u64);
        let duration_slot = (head.len() + duration_at) as u64;
        head.extend(info);
        element(&mut head, TRACKS, &track_entry(codec, size));
        file.write_all(&head)?;
        let bytes = head.len() as u64;
        Ok(Writer {
            file,
            codec,
            segment_data,
            duration_slot,
            blocks: Vec::new(),
            cluster_ms: None,
            cluster_has_keyframe: false,
            cues: Vec::new(),
            last_ms: 0,
            frame_ms: 0,
            bytes,
        })
    }

    /// Adds a frame at `ms` (from the track's start; never earlier than the
    /// previous frame's). Writes the open cluster first when it is long
    /// enough or a keyframe starts a new one.
    pub fn push(&mut self, ms: i64, keyframe: bool, frame: &[u8]) -> io::Result<()> {
        let ms = ms.max(self.last_ms);
        if let Some(start) = self.cluster_ms {
            let video_key = self.codec == Codec::Vp8 && keyframe;
            if ms - start >= CLUSTER_MS || video_key || ms - start > i16::MAX as i64 {
                self.flush()?;
            }
        }
        let start = *self.cluster_ms.get_or_insert(ms);
        if self.blocks.is_empty() {
            self.cluster_has_keyframe = keyframe || self.codec == Codec::Opus;
        }
        let mut block = Vec::with_capacity(frame.len() + 4);
        block.push(0x81); // track 1
        block.extend_from_slice(&((ms - start) as i16).to_be_bytes());
        block.push(if keyframe || self.codec == Codec::Opus { 0x80 } else { 0 });
        block.extend_from_slice(frame);
        element(&mut self.blocks, SIMPLE_BLOCK, &block);
        if ms > self.last_ms {
            self.frame_ms = ms - self.last_ms;
        }
        self.last_ms = ms;
        Ok(())
    }

    /// Writes the open cluster to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(start) = self.cluster_ms.take() else { return Ok(()) };
        let position = self.file.seek(SeekFrom::End(0))? - self.segment_data;
        let mut body = uint(CLUSTER_TIMESTAMP, start as u64);
        body.append(&mut self.blocks);
        let mut cluster = Vec::with_capacity(body.len() + 12);
        element(&mut cluster, CLUSTER, &body);
        self.file.write_all(&cluster)?;
        self.bytes += cluster.len() as u64;
        if self.cluster_has_keyframe {
            self.cues.push((start, position));
        }
        Ok(())
    }

    /// The media written so far, in ms (the last frame's end).
    pub fn duration_ms(&self) -> i64 {
        self.last_ms + self.frame_ms.max(if self.codec == Codec::Opus { 20 } else { 0 })
    }

    /// Writes the last cluster, the index, the duration and the segment size.
    /// Returns the duration (ms) and the file's size.
    pub fn finish(mut self) -> io::Result<(i64, u64)> {
        self.flush()?;
        let duration = self.duration_ms();
        let size = finalise(&mut self.file, self.segment_data, self.duration_slot, &self.cues, duration)?;
        Ok((duration, size))
    }

    pub fn bytes(&self) -> u64 {
        self.bytes + self.blocks.len() as u64
    }
}

fn track_entry(codec: Codec, size: Option<(u16, u16)>) -> Vec<u8> {
    let mut entry = Vec::new();
    entry.extend(uint(0xD7, 1)); // TrackNumber
    entry.extend(uint(0x73C5, rand::random::<u32>() as u64 | 1)); // TrackUID
    entry.extend(uint(0x9C, 0)); // FlagLacing
    match codec {
        Codec::Vp8 => {
            let (w, h) = size.unwrap_or((640, 480));
            entry.extend(uint(0x83, 1)); // TrackType video
            entry.extend(string(0x86, "V_VP8"));
            let mut video = uint(0xB0, w as u64);
            video.extend(uint(0xBA, h as u64));
            element(&mut entry, 0xE0, &video);
        }
        Codec::Opus => {
            entry.extend(uint(0x83, 2)); // TrackType audio
            entry.extend(string(0x86, "A_OPUS"));
            // OpusHead (RFC 7845 §5.1): version 1, 2 channels, no pre-skip, 48 kHz, no gain, family 0.
            let mut head = b"OpusHead".to_vec();
            head.extend_from_slice(&[1, 2, 0, 0]);
            head.extend_from_slice(&48_000u32.to_le_bytes());
            head.extend_from_slice(&[0, 0, 0]);
            element(&mut entry, 0x63A2, &head);
            entry.extend(uint(0x56BB, 80_000_000)); // SeekPreRoll: 80 ms
            let mut audio = float(0xB5, 48_000.0);
            audio.extend(uint(0x9F, 2));
            element(&mut entry, 0xE1, &audio);
        }
    }
    let mut out = Vec::new();
    element(&mut out, TRACK_ENTRY, &entry);
    out
}

/// Appends Cues, and fills the reserved SeekHead, Duration and segment size.
fn finalise(
    file: &mut File,
    segment_data: u64,
    duration_slot: u64,
    cues: &[(i64, u64)],
    duration: i64,
) -> io::Result<u64> {
    let cues_at = file.seek(SeekFrom::End(0))?;
    let mut points = Vec::new();
    for (ms, position) in cues {
        let mut track = uint(CUE_TRACK, 1);
        track.extend(uint(CUE_CLUSTER_POSITION, *position));
        let mut point = uint(CUE_TIME, *ms as u64);
        element(&mut point, CUE_TRACK_POSITIONS, &track);
        element(&mut points, CUE_POINT, &point);
    }
    let mut tail = Vec::new();
    if !points.is_empty() {
        element(&mut tail, CUES, &points);
    }
    file.write_all(&tail)?;
    let end = cues_at + tail.len() as u64;

    // SeekHead: where Info, Tracks and Cues are.
    let mut seeks = Vec::new();
    let info_at = SEEK_HEAD_SPACE as u64;
    let tracks_at = {
        // Tracks follows Info: read Info's size to find it.
        file.seek(SeekFrom::Start(segment_data + info_at))?;
        let (_, header, size) = read_header(file)?.ok_or_else(|| corrupt("no Info after the SeekHead space"))?;
        info_at + header + size
    };
    let mut targets = vec![(INFO, info_at), (TRACKS, tracks_at)];
    if !points.is_empty() {
        targets.push((CUES, cues_at - segment_data));
    }
    for (id, position) in targets {
        let mut seek = Vec::new();
        let mut id_bytes = Vec::new();
        put_id(&mut id_bytes, id);
        element(&mut seek, SEEK_ID, &id_bytes);
        seek.extend(uint(SEEK_POSITION, position));
        element(&mut seeks, SEEK, &seek);
    }
    let mut head = Vec::new();
    element(&mut head, SEEK_HEAD, &seeks);
    let rest = SEEK_HEAD_SPACE - head.len();
    void(&mut head, rest);
    file.seek(SeekFrom::Start(segment_data))?;
    file.write_all(&head)?;

    file.seek(SeekFrom::Start(duration_slot))?;
    file.write_all(&float(DURATION, duration as f64))?;

    // The segment's size, as an 8-byte vint in place of "unknown".
    let size = end - segment_data;
    let mut vint = size.to_be_bytes();
    vint[0] = 0x01;
    file.seek(SeekFrom::Start(segment_data - 8))?;
    file.write_all(&vint)?;
    file.sync_all()?;
    Ok(end)
}

/// What `recover` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The file was already finished; its duration in ms.
    Finished(i64),
    /// Finished now: duration in ms, bytes cut from a torn last cluster.
    Repaired { duration_ms: i64, cut: u64 },
    /// Not a file this writer started, or no header made it to disk.
    Unusable,
}

/// Finishes a file a crash left open: keeps every whole cluster, cuts off a
/// torn one, then writes the index, duration and size as `finish` does.
pub fn recover(path: &Path) -> io::Result<Recovered> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let Some((id, header, size)) = read_header(&mut file)? else { return Ok(Recovered::Unusable) };
    if id != EBML {
        return Ok(Recovered::Unusable);
    }
    file.seek(SeekFrom::Start(header + size))?;
    let Some((SEGMENT, seg_header, seg_size)) = read_header(&mut file)? else { return Ok(Recovered::Unusable) };
    let segment_data = header + size + seg_header;
    let mut position = segment_data;
    let (mut duration_slot, mut finished) = (None, false);
    let (mut cues, mut last_ms, mut frame_ms, mut codec_video) = (Vec::new(), 0i64, 20i64, false);
    let mut good_end = segment_data;
    while position < len {
        file.seek(SeekFrom::Start(position))?;
        let Some((id, h, size)) = read_header(&mut file)? else { break };
        if position + h + size > len {
            break; // torn: the crash came mid-write
        }
        let body_at = position + h;
        file.seek(SeekFrom::Start(body_at))?;
        match id {
            INFO => {
                let mut body = vec![0; size as usize];
                file.read_exact(&mut body)?;
                duration_slot = children(&body).into_iter().find(|c| c.0 == VOID || c.0 == DURATION).map(|c| {
                    if c.0 == DURATION {
                        finished = true;
                    }
                    body_at + c.1 as u64
                });
            }
            TRACKS => {
                let mut body = vec![0; size as usize];
                file.read_exact(&mut body)?;
                codec_video = body.windows(5).any(|w| w == b"V_VP8");
            }
            CLUSTER => {
                let mut body = vec![0; size as usize];
                file.read_exact(&mut body)?;
                let mut start = None;
                let mut first_block = None;
                for (cid, _, data) in children_with_data(&body) {
                    match cid {
                        CLUSTER_TIMESTAMP => start = Some(read_uint(data) as i64),
                        SIMPLE_BLOCK if data.len() >= 4 => {
                            let t = start.unwrap_or(0) + i16::from_be_bytes([data[1], data[2]]) as i64;
                            if t > last_ms {
                                frame_ms = t - last_ms;
                            }
                            last_ms = t;
                            first_block.get_or_insert(data[3] & 0x80 != 0);
                        }
                        _ => {}
                    }
                }
                if let (Some(start), Some(true)) = (start, first_block) {
                    cues.push((start, position - segment_data));
                }
            }
            _ => {}
        }
        position += h + size;
        good_end = position;
    }
    let Some(duration_slot) = duration_slot else { return Ok(Recovered::Unusable) };
    if finished && seg_size != UNKNOWN {
        file.seek(SeekFrom::Start(duration_slot))?;
        let mut body = [0u8; 11];
        file.read_exact(&mut body)?;
        return Ok(Recovered::Finished(f64::from_be_bytes(body[3..11].try_into().unwrap_or_default()) as i64));
    }
    let cut = len - good_end;
    file.set_len(good_end)?;
    let duration_ms = last_ms + if codec_video { frame_ms } else { 20 };
    finalise(&mut file, segment_data, duration_slot, &cues, duration_ms)?;
    Ok(Recovered::Repaired { duration_ms, cut })
}

/// Where one whole cluster sits in a file, and when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterAt {
    /// The cluster element's bytes, header included: `[start, end)`.
    pub start: u64,
    pub end: u64,
    /// Its Timestamp: ms from the track's start.
    pub ms: i64,
}

/// The clusters of one track file, read from their own headers, so that
/// bytes served can be turned into the media time they hold.
///
/// Why not the Cues alone: they point only at clusters that start with a
/// keyframe, and a camera may send one keyframe in an hour (WebRTC encoders
/// send them when asked), so one cue point can span the whole file and a
/// partial fetch could not be placed in time at all. A file still being
/// written has no Cues yet either. Each cluster's header and Timestamp are
/// on disk the moment the cluster is (it is written whole), so the same walk
/// serves a finished file, a file being written, and a recovered one.
///
/// The writer only ever appends clusters, so [`ClusterIndex::update`] goes
/// on from where it stopped when the file has grown.
#[derive(Debug, Default, Clone)]
pub struct ClusterIndex {
    /// Where the first cluster starts: everything before it (EBML header,
    /// Info, Tracks) must reach a player before any frame can play.
    pub header_end: Option<u64>,
    pub clusters: Vec<ClusterAt>,
    /// The next element to read once the file grows (0: nothing read yet).
    next: u64,
    /// The file's length when last read.
    len: u64,
    /// No more clusters can follow: the Cues (written on finish) were
    /// reached, or the file is not one this writer made.
    done: bool,
}

impl ClusterIndex {
    /// Reads the clusters written since the last call. A cluster cut short
    /// (being written, or torn by a crash) is left for a later call. A file
    /// that shrank (only `recover` cuts files) is read again from the start.
    pub fn update(&mut self, path: &Path) -> io::Result<()> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        if len < self.len {
            *self = ClusterIndex::default();
        }
        self.len = len;
        if self.next == 0 {
            let Some(segment_data) = segment_data(&mut file)? else {
                // No whole header yet (or not WebM): try again when it grows.
                return Ok(());
            };
            self.next = segment_data;
        }
        let mut buf = [0u8; 32];
        while !self.done && self.next < len {
            file.seek(SeekFrom::Start(self.next))?;
            let n = read_up_to(&mut file, &mut buf)?;
            let Some((id, h, size)) = parse_header(&buf[..n]) else { break };
            if size == UNKNOWN {
                self.done = true;
                break;
            }
            let end = self.next + h as u64 + size;
            if end > len {
                break; // still being written, or torn
            }
            match id {
                CLUSTER => {
                    // The writer puts the Timestamp first in every cluster.
                    let timestamp = parse_header(&buf[h..n])
                        .filter(|(cid, ch, csize)| *cid == CLUSTER_TIMESTAMP && h + ch + *csize as usize <= n)
                        .map(|(_, ch, csize)| read_uint(&buf[h + ch..h + ch + csize as usize]) as i64);
                    match timestamp {
                        Some(ms) => {
                            self.header_end.get_or_insert(self.next);
                            self.clusters.push(ClusterAt { start: self.next, end, ms });
                        }
                        None => {
                            // Not our writer's cluster: nothing past here can be placed in time.
                            self.done = true;
                            break;
                        }
                    }
                }
                CUES => self.done = true,
                _ => {}
            }
            self.next = end;
        }
        Ok(())
    }

    /// The file's length when it was last read.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The media time of each whole cluster, with its bytes: from its
    /// Timestamp to the next cluster's; the last one's to `duration_ms` when
    /// the file is finished (null while it is written: its end is not known
    /// yet, so it counts for nothing until the next cluster arrives).
    pub fn spans(&self, duration_ms: Option<i64>) -> Vec<((i64, i64), ClusterAt)> {
        let mut out = Vec::with_capacity(self.clusters.len());
        for (i, c) in self.clusters.iter().enumerate() {
            let end = match self.clusters.get(i + 1) {
                Some(next) => next.ms,
                None => duration_ms.unwrap_or(c.ms),
            };
            if end > c.ms {
                out.push(((c.ms, end), *c));
            }
        }
        out
    }

    /// The media time, in ms from the track's start, that `served` (byte
    /// ranges `[start, end)`, merged: sorted, neither overlapping nor
    /// touching) holds: every cluster lying wholly inside one range, once
    /// the header before the first cluster was served too.
    pub fn served_ms(&self, served: &[(u64, u64)], duration_ms: Option<i64>) -> Vec<(i64, i64)> {
        let within = |start: u64, end: u64| served.iter().any(|&(a, b)| a <= start && end <= b);
        match self.header_end {
            Some(header_end) if within(0, header_end) => self.times(duration_ms, |c| within(c.start, c.end)),
            _ => vec![],
        }
    }

    /// The media time the file holds, in ms from the track's start.
    pub fn covered_ms(&self, duration_ms: Option<i64>) -> Vec<(i64, i64)> {
        self.times(duration_ms, |_| true)
    }

    /// The time of the clusters `keep` picks, stretches that follow on joined.
    fn times(&self, duration_ms: Option<i64>, keep: impl Fn(&ClusterAt) -> bool) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        for ((from, to), c) in self.spans(duration_ms) {
            if !keep(&c) {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 >= from => last.1 = last.1.max(to),
                _ => out.push((from, to)),
            }
        }
        out
    }
}

/// Where the Segment's data starts, if the file begins with an EBML header and a Segment.
fn segment_data(file: &mut File) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(0))?;
    let Some((EBML, header, size)) = read_header(file)? else { return Ok(None) };
    file.seek(SeekFrom::Start(header + size))?;
    let Some((SEGMENT, seg_header, _)) = read_header(file)? else { return Ok(None) };
    Ok(Some(header + size + seg_header))
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads an element header at the file's position: (id, header length, data size).
fn read_header(file: &mut File) -> io::Result<Option<(u32, u64, u64)>> {
    let mut buf = [0u8; 12];
    let n = read_up_to(file, &mut buf)?;
    Ok(parse_header(&buf[..n]).map(|(id, h, size)| (id, h as u64, size)))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// (id with its marker bits, header length, size) of the element at the start of `b`.
fn parse_header(b: &[u8]) -> Option<(u32, usize, u64)> {
    let first = *b.first()?;
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 || b.len() < id_len {
        return None;
    }
    let id = b[..id_len].iter().fold(0u32, |a, x| a << 8 | *x as u32);
    let s = *b.get(id_len)?;
    let size_len = s.leading_zeros() as usize + 1;
    if size_len > 8 || b.len() < id_len + size_len {
        return None;
    }
    let mut size = (s as u64) & (0xFF >> size_len);
    for x in &b[id_len + 1..id_len + size_len] {
        size = size << 8 | *x as u64;
    }
    Some((id, id_len + size_len, size))
}

fn children(body: &[u8]) -> Vec<(u32, usize)> {
    children_with_data(body).into_iter().map(|(id, at, _)| (id, at)).collect()
}

/// The child elements of a master element's body: (id, offset, data).
fn children_with_data(body: &[u8]) -> Vec<(u32, usize, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((id, h, size)) = parse_header(&body[at..]) {
        let end = at + h + size as usize;
        if end > body.len() {
            break;
        }
        out.push((id, at, &body[at + h..end]));
        at = end;
    }
    out
}

fn read_uint(data: &[u8]) -> u64 {
    data.iter().fold(0, |a, x| a << 8 | *x as u64)
}

fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
}

/// The smallest EBML vint for `size`.
fn put_size(out: &mut Vec<u8>, size: u64) {
    let len = (1..=8).find(|n| size < (1u64 << (7 * n)) - 1).unwrap_or(8);
    let marked = size | 1 << (7 * len);
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

fn element(out: &mut Vec<u8>, id: u32, data: &[u8]) {
    put_id(out, id);
    put_size(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn uint(id: u32, value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut out = Vec::new();
    element(&mut out, id, &bytes[skip..]);
    out
}

fn float(id: u32, value: f64) -> Vec<u8> {
    let mut out = Vec::new();
    element(&mut out, id, &value.to_be_bytes());
    out
}

fn string(id: u32, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    element(&mut out, id, value.as_bytes());
    out
}

/// A Void element of exactly `total` bytes (at least 2).
fn void(out: &mut Vec<u8>, total: usize) {
    out.push(0xEC);
    // A 1-byte size holds up to 126; use 8 bytes beyond that.
    if total - 2 < 127 {
        put_size(out, (total - 2) as u64);
        out.resize(out.len() + total - 2, 0);
    } else {
        let size = (total - 9) as u64;
        let mut vint = size.to_be_bytes();
        vint[0] = 0x01;
        out.extend_from_slice(&vint);
        out.resize(out.len() + total - 9, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake VP8 frame: keyframes carry the 3-byte start code and a size.
    fn vp8(key: bool, n: u8) -> Vec<u8> {
        let mut f = vec![if key { 0x10 } else { 0x11 }, 0, 0, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        f.extend(std::iter::repeat_n(n, 200));
        f
    }

    fn write_video(path: &Path, seconds: i64) -> Writer {
        let mut w = Writer::create(path, Codec::Vp8, vp8_size(&vp8(true, 0))).unwrap();
        for i in 0..seconds * 30 {
            let ms = i * 1000 / 30;
            w.push(ms, i % 60 == 0, &vp8(i % 60 == 0, i as u8)).unwrap();
        }
        w
    }

    #[test]
    fn keyframes_and_sizes_are_read_from_vp8_frames() {
        assert_eq!(vp8_size(&vp8(true, 0)), Some((320, 240)));
        assert!(vp8_keyframe(&vp8(true, 0)));
        assert!(!vp8_keyframe(&vp8(false, 0)));
        assert_eq!(vp8_size(&vp8(false, 0)), None);
    }

    #[test]
    fn sizes_are_minimal_vints() {
        let mut out = Vec::new();
        put_size(&mut out, 5);
        put_size(&mut out, 200);
        assert_eq!(out, vec![0x85, 0x40, 0xC8]);
        assert_eq!(parse_header(&[0x1A, 0x45, 0xDF, 0xA3, 0x84]), Some((EBML, 5, 4)));
    }

    #[test]
    fn a_finished_file_has_duration_cues_and_a_known_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.webm");
        let (duration, size) = write_video(&path, 5).finish().unwrap();
        assert_eq!(duration, 4966 + 33);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        // Finishing is idempotent through `recover`: it sees a finished file.
        assert_eq!(recover(&path).unwrap(), Recovered::Finished(duration));
    }

    #[test]
    fn a_torn_file_is_cut_to_its_last_whole_cluster_and_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.webm");
        let mut w = write_video(&path, 5);
        w.flush().unwrap();
        drop(w);
        // A crash mid-write leaves half a cluster at the end.
        let len = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0x1F, 0x43, 0xB6, 0x75, 0xA0, 0xE7, 0x81, 0x00]).unwrap();
        drop(f);
        let Recovered::Repaired { duration_ms, cut } = recover(&path).unwrap() else { panic!("not repaired") };
        assert_eq!(cut, 8);
        assert_eq!(duration_ms, 4999);
        assert!(std::fs::metadata(&path).unwrap().len() > len, "cues were added");
        assert_eq!(recover(&path).unwrap(), Recovered::Finished(4999));
    }

    #[test]
    fn clusters_read_from_a_finished_file_agree_with_its_cues_and_cover_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.webm");
        let mut w = write_video(&path, 5);
        w.flush().unwrap();
        let (segment_data, cues) = (w.segment_data, w.cues.clone());
        let (duration, size) = w.finish().unwrap();
        let mut index = ClusterIndex::default();
        index.update(&path).unwrap();
        // A cluster a second (keyframes every 2 s start the even ones), in order, end to end.
        let times: Vec<i64> = index.clusters.iter().map(|c| c.ms).collect();
        assert_eq!(times, vec![0, 1000, 2000, 3000, 4000]);
        assert!(index.clusters.windows(2).all(|w| w[0].end == w[1].start));
        assert!(index.clusters.last().unwrap().end < size, "the Cues follow the clusters");
        // Every cue point is a cluster found by the walk, at the same time.
        assert_eq!(cues.len(), 3);
        for (ms, position) in cues {
            assert!(index.clusters.iter().any(|c| c.start == segment_data + position && c.ms == ms), "cue at {ms} ms");
        }
        assert_eq!(index.covered_ms(Some(duration)), vec![(0, duration)]);
        assert_eq!(index.served_ms(&[(0, size)], Some(duration)), vec![(0, duration)]);
    }

    #[test]
    fn served_bytes_hold_the_time_of_the_whole_clusters_inside_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.webm");
        let (duration, _) = write_video(&path, 5).finish().unwrap();
        let mut index = ClusterIndex::default();
        index.update(&path).unwrap();
        let c = index.clusters.clone();
        let header = index.header_end.unwrap();
        assert_eq!(header, c[0].start);
        // The header and the first three clusters: the first three seconds.
        assert_eq!(index.served_ms(&[(0, c[2].end)], Some(duration)), vec![(0, 3000)]);
        // One byte short of the third cluster: only two.
        assert_eq!(index.served_ms(&[(0, c[2].end - 1)], Some(duration)), vec![(0, 2000)]);
        // Clusters without the header that makes them playable: nothing.
        assert_eq!(index.served_ms(&[(header + 1, c[4].end)], Some(duration)), vec![]);
        // The header, then a seek to the fourth second: two stretches.
        let ranges = [(0, c[0].end), (c[3].start, c[4].end)];
        assert_eq!(index.served_ms(&ranges, Some(duration)), vec![(0, 1000), (3000, duration)]);
        // A range that starts inside a cluster does not deliver it.
        assert_eq!(index.served_ms(&[(0, header), (c[1].start + 1, c[2].end)], Some(duration)), vec![(2000, 3000)]);
    }

    #[test]
    fn a_file_still_being_written_is_read_as_it_grows_and_its_open_end_counts_for_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.webm");
        let mut w = Writer::create(&path, Codec::Opus, None).unwrap();
        let mut index = ClusterIndex::default();
        index.update(&path).unwrap();
        assert_eq!((index.header_end, index.clusters.len()), (None, 0), "a header and no cluster yet");
        for i in 0..150 {
            w.push(i * 20, false, &[0xFC, i as u8]).unwrap(); // 3 s of 20 ms Opus frames
        }
        index.update(&path).unwrap();
        // Two clusters are on disk (the third is still open in the writer); the last one's end is not known yet.
        assert_eq!(index.clusters.iter().map(|c| c.ms).collect::<Vec<_>>(), vec![0, 1000]);
        assert_eq!(index.covered_ms(None), vec![(0, 1000)]);
        // Half a cluster at the end (a write in progress) is left for later.
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut torn = OpenOptions::new().append(true).open(&path).unwrap();
        torn.write_all(&[0x1F, 0x43, 0xB6, 0x75, 0xA0, 0xE7, 0x81]).unwrap();
        index.update(&path).unwrap();
        assert_eq!(index.clusters.len(), 2);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(whole).unwrap();
        let (duration, size) = w.finish().unwrap();
        index.update(&path).unwrap();
        assert_eq!(index.clusters.iter().map(|c| c.ms).collect::<Vec<_>>(), vec![0, 1000, 2000]);
        assert_eq!(index.covered_ms(Some(duration)), vec![(0, 3000)]);
        assert_eq!(index.served_ms(&[(0, size)], Some(duration)), vec![(0, 3000)]);
        // Read again from nothing, the finished file gives the same index.
        let mut fresh = ClusterIndex::default();
        fresh.update(&path).unwrap();
        assert_eq!(fresh.clusters, index.clusters);
    }

    #[test]
    fn a_file_that_is_not_webm_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.webm");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(recover(&path).unwrap(), Recovered::Unusable);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(recover(&path).unwrap(), Recovered::Unusable);
    }
}
