//! What the server delivered of a recording to each person, and the replay
//! credit it bounds (docs/attendance.md, "Replay crediting").
//!
//! Every response of a recorded file counts the bytes it hands to the
//! connection ([`Counted`]). While it streams, its progress is a [`Flight`]
//! in memory; when it ends, a task merges it into `replay_served` (and the
//! next watch report of that person stores it anyway, in the same
//! transaction as the segments it allows). At a report, those byte ranges
//! become media time through each file's clusters ([`ClusterIndex`]), and
//! reported segments are cut to the time that was delivered.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::body::{Body, Bytes, HttpBody};
use sqlx::Row;

use super::webm::ClusterIndex;
use crate::db::{Db, Tx};

/// Byte ranges `[start, end)` of a file, merged: sorted, disjoint, not touching.
pub type Ranges = Vec<(u64, u64)>;
/// Stretches `[start, end)` in ms, merged the same way.
pub type Times = Vec<(i64, i64)>;

/// Ranges kept per person and file. A player makes a new one at each seek
/// and they merge as it plays on; past this, the smallest are forgotten
/// (less credit, never more), so no client can grow the table without end.
pub const MAX_RANGES: usize = 64;

// ---------------------------------------------------------------- intervals

/// Sorts and joins overlapping or touching stretches; empty ones go.
pub fn merge<T: Ord + Copy>(mut spans: Vec<(T, T)>) -> Vec<(T, T)> {
    spans.retain(|s| s.0 < s.1);
    spans.sort();
    let mut out: Vec<(T, T)> = Vec::with_capacity(spans.len());
    for s in spans {
        match out.last_mut() {
            Some(last) if s.0 <= last.1 => last.1 = last.1.max(s.1),
            _ => out.push(s),
        }
    }
    out
}

/// `a` without `b` (both merged).
pub fn subtract(a: &[(i64, i64)], b: &[(i64, i64)]) -> Times {
    let mut out = Vec::new();
    for &(mut start, end) in a {
        for &(bs, be) in b {
            if be <= start || bs >= end {
                continue;
            }
            if bs > start {
                out.push((start, bs));
            }
            start = start.max(be);
        }
        if start < end {
            out.push((start, end));
        }
    }
    out
}

/// What `a` and `b` (both merged) have in common.
pub fn intersect(a: &[(i64, i64)], b: &[(i64, i64)]) -> Times {
    let mut out = Vec::new();
    for &(s, e) in a {
        for &(bs, be) in b {
            let (from, to) = (s.max(bs), e.min(be));
            if from < to {
                out.push((from, to));
            }
        }
    }
    merge(out)
}

/// Merges `ranges` and keeps at most [`MAX_RANGES`], the largest.
fn bounded(ranges: Ranges) -> Ranges {
    let mut merged = merge(ranges);
    if merged.len() > MAX_RANGES {
        merged.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
        merged.truncate(MAX_RANGES);
        merged.sort();
    }
    merged
}

// ---------------------------------------------------------------- the rule

/// One file's media on the recording's clock: the time it holds, and the
/// part of that time whose bytes reached the person.
#[derive(Debug, Default, Clone)]
pub struct FileTimes {
    pub covered: Times,
    pub served: Times,
}

