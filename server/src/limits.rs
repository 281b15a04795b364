//! Connection caps: in all, and per client address; and what "an address" is.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// The address every per-address rule counts against: IPv4 as is, IPv6 by its /64
/// (one subscriber usually holds a whole /64, so counting single IPv6 addresses
/// would make every per-address cap unlimited). IPv4-mapped IPv6 counts as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}
use std::sync::{Arc, Mutex};

/// Counts open WebSocket connections, in all and per IP address.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    inner: Arc<Mutex<Counts>>,
    per_ip: u32,
    total: u32,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_ip: HashMap<IpAddr, u32>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// This address already has the maximum number of connections.
    #[error("too many connections from this address")]
    PerIp,
    /// The server is at its connection cap.
    #[error("the server is full, try again shortly")]
    Total,
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnPermit {
    limits: ConnLimits,
    ip: IpAddr,
}

impl ConnLimits {
    pub fn new(per_ip: u32, total: u32) -> Self {
        Self { inner: Arc::default(), per_ip, total }
    }

    /// Takes a slot for `ip`, or says which cap is reached.
    pub fn acquire(&self, ip: IpAddr) -> Result<ConnPermit, LimitError> {
        let mut counts = self.inner.lock().expect("the limits lock is never held across a panic");
        if counts.total >= self.total {
            return Err(LimitError::Total);
        }
        let n = counts.by_ip.entry(ip).or_default();
        if *n >= self.per_ip {
            return Err(LimitError::PerIp);
        }
        *n += 1;
        counts.total += 1;
        Ok(ConnPermit { limits: self.clone(), ip })
    }

    /// Open connections in all.
    pub fn total(&self) -> u32 {
        self.inner.lock().expect("the limits lock is never held across a panic").total
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut counts = self.limits.inner.lock().expect("the limits lock is never held across a panic");
        counts.total -= 1;
        if let Some(n) = counts.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_eq!(client_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(client_key(a), client_key(other));
        assert_eq!(client_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(client_key("10.1.2.3".parse().unwrap()), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn caps_per_ip_and_in_all_and_frees_on_drop() {
        let limits = ConnLimits::new(2, 3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = limits.acquire(a).unwrap();
        let _p2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).unwrap_err(), LimitError::PerIp);
        let _p3 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).unwrap_err(), LimitError::Total);
        drop(p1);
        assert!(limits.acquire(a).is_ok());
        // The permit taken just above was dropped at the end of its statement.
        assert_eq!(limits.total(), 2);
    }
}
