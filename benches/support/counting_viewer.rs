//! A counting viewer for the room bench (`--clients counting`): so cheap
//! that 1,000 of them fit beside the server on the machine's two cores.
//!
//! Each viewer is an `rtc` sans-I/O peer connection with its own UDP
//! socket, exactly like the light viewer (`light_viewer.rs`, whose
//! signalling and handshake code it reuses), and completes ICE and DTLS the
//! same way. What differs is what happens to media afterwards:
//!
//! - The RTP header is in the clear (SRTP encrypts only the payload), so a
//!   datagram whose first byte is 128..=191 (version 2) and whose second
//!   byte is not 192..=223 (RTCP's packet types, RFC 5761) is RTP, and its
//!   SSRC (bytes 8..12) and sequence number (bytes 2..4) are readable
//!   without the keys. Such a datagram is counted per SSRC and never handed
//!   to the peer connection: no SRTP decryption, no interceptors, no copy.
//! - Which SSRC is which track is learnt from the first packets: until an
//!   SSRC is known, its packets go to the peer connection, which decrypts
//!   them and names their track (the same for Staffroom, Janus and the
//!   prototype, whatever their SDP says about SSRCs). An audio SSRC is
//!   counted from the header from its second packet on, a video SSRC from
//!   the first keyframe on, because a keyframe can only be recognised in the
//!   (encrypted) VP8 payload: join-to-first-keyframe is measured exactly as
//!   the light viewer measures it.
//! - Everything else (STUN, DTLS, RTCP) still goes to the peer connection,
//!   so ICE consent, DTLS and RTCP keep working.
//!
//! All viewers of a [`Pool`] share a few threads (one by default): each
//! thread owns its viewers' sockets in one `epoll` set and drains every
//! readable socket with `recvmmsg`, 32 datagrams a call. A pass over the
//! ready sockets starts at most every `COUNTING_PACE_MS` (20 ms by
//! default), so each `recvmmsg` finds several datagrams waiting (about 4 of
//! the 720p-like stream; a 30-packet keyframe burst still fits the default
//! socket buffer): one syscall per viewer per pass, not one per packet.
//! What remains is the kernel's own per-datagram receive (`udp_recvmsg`
//! and the copy), about 1 µs here. Timers of the peer connections are
//! checked every 5 ms (and, once media is counted from the header, each
//! connection's at most every `COUNTING_TIMER_MS`, 100 ms by default); the
//! counts reach the shared [`Received`] every 20 ms, which the bench's
//! 10 s windows do not notice.
//!
//! What the counting viewer does not do after the switch: NACK (the peer
//! connection no longer sees the packets, so it requests no retransmission)
//! and check the VP8 payload descriptor (`Received::bad_vp8`). Receiver
//! reports and TWCC feedback stop growing with the packets for the same
//! reason. Sequence gaps are counted from the header, as the light viewer
//! counts them.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicI32, AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use rtc::{
    interceptor::Registry,
    peer_connection::{configuration::setting_engine::SettingEngineBuilder, RTCPeerConnection},
    sansio::Protocol,
};

use super::{
    client::Received,
    light_viewer::{self, Op, Ops},
};

/// Datagrams per `recvmmsg`.
const BATCH: usize = 32;
/// How often the peer connections' timers are checked.
const TIMERS: Duration = Duration::from_millis(5);
/// How often the counts reach the shared [`Received`].
const FLUSH: Duration = Duration::from_millis(20);
/// The epoll key of a thread's wake-up eventfd.
const WAKE: u64 = u64::MAX;

enum Msg {
    Add(usize, Box<Slot>),
    Op(usize, Op),
    Remove(usize),
    Stop,
}

/// The threads that run counting viewers.
pub struct Pool {
    shards: Vec<Shard>,
    next: AtomicUsize,
}

struct Shard {
    tx: mpsc::Sender<Msg>,
    wake: Arc<OwnedFd>,
    tid: Arc<AtomicI32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn wake(fd: &OwnedFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

impl Pool {
    /// `COUNTING_THREADS` threads (else 1), each pacing its passes by
    /// `COUNTING_PACE_MS` (else 20 ms).
    pub fn new() -> Arc<Pool> {
        let env = |k: &str, default: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        let threads = env("COUNTING_THREADS", 1).max(1) as usize;
        let pace = Duration::from_millis(env("COUNTING_PACE_MS", 20));
        let shards = (0..threads)
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                // SAFETY: eventfd returns a new descriptor that we own (or -1, checked).
                let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
                assert!(fd >= 0, "an eventfd");
                let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
                let tid = Arc::new(AtomicI32::new(0));
                let (w, t) = (wake.clone(), tid.clone());
                let thread = std::thread::Builder::new()
                    .name(format!("counting-{i}"))
                    .spawn(move || run(rx, w, t, pace))
                    .expect("a counting thread");
                Shard { tx, wake, tid, thread: Some(thread) }
            })
            .collect();
        Arc::new(Pool { shards, next: AtomicUsize::new(0) })
    }