/// The stretches of a recording `length_ms` long that a person may be
/// credited for, given what each of its files holds and what was served.
///
/// - A moment with media counts when **every** file that has media at that
///   moment (each camera, screen and voice on the stage) was served there:
///   watching is seeing and hearing, and the replay page fetches them all.
/// - A moment with no media at all (nobody on the stage, say during a
///   breakout) has nothing to fetch: it counts when the media on both sides
///   of it was served, as a player passing through it would have fetched
///   them. Before the first media, only the side after is needed; after the
///   last, only the side before, and only once the recording is `finished`
///   (while it runs, the time after the last cluster is not written yet). A
///   recording with no media at all earns no replay credit.
pub fn credit_times(files: &[FileTimes], length_ms: i64, finished: bool) -> Times {
    let whole = [(0, length_ms)];
    let covered = intersect(&merge(files.iter().flat_map(|f| f.covered.iter().copied()).collect()), &whole);
    let missing = merge(files.iter().flat_map(|f| subtract(&f.covered, &f.served)).collect());
    let delivered = subtract(&covered, &missing);
    let mut out = delivered.clone();
    for (a, b) in subtract(&whole, &covered) {
        let before = delivered.iter().any(|d| d.1 == a);
        let after = delivered.iter().any(|d| d.0 == b);
        let counts = match (a == 0, b >= length_ms) {
            (true, true) => false,
            (true, false) => after,
            (false, true) => finished && before,
            (false, false) => before && after,
        };
        if counts {
            out.push((a, b));
        }
    }
    merge(out)
}

// ---------------------------------------------------------------- files

/// A recorded file as the credit needs it.
pub struct TrackFile {
    pub file: String,
    /// Where it starts on the recording's clock.
    pub start_ms: i64,
    /// Null while it is being written.
    pub duration_ms: Option<i64>,
}

pub async fn tracks(db: &Db, recording: &str) -> Result<Vec<TrackFile>, sqlx::Error> {
    let rows = sqlx::query("select file, start_ms, duration_ms from recording_tracks where recording_id = $1")
        .bind(recording)
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TrackFile {
                file: r.try_get("file")?,
                start_ms: r.try_get("start_ms")?,
                duration_ms: r.try_get("duration_ms")?,
            })
        })
        .collect()
}

/// Cluster indexes of files read lately. A finished file never changes, and
/// one being written only grows, so an index is read once and then only
/// extended. At most this many files are kept; the one used longest ago goes.
const INDEXES_KEPT: usize = 256;

/// The cache: a use counter, and per file the count at its last use and its index.
type Indexes = (u64, HashMap<PathBuf, (u64, Arc<ClusterIndex>)>);

fn cluster_index(path: &Path) -> std::io::Result<Arc<ClusterIndex>> {
    static CACHE: OnceLock<Mutex<Indexes>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let len = std::fs::metadata(path)?.len();
    let known = cache.lock().unwrap_or_else(|e| e.into_inner()).1.get(path).map(|(_, index)| index.clone());
    let index = match known {
        Some(index) if index.file_len() == len => index,
        known => {
            let mut index = known.map(|i| (*i).clone()).unwrap_or_default();
            index.update(path)?;
            Arc::new(index)
        }
    };
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    let (tick, entries) = &mut *guard;
    *tick += 1;
    entries.insert(path.to_path_buf(), (*tick, index.clone()));
    if entries.len() > INDEXES_KEPT {
        if let Some(oldest) = entries.iter().min_by_key(|(_, (used, _))| *used).map(|(p, _)| p.clone()) {
            entries.remove(&oldest);
        }
    }
    Ok(index)
}

