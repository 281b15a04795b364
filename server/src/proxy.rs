//! The PROXY protocol (version 2) from a trusted load balancer.
//!
//! Behind HAProxy (`send-proxy-v2`) every TCP connection comes from the balancer. It
//! puts the client's real address in a binary header before the first byte of HTTP;
//! [`read_header`] takes it off, so that per-address caps, the IP database and bans
//! see the client, not the balancer. The header is read only from addresses in
//! `--trusted-proxies` and must arrive within [`HEADER_TIMEOUT`]: anyone else could
//! claim any address with it. A trusted connection without a valid header is closed.

use ppp::v2::{Addresses, Command, Header};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a trusted balancer has to send the header (it sends it at once).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Fixed part of a v2 header: the 12-byte signature, version and command, family and
/// protocol, and the length of what follows.
const FIXED: usize = 16;
const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Most address and TLV bytes accepted after the fixed part (HAProxy sends a few dozen).
const MAX_REST: usize = 512;

/// A block of addresses, like `10.0.0.0/8` or `fd00::/8`; a bare address is one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen on an IPv6 socket (::ffff:a.b.c.d) is that IPv4 client.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let net: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an address or a block like 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {max}")),
            },
        };
        // An IPv4 block written as IPv4-mapped IPv6 is that IPv4 block (peers are
        // compared in their IPv4 form).
        if let IpAddr::V6(v6) = net
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Ok(Self { net: IpAddr::V4(v4), prefix: prefix - 96 });
        }
        Ok(Self { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The load balancers whose PROXY headers are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a trusted connection was closed before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header in time")]
    Timeout,
    #[error("connection ended before its PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a PROXY v2 header")]
    NotProxy,
    #[error("PROXY header of {0} bytes is too long")]
    TooLong(usize),
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error("PROXY header for a non-TCP/IP connection")]
    NotIp,
}

/// Reads the PROXY v2 header at the start of `stream`, and nothing after it. Returns
/// the client's address, or `None` for a `LOCAL` header (the balancer's own health
/// check, which speaks for itself).
pub async fn read_header<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyError> {
    tokio::time::timeout(HEADER_TIMEOUT, read_header_now(stream)).await.map_err(|_| ProxyError::Timeout)?
}

async fn read_header_now<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyError> {
    let mut buf = vec![0u8; FIXED];
    stream.read_exact(&mut buf).await?;
    if &buf[..SIGNATURE.len()] != SIGNATURE {
        return Err(ProxyError::NotProxy);
    }
    let rest = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if rest > MAX_REST {
        return Err(ProxyError::TooLong(FIXED + rest));
    }
    buf.resize(FIXED + rest, 0);
    stream.read_exact(&mut buf[FIXED..]).await?;
    parse(&buf)
}

/// The client's address in a complete v2 header (`None` for `LOCAL`).
pub fn parse(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let header = Header::try_from(bytes).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    match header.addresses {
        Addresses::IPv4(a) => Ok(Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))),
        Addresses::IPv6(a) => Ok(Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))),
        Addresses::Unix(_) | Addresses::Unspecified => Err(ProxyError::NotIp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Protocol, Version};

    fn header(command: Command, addresses: impl Into<Addresses>) -> Vec<u8> {
        Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses).build().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()), "an IPv4 client on an IPv6 socket");
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()) && !host.contains("127.0.0.2".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()) && !v6.contains("fe80::1".parse().unwrap()));
        let mapped: Cidr = "::ffff:10.1.0.0/112".parse().unwrap();
        assert_eq!(mapped, c, "a mapped block is the IPv4 block");
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()) && !all.contains("::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "example.org", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_header_gives_the_clients_address_and_leaves_the_request_unread() {
        let client: SocketAddr = "203.0.113.7:51000".parse().unwrap();
        let server: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let mut bytes = header(Command::Proxy, (client, server));
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut stream = &bytes[..];
        assert_eq!(read_header(&mut stream).await.unwrap(), Some(client));
        assert_eq!(stream, b"GET / HTTP/1.1\r\n");

        let v6: SocketAddr = "[2001:db8::7]:51000".parse().unwrap();
        let bytes = header(Command::Proxy, (v6, "[2001:db8::1]:443".parse::<SocketAddr>().unwrap()));
        assert_eq!(read_header(&mut &bytes[..]).await.unwrap(), Some(v6));
    }

    #[tokio::test]
    async fn a_local_header_speaks_for_the_balancer_and_anything_else_is_refused() {
        let bytes = header(Command::Local, Addresses::Unspecified);
        assert_eq!(read_header(&mut &bytes[..]).await.unwrap(), None);

        assert!(matches!(read_header(&mut &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]).await, Err(ProxyError::NotProxy)));
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nGET / HTTP/1.1\r\n\r\n";
        assert!(read_header(&mut &v1[..]).await.is_err(), "version 1 is not spoken");
        let mut long =
            header(Command::Proxy, ("203.0.113.7:1".parse::<SocketAddr>().unwrap(), "192.0.2.1:2".parse().unwrap()));
        long[14..16].copy_from_slice(&60_000u16.to_be_bytes());
        assert!(matches!(read_header(&mut &long[..]).await, Err(ProxyError::TooLong(_))));
        let truncated =
            &header(Command::Proxy, ("203.0.113.7:1".parse::<SocketAddr>().unwrap(), "192.0.2.1:2".parse().unwrap()))
                [..20];
        assert!(matches!(read_header(&mut &truncated[..]).await, Err(ProxyError::Io(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_balancer_is_given_up_on() {
        let (_keep, mut server) = tokio::io::duplex(64);
        assert!(matches!(read_header(&mut server).await, Err(ProxyError::Timeout)));
    }
}
