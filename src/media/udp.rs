//! The media socket: bound once, read and written in batches
//! (`recvmmsg`, `sendmmsg`) so that a burst costs one system call per 32
//! datagrams in and 64 out instead of one each.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::RawFd,
};

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffers: a burst of a few hundred viewers' packets must fit while
/// the loop is busy elsewhere.
const SOCKET_BUFFER: usize = 8 << 20;

/// A non-blocking UDP socket on `addr`, with large buffers.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel may cap these (net.core.*mem_max); what it grants is enough.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Datagrams read per `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// Datagrams written per `sendmmsg`.
pub const SEND_BATCH: usize = 64;
/// Larger than any datagram a WebRTC peer sends (it keeps under the MTU).
const DATAGRAM: usize = 2048;

/// Buffers for one `recvmmsg`, reused for every call.
pub struct RecvBuffers {
    data: Vec<[u8; DATAGRAM]>,
    names: Vec<libc::sockaddr_storage>,
    lens: [usize; RECV_BATCH],
}

impl RecvBuffers {
    pub fn new() -> RecvBuffers {
        // SAFETY: an all-zero sockaddr_storage is valid.
        let names = (0..RECV_BATCH).map(|_| unsafe { zeroed() }).collect();
        RecvBuffers { data: vec![[0; DATAGRAM]; RECV_BATCH], names, lens: [0; RECV_BATCH] }
    }

    /// The `i`th datagram of the last batch and its sender.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        Some((&self.data[i][..self.lens[i]], from_storage(&self.names[i])?))
    }
}

/// Reads up to [`RECV_BATCH`] datagrams; returns how many.
pub fn recv_batch(fd: RawFd, bufs: &mut RecvBuffers) -> io::Result<usize> {
    let mut iovs: [libc::iovec; RECV_BATCH] =
        std::array::from_fn(|i| libc::iovec { iov_base: bufs.data[i].as_mut_ptr().cast(), iov_len: DATAGRAM });
    // SAFETY: an all-zero mmsghdr is valid; the pointers set below point
    // into `iovs` and `bufs`, which outlive the call.
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { zeroed() };
    for (i, m) in msgs.iter_mut().enumerate() {
        m.msg_hdr.msg_name = (&mut bufs.names[i] as *mut libc::sockaddr_storage).cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
        m.msg_hdr.msg_iov = &mut iovs[i];
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: as above.
    let n =
        unsafe { libc::recvmmsg(fd, msgs.as_mut_ptr(), RECV_BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    for (i, m) in msgs.iter().take(n as usize).enumerate() {
        bufs.lens[i] = m.msg_len as usize;
    }
    Ok(n as usize)
}

/// Writes up to [`SEND_BATCH`] datagrams of `batch`; returns how many the
/// kernel took.
pub fn send_batch(fd: RawFd, batch: &[(BytesMut, SocketAddr)]) -> io::Result<usize> {
    let batch = &batch[..batch.len().min(SEND_BATCH)];
    let mut names: [libc::sockaddr_storage; SEND_BATCH] =
        // SAFETY: an all-zero sockaddr_storage is valid.
        unsafe { zeroed() };
    let mut iovs: [libc::iovec; SEND_BATCH] =
        std::array::from_fn(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 });
    // SAFETY: an all-zero mmsghdr is valid; the pointers set below point
    // into `names`, `iovs` and `batch`, which outlive the call.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { zeroed() };
    for (i, (data, to)) in batch.iter().enumerate() {
        let len = to_storage(*to, &mut names[i]);
        iovs[i] = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = len;
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: as above.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), batch.len() as u32, libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The USERNAME of a STUN message (RFC 8489), if `data` is one that has it.
pub fn stun_username(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] > 1 || data[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let mut at = 20;
    while at + 4 <= data.len() {
        let kind = u16::from_be_bytes([data[at], data[at + 1]]);
        let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        let value = data.get(at + 4..at + 4 + len)?;
        if kind == 0x0006 {
            return std::str::from_utf8(value).ok();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_round_trip_through_sockaddr() {
        for addr in ["127.0.0.1:50000", "[::1]:3478", "[fe80::1%2]:9"] {
            let addr: SocketAddr = addr.parse().unwrap();
            // SAFETY: an all-zero sockaddr_storage is valid.
            let mut storage = unsafe { zeroed() };
            to_storage(addr, &mut storage);
            assert_eq!(from_storage(&storage), Some(addr));
        }
    }

    #[test]
    fn a_batch_sent_is_a_batch_received() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        let batch: Vec<(BytesMut, SocketAddr)> = (0..70u8).map(|i| (BytesMut::from(&[i; 100][..]), to)).collect();
        use std::os::fd::AsRawFd;
        let mut sent = 0;
        while sent < batch.len() {
            sent += send_batch(a.as_raw_fd(), &batch[sent..]).unwrap();
        }
        let mut bufs = RecvBuffers::new();
        let mut got = vec![];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 70 && std::time::Instant::now() < deadline {
            match recv_batch(b.as_raw_fd(), &mut bufs) {
                Ok(n) => (0..n).for_each(|i| {
                    let (data, from) = bufs.get(i).unwrap();
                    assert_eq!(from, a.local_addr().unwrap());
                    got.push(data.to_vec())
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), 70);
        assert!(got.iter().enumerate().all(|(i, d)| d.len() == 100 && d[0] == i as u8));
    }

    #[test]
    fn the_username_is_read_from_a_binding_request() {
        let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        let name = b"srv1:cli";
        m.extend_from_slice(&[0x00, 0x06, 0x00, name.len() as u8]);
        m.extend_from_slice(name);
        assert_eq!(stun_username(&m), Some("srv1:cli"));
        assert_eq!(stun_username(&m[..20]), None);
        assert_eq!(stun_username(&[0x80; 40]), None);
    }
}