/// The stretches of the recording in `dir` that a person who was served
/// `served` (per file) may be credited for: [`credit_times`] over its files.
/// A file that cannot be read counts as holding its listed stretch, none of
/// it served: a fault on the server never adds credit.
pub async fn credit(
    dir: &Path,
    tracks: Vec<TrackFile>,
    served: &HashMap<String, Ranges>,
    length_ms: i64,
    finished: bool,
) -> Times {
    let dir = dir.to_path_buf();
    let served = served.clone();
    let files = tokio::task::spawn_blocking(move || {
        tracks
            .iter()
            .map(|t| {
                let shift = |times: Times| -> Times {
                    times.into_iter().map(|(a, b)| (t.start_ms.saturating_add(a), t.start_ms.saturating_add(b))).collect()
                };
                match cluster_index(&dir.join(&t.file)) {
                    Ok(index) => FileTimes {
                        covered: shift(index.covered_ms(t.duration_ms)),
                        served: shift(index.served_ms(served.get(&t.file).map_or(&[][..], |r| r), t.duration_ms)),
                    },
                    Err(e) => {
                        tracing::warn!(file = %dir.join(&t.file).display(), error = %e, "a recorded file could not be read for replay credit");
                        FileTimes { covered: shift(vec![(0, t.duration_ms.unwrap_or(0))]), served: vec![] }
                    }
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    credit_times(&files, length_ms, finished)
}

// ---------------------------------------------------------------- serving

/// A person and a recording.
type Key = (String, i64);

/// One response sending a file's bytes to a person.
struct Flight {
    file: String,
    /// Where in the file the response started.
    start: u64,
    /// Bytes handed to the connection so far.
    sent: AtomicU64,
    /// The response is over: `sent` is final.
    done: AtomicBool,
}

/// Responses whose bytes are not stored yet, per person and recording.
fn flights() -> &'static Mutex<HashMap<Key, Vec<Arc<Flight>>>> {
    static FLIGHTS: OnceLock<Mutex<HashMap<Key, Vec<Arc<Flight>>>>> = OnceLock::new();
    FLIGHTS.get_or_init(Default::default)
}

/// Serialises the writes of one person's served ranges for one recording
/// (each is read, merged and written back). Striped, so memory is fixed.
pub async fn lock(recording: &str, user: i64) -> tokio::sync::MutexGuard<'static, ()> {
    static LOCKS: OnceLock<Vec<tokio::sync::Mutex<()>>> = OnceLock::new();
    let locks = LOCKS.get_or_init(|| (0..64).map(|_| tokio::sync::Mutex::new(())).collect());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (recording, user).hash(&mut hasher);
    locks[(hasher.finish() % locks.len() as u64) as usize].lock().await
}

/// A response body that counts what it sends to `user` of `recording`'s
/// `file`, starting at byte `start`.
pub struct Counted {
    inner: Body,
    flight: Arc<Flight>,
    key: Key,
    db: Db,
}

impl Counted {
    pub fn new(db: Db, recording: &str, user: i64, file: &str, start: u64, inner: Body) -> Counted {
        let flight =
            Arc::new(Flight { file: file.to_string(), start, sent: AtomicU64::new(0), done: AtomicBool::new(false) });
        let key = (recording.to_string(), user);
        flights().lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().push(flight.clone());
        Counted { inner, flight, key, db }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.flight.sent.fetch_add(data.len() as u64, Ordering::Release);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    /// The response is over (sent whole, or the player hung up): its bytes
    /// are stored now, with retries, rather than waiting for a report.
    fn drop(&mut self) {
        self.flight.done.store(true, Ordering::Release);
        if self.flight.sent.load(Ordering::Acquire) == 0 {
            forget(&self.key, std::slice::from_ref(&self.flight));
            return;
        }
        let (db, (recording, user)) = (self.db.clone(), self.key.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(store_soon(db, recording, user));
            }
            Err(_) => tracing::warn!(%recording, user, "served bytes kept in memory until the next watch report"),
        }
    }
}

/// Stores a person's finished responses, retrying (50 ms, doubling up to
/// 5 s) while the database refuses. If it still cannot, they stay in
/// memory and the person's next watch report stores them.
async fn store_soon(db: Db, recording: String, user: i64) {
    let mut wait = Duration::from_millis(50);
    for _ in 0..20 {
        match store(&db, &recording, user).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(%recording, user, error = %e, "served byte ranges not stored yet: retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    tracing::error!(%recording, user, "served byte ranges not stored: kept for the next watch report");
}

async fn store(db: &Db, recording: &str, user: i64) -> Result<(), sqlx::Error> {
    let _guard = lock(recording, user).await;
    let delivered = Delivered::load(db, recording, user).await?;
    let exists: Option<String> =
        sqlx::query_scalar("select id from recordings where id = $1").bind(recording).fetch_optional(&db.read).await?;
    if exists.is_some() && delivered.changed() {
        let mut tx = db.begin().await?;
        delivered.save(&mut tx, chrono::Utc::now().timestamp_millis()).await?;
        tx.commit().await?;
    }
    delivered.forget();
    Ok(())
}

fn forget(key: &Key, done: &[Arc<Flight>]) {
    let mut all = flights().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(list) = all.get_mut(key) {
        list.retain(|f| !done.iter().any(|d| Arc::ptr_eq(d, f)));
        if list.is_empty() {
            all.remove(key);
        }
    }
}

/// What was served to one person of one recording: the stored ranges with
/// the responses not stored yet merged in. Take [`lock`] first.
pub struct Delivered {
    key: Key,
    /// Per file.
    pub ranges: HashMap<String, Ranges>,
    /// Files whose ranges differ from the stored ones.
    changed: Vec<String>,
    /// Responses that had ended when read: forgotten once saved.
    ended: Vec<Arc<Flight>>,
}

impl Delivered {
    pub async fn load(db: &Db, recording: &str, user: i64) -> Result<Delivered, sqlx::Error> {
        let key = (recording.to_string(), user);
        let mut in_flight: Vec<(Arc<Flight>, bool)> = flights()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .map(|list| list.iter().map(|f| (f.clone(), false)).collect())
            .unwrap_or_default();
        // `done` before `sent`: a response seen ended has its final count.
        for (flight, ended) in &mut in_flight {
            *ended = flight.done.load(Ordering::Acquire);
        }
        let rows = sqlx::query(
            "select file, start_byte, end_byte from replay_served where recording_id = $1 and user_id = $2",
        )
        .bind(recording)
        .bind(user)
        .fetch_all(&db.read)
        .await?;
        let mut stored: HashMap<String, Ranges> = HashMap::new();
        for r in &rows {
            let (a, b): (i64, i64) = (r.try_get("start_byte")?, r.try_get("end_byte")?);
            stored.entry(r.try_get("file")?).or_default().push((a.max(0) as u64, b.max(0) as u64));
        }
        let mut ranges: HashMap<String, Ranges> =
            stored.iter().map(|(file, r)| (file.clone(), merge(r.clone()))).collect();
        for (flight, _) in &in_flight {
            let sent = flight.sent.load(Ordering::Acquire);
            if sent > 0 {
                ranges.entry(flight.file.clone()).or_default().push((flight.start, flight.start.saturating_add(sent)));
            }
        }
        let mut changed = vec![];
        for (file, list) in ranges.iter_mut() {
            *list = bounded(std::mem::take(list));
            if stored.get(file).map(|s| merge(s.clone())) != Some(list.clone()) {
                changed.push(file.clone());
            }
        }
        let ended = in_flight.into_iter().filter(|(_, ended)| *ended).map(|(f, _)| f).collect();
        Ok(Delivered { key, ranges, changed, ended })
    }

    fn changed(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Writes the changed files' ranges.
    pub async fn save(&self, tx: &mut Tx, now: i64) -> Result<(), sqlx::Error> {
        let (recording, user) = &self.key;
        for file in &self.changed {
            sqlx::query("delete from replay_served where recording_id = $1 and user_id = $2 and file = $3")
                .bind(recording)
                .bind(user)
                .bind(file)
                .execute(&mut **tx)
                .await?;
            for &(a, b) in self.ranges.get(file).map_or(&[][..], |r| r) {
                sqlx::query(
                    "insert into replay_served (recording_id, user_id, file, start_byte, end_byte, updated_at)
                     values ($1, $2, $3, $4, $5, $6)",
                )
                .bind(recording)
                .bind(user)
                .bind(file)
                .bind(a as i64)
                .bind(b as i64)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// Once saved: the ended responses it holds need no memory any more.
    pub fn forget(self) {
        forget(&self.key, &self.ended);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(covered: &[(i64, i64)], served: &[(i64, i64)]) -> FileTimes {
        FileTimes { covered: covered.to_vec(), served: served.to_vec() }
    }

    #[test]
    fn stretches_merge_subtract_and_intersect() {
        assert_eq!(merge(vec![(5, 8), (0, 2), (2, 3), (7, 9), (4, 4)]), vec![(0, 3), (5, 9)]);
        assert_eq!(subtract(&[(0, 10), (20, 30)], &[(2, 4), (8, 22)]), vec![(0, 2), (4, 8), (22, 30)]);
        assert_eq!(subtract(&[(0, 10)], &[]), vec![(0, 10)]);
        assert_eq!(intersect(&[(0, 10), (20, 30)], &[(5, 25)]), vec![(5, 10), (20, 25)]);
    }

    #[test]
    fn only_the_largest_ranges_are_kept_past_the_bound() {
        let many: Ranges = (0..200u64).map(|i| (i * 10, i * 10 + 1 + i % 3)).collect();
        let kept = bounded(many);
        assert_eq!(kept.len(), MAX_RANGES);
        assert!(kept.iter().all(|(a, b)| b - a == 3), "the 3-byte ranges stay: {kept:?}");
        assert!(kept.windows(2).all(|w| w[0].1 < w[1].0), "still sorted and apart");
    }

    #[test]
    fn a_moment_counts_when_every_file_on_the_stage_was_served_there() {
        // Video 0–10 s served to 6 s; audio 0–10 s served whole.
        let video = file(&[(0, 10_000)], &[(0, 6_000)]);
        let audio = file(&[(0, 10_000)], &[(0, 10_000)]);
        assert_eq!(credit_times(&[video.clone(), audio.clone()], 10_000, true), vec![(0, 6_000)]);
        // The sound alone is not the session: with no video served, nothing.
        let no_video = file(&[(0, 10_000)], &[]);
        assert_eq!(credit_times(&[no_video, audio], 10_000, true), vec![]);
        // A screen share from 4 s to 8 s, served only to 5 s, takes 5–6 s away too.
        let screen = file(&[(4_000, 8_000)], &[(4_000, 5_000)]);
        let full = file(&[(0, 10_000)], &[(0, 10_000)]);
        assert_eq!(credit_times(&[full.clone(), screen], 10_000, true), vec![(0, 5_000), (8_000, 10_000)]);
        // Nothing served, nothing credited.
        assert_eq!(credit_times(&[file(&[(200, 10_000)], &[])], 10_000, true), vec![]);
    }

    #[test]
    fn an_empty_stage_counts_when_the_media_on_both_sides_was_served() {
        // Media 0.2–4 s and 6–9.8 s of a 10 s recording.
        let both = file(&[(200, 4_000), (6_000, 9_800)], &[(200, 4_000), (6_000, 9_800)]);
        assert_eq!(credit_times(&[both], 10_000, true), vec![(0, 10_000)]);
        let first_only = file(&[(200, 4_000), (6_000, 9_800)], &[(200, 4_000)]);
        assert_eq!(credit_times(&[first_only], 10_000, true), vec![(0, 4_000)]);
        let second_only = file(&[(200, 4_000), (6_000, 9_800)], &[(6_000, 9_800)]);
        assert_eq!(credit_times(std::slice::from_ref(&second_only), 10_000, true), vec![(6_000, 10_000)]);
        // While recording, what follows the last cluster is not written yet.
        assert_eq!(credit_times(&[second_only], 10_000, false), vec![(6_000, 9_800)]);
        // No media at all: nothing to have fetched, no credit.
        assert_eq!(credit_times(&[], 10_000, true), vec![]);
    }

    #[test]
    fn credit_never_passes_the_length() {
        let long = file(&[(0, 20_000)], &[(0, 20_000)]);
        assert_eq!(credit_times(&[long], 5_000, false), vec![(0, 5_000)]);
    }
}
