//! Instructions per forwarded packet, a figure that does not move with
//! the neighbours on a shared machine: with `ROOM_CALLGRIND=DIR`, a
//! prototype's child process runs under `valgrind --tool=callgrind`, its
//! counters are zeroed when the measuring window opens and dumped when it
//! closes, and the dump's total (user-space instructions: the kernel's send
//! path is not in it) is divided by the packets the viewers got in the
//! window.
//!
//!     ROOM_CALLGRIND=target/callgrind cargo bench --bench room -- \
//!         --viewers 20 --window 5 --stream light --no-floor --single-socket --str0m

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The folder for the dumps, if instruction counts were asked for.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os("ROOM_CALLGRIND").map(PathBuf::from)
}

/// The command that runs `exe serve`: under callgrind (dumps named
/// `NAME-N.PID`) when instruction counts were asked for.
pub fn command(exe: &Path, serve: &str, name: &str, viewers: usize) -> Command {
    let Some(dir) = dir() else {
        let mut plain = Command::new(exe);
        plain.arg(serve);
        return plain;
    };
    std::fs::create_dir_all(&dir).expect("the callgrind folder");
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}/{name}-{viewers}.%p", dir.display()))
        .arg(exe)
        .arg(serve);
    valgrind
}

/// `callgrind_control --zero` or `--dump` on `pid`, if it runs under
/// callgrind (the tool is then the process's executable).
pub fn control(pid: u32, what: &str) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    if exe.to_string_lossy().contains("callgrind") {
        let done = Command::new("callgrind_control").arg(what).arg(pid.to_string()).output();
        assert!(done.is_ok_and(|o| o.status.success()), "callgrind_control {what} {pid}");
    }
}

/// The instructions counted between the zero and the dump of `pid`'s run
/// (its first dump, `NAME-N.PID.1`).
pub fn instructions(name: &str, viewers: usize, pid: u32) -> Option<u64> {
    let dump = dir()?.join(format!("{name}-{viewers}.{pid}.1"));
    let text = std::fs::read_to_string(&dump).ok()?;
    text.lines().find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:"))?.trim().parse().ok())
}
