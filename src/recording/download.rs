//! The single-file download of a recording, made in the background with
//! ffmpeg when it is installed: the presenter view (cameras, with a screen
//! share on top while it was on) and every voice mixed, as one WebM. The
//! replay page never depends on it. One at a time, at low priority, resumed
//! after a restart; progress is stored for the pages to show.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use sqlx::Row;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::watch,
};

use crate::db::Db;

/// The file's name in the recording's directory.
pub const FILE: &str = "download.webm";

/// Looks for work every few seconds until `stop`.
pub async fn run(db: Db, root: PathBuf, ffmpeg: Option<PathBuf>, mut stop: watch::Receiver<bool>) {
    let Some(ffmpeg) = ffmpeg else {
        tracing::info!("no ffmpeg configured: recordings get no single-file download");
        return;
    };
    if tokio::process::Command::new(&ffmpeg).arg("-version").output().await.is_err() {
        tracing::warn!(ffmpeg = %ffmpeg.display(), "ffmpeg not found: recordings get no single-file download");
        return;
    }
    // ffmpeg runs in the recording's folder (the tracks are named relative to
    // it), so a relative root, as the default `./data` gives, would be looked
    // for again inside that folder. An absolute root means the same everywhere.
    let root = match absolute(&root).await {
        Ok(root) => root,
        Err(e) => {
            tracing::error!(dir = %root.display(), error = ?e, "the recordings folder cannot be found: recordings get no single-file download");
            return;
        }
    };
    loop {
        match next(&db).await {
            Ok(Some(id)) => {
                let dir = root.join(&id);
                let made = tokio::select! {
                    made = make(&db, &ffmpeg, &dir, &id) => made,
                    _ = stop.changed() => return,
                };
                let status = match made {
                    Ok(Made::File) => "ready",
                    Ok(Made::Nothing) => "empty",
                    Err(e) => {
                        tracing::error!(recording = %id, error = ?e, "the download could not be made");
                        "failed"
                    }
                };
                if let Err(e) = set(&db, &id, status, 100).await {
                    tracing::error!(recording = %id, error = ?e, "failed to store the download's state");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = ?e, "looking for downloads to make failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// `root` made absolute, created first if it is not there yet (no recording made so far).
async fn absolute(root: &Path) -> std::io::Result<PathBuf> {
    tokio::fs::create_dir_all(root).await?;
    tokio::fs::canonicalize(root).await
}

/// A finished recording without its download (or one a restart interrupted).
async fn next(db: &Db) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select id from recordings where status <> 'recording' and download_status in ('none', 'working')
         order by started_at limit 1",
    )
    .fetch_optional(&db.read)
    .await
}

async fn set(db: &Db, id: &str, status: &str, progress: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("update recordings set download_status = $1, download_progress = $2 where id = $3")
        .bind(status)
        .bind(progress)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

struct Input {
    file: String,
    kind: String,
    participant: i64,
    start_ms: i64,
    duration_ms: i64,
}

/// What making a download came to.
enum Made {
    /// The single file is in place.
    File,
    /// The recording holds no media (nobody was on stage while it ran):
    /// there is nothing to put in a file, which is not a failure.
    Nothing,
}

async fn make(db: &Db, ffmpeg: &Path, dir: &Path, id: &str) -> anyhow::Result<Made> {
    set(db, id, "working", 0).await?;
    let total_ms: i64 = sqlx::query_scalar("select coalesce(duration_ms, 0) from recordings where id = $1")
        .bind(id)
        .fetch_one(&db.read)
        .await?;
    let inputs: Vec<Input> = sqlx::query(
        "select file, kind, participant_id, start_ms, coalesce(duration_ms, 0) as duration_ms from recording_tracks
         where recording_id = $1 and coalesce(duration_ms, 0) > 0 order by start_ms, file",
    )
    .bind(id)
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(Input {
            file: r.try_get("file")?,
            kind: r.try_get("kind")?,
            participant: r.try_get("participant_id")?,
            start_ms: r.try_get("start_ms")?,
            duration_ms: r.try_get("duration_ms")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    if inputs.is_empty() {
        tracing::info!(recording = %id, "nothing was recorded: no download to make");
        return Ok(Made::Nothing);
    }
    let args = arguments(&inputs, total_ms.max(1));
    let part = dir.join(format!("{FILE}.part"));
    let mut child = tokio::process::Command::new(ffmpeg)
        .current_dir(dir)
        .args(&args)
        .arg(&part)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    // `-progress pipe:1` reports how much of the output is made, about twice
    // a second; each new whole percent is stored for the pages to show.
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        let mut shown = 0;
        while let Some(line) = lines.next_line().await? {
            match percent_done(&line, total_ms) {
                Some(percent) if percent > shown => {
                    shown = percent;
                    set(db, id, "working", percent).await?;
                }
                _ => {}
            }
        }
    }
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&part);
        anyhow::bail!("ffmpeg failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    std::fs::rename(&part, dir.join(FILE))?;
    tracing::info!(recording = %id, "download ready");
    Ok(Made::File)
}

/// How far along a `-progress` line says ffmpeg is, as a percentage of the
/// recording's length `total_ms`: `out_time_us=` (and `out_time_ms=`, which
/// ffmpeg also gives in microseconds) is the output's time so far, `N/A`
/// before the first frame. Kept below 100 until the file is renamed into
/// place, so "100" always means ready.
fn percent_done(line: &str, total_ms: i64) -> Option<i64> {
    let (key, value) = line.trim().split_once('=')?;
    if key != "out_time_us" && key != "out_time_ms" {
        return None;
    }
    let us: i64 = value.parse().ok()?;
    Some((us / 1000 * 100 / total_ms.max(1)).clamp(0, 99))
}

/// ffmpeg's arguments (all but the output file): a black 1280×720 canvas as
/// long as the recording; each video scaled onto it from its start to its
/// end, cameras first and screen shares on top (a participant's video that
/// starts while an earlier one of theirs runs is a screen share); every
/// audio delayed to its start and mixed.
fn arguments(inputs: &[Input], total_ms: i64) -> Vec<String> {
    let mut videos: Vec<&Input> = inputs.iter().filter(|i| i.kind == "video").collect();
    let audios: Vec<&Input> = inputs.iter().filter(|i| i.kind == "audio").collect();
    let is_screen = |v: &Input| {
        videos.iter().any(|w| {
            w.participant == v.participant && w.start_ms < v.start_ms && w.start_ms + w.duration_ms > v.start_ms
        })
    };
    let screens: Vec<bool> = videos.iter().map(|v| is_screen(v)).collect();
    let mut order: Vec<usize> = (0..videos.len()).collect();
    order.sort_by_key(|i| screens[*i]);
    videos = order.iter().map(|i| videos[*i]).collect();

    let seconds = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let mut args: Vec<String> = ["-y", "-v", "error", "-nostats", "-progress", "pipe:1", "-f", "lavfi", "-i"]
        .into_iter()
        .map(String::from)
        .collect();
    args.push(format!("color=c=black:s=1280x720:r=30:d={}", seconds(total_ms)));
    for input in videos.iter().chain(audios.iter()) {
        args.push("-i".into());
        args.push(input.file.clone());
    }
    let mut graph = Vec::new();
    let mut last = "0:v".to_string();
    for (n, v) in videos.iter().enumerate() {
        let (from, to) = (seconds(v.start_ms), seconds(v.start_ms + v.duration_ms));
        graph.push(format!(
            "[{i}:v]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,\
             setpts=PTS-STARTPTS+{from}/TB[v{n}]",
            i = n + 1
        ));
        graph.push(format!("[{last}][v{n}]overlay=eof_action=pass:enable='between(t,{from},{to})'[o{n}]"));
        last = format!("o{n}");
    }
    for (n, a) in audios.iter().enumerate() {
        graph.push(format!("[{i}:a]adelay={ms}|{ms}[a{n}]", i = videos.len() + 1 + n, ms = a.start_ms));
    }
    if !audios.is_empty() {
        let ins: String = (0..audios.len()).map(|n| format!("[a{n}]")).collect();
        graph.push(format!("{ins}amix=inputs={}:normalize=0:duration=longest[aout]", audios.len()));
    }
    args.push("-filter_complex".into());
    args.push(graph.join(";"));
    args.extend(["-map".into(), format!("[{last}]")]);
    if !audios.is_empty() {
        args.extend(["-map".into(), "[aout]".into(), "-c:a".into(), "libopus".into(), "-b:a".into(), "96k".into()]);
    }
    args.extend(
        ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1200k", "-threads", "1"]
            .into_iter()
            .map(String::from),
    );
    args.extend(["-t".into(), seconds(total_ms), "-f".into(), "webm".into()]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(file: &str, kind: &str, participant: i64, start_ms: i64, duration_ms: i64) -> Input {
        Input { file: file.into(), kind: kind.into(), participant, start_ms, duration_ms }
    }

    #[test]
    fn progress_is_the_output_time_against_the_recording_s_length_and_never_says_done_early() {
        let total_ms = 80_000;
        assert_eq!(percent_done("out_time_us=N/A", total_ms), None);
        assert_eq!(percent_done("frame=12", total_ms), None);
        assert_eq!(percent_done("out_time=00:00:20.000000", total_ms), None);
        assert_eq!(percent_done("out_time_us=20000000", total_ms), Some(25));
        assert_eq!(percent_done("out_time_ms=40000000\n", total_ms), Some(50));
        assert_eq!(percent_done("out_time_us=80000000", total_ms), Some(99));
        assert_eq!(percent_done("out_time_us=-23000", total_ms), Some(0));
        assert_eq!(percent_done("out_time_us=1000000", 0), Some(99), "an unknown length never divides by zero");
    }

    #[test]
    fn screens_go_on_top_of_cameras_and_voices_are_delayed_to_their_start() {
        let inputs = [
            input("1-video-1.webm", "video", 1, 0, 60_000),
            input("1-audio-2.webm", "audio", 1, 10, 60_000),
            input("1-video-3.webm", "video", 1, 20_000, 10_000),
            input("2-audio-4.webm", "audio", 2, 5_000, 1_000),
        ];
        let args = arguments(&inputs, 61_000);
        let graph = &args[args.iter().position(|a| a == "-filter_complex").unwrap() + 1];
        assert!(graph.contains("[0:v][v0]overlay=eof_action=pass:enable='between(t,0.000,60.000)'[o0]"), "{graph}");
        assert!(graph.contains("[o0][v1]overlay=eof_action=pass:enable='between(t,20.000,30.000)'[o1]"), "{graph}");
        assert!(graph.contains("[3:a]adelay=10|10[a0]") && graph.contains("[4:a]adelay=5000|5000[a1]"), "{graph}");
        assert!(graph.contains("[a0][a1]amix=inputs=2"), "{graph}");
        assert!(args.contains(&"[o1]".to_string()) && args.contains(&"61.000".to_string()));
    }
}