    /// User + system CPU seconds of the pool's threads.
    pub fn cpu_seconds(&self) -> f64 {
        self.shards
            .iter()
            .map(|s| {
                let tid = s.tid.load(Ordering::Relaxed);
                let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else { return 0.0 };
                let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
                (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
            })
            .sum()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for s in &mut self.shards {
            let _ = s.tx.send(Msg::Stop);
            wake(&s.wake);
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}

pub struct CountingViewer {
    pub received: Arc<Mutex<Received>>,
    pub ops: Ops,
    id: usize,
    tx: mpsc::Sender<Msg>,
    wake: Arc<OwnedFd>,
}

impl Drop for CountingViewer {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Remove(self.id));
        wake(&self.wake);
    }
}

impl CountingViewer {
    /// A viewer whose socket is bound to `ip` (any port), run by one of `pool`'s threads.
    pub fn new(pool: &Pool, ip: &str) -> CountingViewer {
        let socket = UdpSocket::bind((ip, 0)).expect("a viewer socket");
        socket.set_nonblocking(true).unwrap();
        let settings = SettingEngineBuilder::new().with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled);
        let pc = light_viewer::peer_connection(settings, Registry::new()).expect("a viewer peer connection");
        let received = Arc::new(Mutex::new(Received::default()));
        let id = pool.next.fetch_add(1, Ordering::Relaxed);
        let shard = &pool.shards[id % pool.shards.len()];
        let slot = Slot {
            local: socket.local_addr().unwrap(),
            pc,
            socket,
            received: received.clone(),
            kinds: HashMap::new(),
            candidate_added: false,
            deadline: Instant::now(),
            counting: vec![],
            dirty: false,
            min_timer: Duration::from_millis(
                std::env::var("COUNTING_TIMER_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(100),
            ),
        };
        let _ = shard.tx.send(Msg::Add(id, Box::new(slot)));
        wake(&shard.wake);
        let (tx, w) = (shard.tx.clone(), shard.wake.clone());
        let ops = Ops::new(move |op| {
            let _ = tx.send(Msg::Op(id, op));
            wake(&w);
        });
        CountingViewer { received, ops, id, tx: shard.tx.clone(), wake: shard.wake.clone() }
    }
}

/// An SSRC counted from the RTP header, and what is not yet in [`Received`].
struct Counted {
    ssrc: u32,
    track: String,
    last_seq: u16,
    packets: u64,
    gaps: u64,
}

/// One viewer, as its thread holds it.
struct Slot {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    received: Arc<Mutex<Received>>,
    kinds: HashMap<String, &'static str>,
    candidate_added: bool,
    deadline: Instant,
    counting: Vec<Counted>,
    dirty: bool,
    min_timer: Duration,
}

impl Slot {
    /// Counts `data` if it is RTP of an SSRC counted from the header.
    fn count(&mut self, data: &[u8]) -> bool {
        if data.len() < 12 || !(128..=191).contains(&data[0]) || (192..=223).contains(&data[1]) {
            return false;
        }
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let Some(c) = self.counting.iter_mut().find(|c| c.ssrc == ssrc) else { return false };
        let seq = u16::from_be_bytes([data[2], data[3]]);
        // As `Received::count`: ahead by less than half the sequence space, anything skipped is lost.
        let ahead = seq.wrapping_sub(c.last_seq);
        if (2..0x8000).contains(&ahead) {
            c.gaps += u64::from(ahead - 1);
        }
        if ahead < 0x8000 {
            c.last_seq = seq;
        }
        c.packets += 1;
        self.dirty = true;
        true
    }

    /// Everything the peer connection produced; an SSRC it names starts
    /// being counted from the header (audio at once, video from the first keyframe).
    fn drive(&mut self, now: Instant) {
        let mut writes = vec![];
        let counting = &mut self.counting;
        light_viewer::drain(&mut self.pc, &mut self.kinds, &self.received, &mut writes, |track, kind, packet, r| {
            let ssrc = packet.header.ssrc;
            if (kind == "audio" || r.first_keyframe.is_some()) && !counting.iter().any(|c| c.ssrc == ssrc) {
                let last_seq = packet.header.sequence_number;
                counting.push(Counted { ssrc, track: track.to_string(), last_seq, packets: 0, gaps: 0 });
            }
        });
        for w in writes {
            let _ = self.socket.send_to(&w.message, w.transport.peer_addr);
        }
        // Once media is counted from the header, the connection's timers
        // (RTCP reports, ICE consent) need no finer grain than `min_timer`.
        let at_least = if self.counting.is_empty() { now } else { now + self.min_timer };
        self.deadline = self.pc.poll_timeout().unwrap_or(now + Duration::from_secs(1)).max(at_least);
    }

    /// Drains the socket: RTP of known SSRCs counted, the rest to the peer connection.
    fn read(&mut self, batch: &mut RecvBatch) {
        let mut handed = false;
        loop {
            let n = batch.recv(self.socket.as_raw_fd());
            let now = Instant::now();
            for i in 0..n {
                if self.count(batch.data(i)) {
                    continue;
                }
                let Some(from) = batch.from(i) else { continue };
                let _ = self.pc.handle_read(light_viewer::datagram(batch.data(i), self.local, from, now));
                handed = true;
            }
            if n < BATCH {
                break;
            }
        }
        if handed {
            self.drive(Instant::now());
        }
    }

