//! Instructions per forwarded packet under `valgrind --tool=callgrind`
//! (`--callgrind`): a figure that does not move with the neighbours on a
//! shared machine, unlike CPU time.
//!
//! - The server under test (the `staffroom` binary, or the prototype child
//!   process) is started under callgrind, counting from the start.
//! - At the start of the steady window the bench asks callgrind, through
//!   `vgdb --pid=PID zero`, to zero its counters; at the end, `vgdb
//!   --pid=PID dump` writes the counts since then to a file, whose
//!   `summary:` line is the instructions of all the server's threads in the
//!   window. The viewers' packet counts are read just before and just after
//!   each of the two requests; the window's packets are the differences of
//!   the midpoints, and the bracket (half the packets counted while the
//!   requests were under way, at each end) is reported as the figure's
//!   uncertainty.
//! - The floor (`FloorSender::send_to` in `room.rs`: SRTP-protect one
//!   1,200-byte packet and `send_to` it) is measured in the same way in a
//!   child process of the bench (`--floor-only PACKETS`), twice, with P and
//!   2P packets: the difference of the two totals divided by P is exactly
//!   the instructions of P packets, with everything else (start-up, SRTP
//!   context, sockets) the same in both runs and cancelled out.
//!
//! Callgrind counts user-space instructions only: the kernel's side of a
//! syscall (most of the floor's time, the UDP send) is not in either
//! figure. The ratio is of what the server's own code and libraries
//! execute against what the floor's do.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

/// Where callgrind writes, when `--callgrind` is on.
static OUT: OnceLock<PathBuf> = OnceLock::new();

/// Turns callgrind on for the servers this process starts; outputs under `dir`.
pub fn enable(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let _ = OUT.set(dir.to_path_buf());
}

pub fn enabled() -> bool {
    OUT.get().is_some()
}

/// `program`, under callgrind when it is on.
pub fn command(program: &str) -> Command {
    match OUT.get() {
        None => Command::new(program),
        Some(dir) => {
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}/callgrind.out.%p", dir.display()))
                .arg(program);
            c
        }
    }
}

fn vgdb(pid: u32, command: &str) {
    let ok = Command::new("vgdb")
        .arg(format!("--pid={pid}"))
        .arg(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("vgdb runs (apt-get install valgrind)");
    assert!(ok.success(), "vgdb --pid={pid} {command} failed");
}

/// Zeroes the server's counters, if it runs under callgrind.
pub fn zero(pid: u32) -> bool {
    if enabled() {
        vgdb(pid, "zero");
    }
    enabled()
}

/// The server's instructions since [`zero`], if it runs under callgrind.
pub fn dump(pid: u32) -> Option<u64> {
    let dir = OUT.get()?;
    let before = dumps(dir, pid);
    vgdb(pid, "dump");
    let after = dumps(dir, pid);
    let new = after.iter().find(|f| !before.contains(f)).expect("callgrind wrote a dump");
    Some(summary(new))
}

/// The dump files of `pid` (`callgrind.out.PID.N`).
fn dumps(dir: &Path, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("callgrind.out.{pid}.");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
        .collect()
}

/// The `summary:` (else `totals:`) of a callgrind output file: its instructions (Ir).
fn summary(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let line = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()));
    let value = line("summary:").or_else(|| line("totals:")).expect("a callgrind summary");
    value.split_whitespace().next().unwrap().parse().expect("instructions")
}

/// The instructions of a server in the window, and the packets forwarded.
pub struct Window {
    pub instructions: u64,
    pub packets: f64,
    /// Packets counted while a request was under way, halved: the bound on
    /// `packets`' error.
    pub uncertainty: f64,
}

impl Window {
    /// From the viewers' packet counts read around [`zero`] and [`dump`].
    pub fn new(instructions: u64, zero: (u64, u64), dump: (u64, u64)) -> Window {
        let mid = |(a, b): (u64, u64)| (a + b) as f64 / 2.0;
        Window {
            instructions,
            packets: mid(dump) - mid(zero),
            uncertainty: ((zero.1 - zero.0) + (dump.1 - dump.0)) as f64 / 2.0,
        }
    }

    pub fn per_packet(&self) -> f64 {
        self.instructions as f64 / self.packets.max(1.0)
    }
}

/// The floor's instructions per packet: this bench run twice under
/// callgrind with `--floor-only P` and `--floor-only 2P`.
pub fn floor(packets: u32) -> f64 {
    let dir = OUT.get().expect("--callgrind");
    let total = |n: u32| {
        let file = dir.join(format!("floor.{n}.out"));
        let ok = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", file.display()))
            .arg(std::env::current_exe().unwrap())
            .arg("--floor-only")
            .arg(n.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("valgrind runs (apt-get install valgrind)");
        assert!(ok.success(), "the floor under callgrind");
        summary(&file)
    };
    (total(2 * packets) - total(packets)) as f64 / f64::from(packets)
}
