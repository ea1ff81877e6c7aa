//! Socket helpers shared by the DNS workers and the heartbeat intake.
//!
//! Takes what the kernel reports about a datagram; produces std types. It
//! never does I/O itself.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::SockaddrStorage;

/// The sender of a datagram, as `recvmmsg` reported it (IPv4 or IPv6).
pub fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::from(SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::from(SocketAddrV6::from(*v6)))
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
/// socket reports for IPv4 peers) to plain IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}