    /// Adds what was counted from the header to the shared counts.
    fn flush(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let mut r = self.received.lock().unwrap();
        for c in &mut self.counting {
            if let Some(n) = r.packets.get_mut(&c.track) {
                *n += std::mem::take(&mut c.packets);
            }
            r.gaps += std::mem::take(&mut c.gaps);
        }
    }
}

/// Buffers for one `recvmmsg` of up to [`BATCH`] datagrams.
struct RecvBatch {
    bufs: Vec<[u8; 2048]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> RecvBatch {
        // SAFETY: all-zero sockaddr_storage and mmsghdr are valid values.
        let mut b = RecvBatch {
            bufs: vec![[0u8; 2048]; BATCH],
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            iovs: Vec::with_capacity(BATCH),
            msgs: vec![unsafe { std::mem::zeroed() }; BATCH],
        };
        for buf in &mut b.bufs {
            b.iovs.push(libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() });
        }
        // The vectors are never resized, so these pointers stay valid.
        for i in 0..BATCH {
            b.msgs[i].msg_hdr.msg_iov = &mut b.iovs[i];
            b.msgs[i].msg_hdr.msg_iovlen = 1;
            b.msgs[i].msg_hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
        }
        b
    }

    /// Reads up to [`BATCH`] datagrams without waiting; how many.
    fn recv(&mut self, fd: i32) -> usize {
        for m in &mut self.msgs {
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            m.msg_len = 0;
        }
        // SAFETY: msgs point into bufs, iovs and addrs, all alive and of the sizes given.
        let n = unsafe {
            libc::recvmmsg(fd, self.msgs.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        n.max(0) as usize
    }

    fn data(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.msgs[i].msg_len as usize]
    }

    fn from(&self, i: usize) -> Option<SocketAddr> {
        let a = &self.addrs[i];
        match i32::from(a.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
                let a: &libc::sockaddr_in = unsafe { &*(a as *const libc::sockaddr_storage).cast() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
                let a: &libc::sockaddr_in6 = unsafe { &*(a as *const libc::sockaddr_storage).cast() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), 0, a.sin6_scope_id)))
            }
            _ => None,
        }
    }
}

fn epoll_add(ep: &OwnedFd, fd: i32, key: u64) {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: key };
    // SAFETY: ep and fd are open descriptors; ev is a live local.
    unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
}

/// One thread of a [`Pool`]: its viewers' sockets in one epoll set.
fn run(rx: mpsc::Receiver<Msg>, wake_fd: Arc<OwnedFd>, tid: Arc<AtomicI32>, pace: Duration) {
    // SAFETY: gettid has no preconditions.
    tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
    // SAFETY: epoll_create1 returns a new descriptor that we own (or -1, checked).
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "an epoll set");
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    epoll_add(&ep, wake_fd.as_raw_fd(), WAKE);
    let mut slots: HashMap<usize, Slot> = HashMap::new();
    let mut batch = RecvBatch::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let (mut next_timers, mut next_flush) = (Instant::now(), Instant::now());
    loop {
        let pass = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(Msg::Add(id, slot)) => {
                    epoll_add(&ep, slot.socket.as_raw_fd(), id as u64);
                    slots.insert(id, *slot);
                }
                Ok(Msg::Op(id, op)) => {
                    if let Some(s) = slots.get_mut(&id) {
                        light_viewer::op(&mut s.pc, s.local, &mut s.candidate_added, op);
                        s.drive(Instant::now());
                    }
                }
                Ok(Msg::Remove(id)) => {
                    if let Some(mut s) = slots.remove(&id) {
                        // SAFETY: removes an open descriptor from an open epoll set.
                        unsafe {
                            libc::epoll_ctl(
                                ep.as_raw_fd(),
                                libc::EPOLL_CTL_DEL,
                                s.socket.as_raw_fd(),
                                std::ptr::null_mut(),
                            )
                        };
                        s.flush();
                        let _ = s.pc.close();
                    }
                }
                Ok(Msg::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        let timeout = next_timers.min(next_flush).saturating_duration_since(now);
        // SAFETY: events is a live buffer of the length given.
        let n = unsafe {
            libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, timeout.as_millis() as i32)
        };
        for ev in &events[..n.max(0) as usize] {
            let key = ev.u64;
            if key == WAKE {
                let mut count = 0u64;
                // SAFETY: reads 8 bytes into a live u64 from a non-blocking eventfd.
                unsafe { libc::read(wake_fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
            } else if let Some(slot) = slots.get_mut(&(key as usize)) {
                slot.read(&mut batch);
            }
        }
        let now = Instant::now();
        if now >= next_timers {
            for slot in slots.values_mut() {
                if slot.deadline <= now {
                    let _ = slot.pc.handle_timeout(now);
                    slot.drive(now);
                }
            }
            next_timers = now + TIMERS;
        }
        if now >= next_flush {
            for slot in slots.values_mut() {
                slot.flush();
            }
            next_flush = now + FLUSH;
        }
        if let Some(rest) = pace.checked_sub(pass.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
