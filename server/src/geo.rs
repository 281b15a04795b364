//! The country of a connection's address, from an offline IP database.
//!
//! `--geoip-db` names a database in MaxMind's format whose records carry a
//! `country_code` (ISO 3166-1 alpha-2), such as the CC BY 4.0 `geo-whois-asn-country`
//! database that `scripts/install.sh` fetches. It is read into memory once, looked
//! up once per connection (the answer is kept on the session), and read again on
//! SIGHUP ([`Geo::reload`]): a database that fails to load leaves the one in use in
//! place.
//!
//! Loopback, private and other addresses the database does not know have no country;
//! the hub then falls back to the country the user picked. Nothing here logs an
//! address next to its country.

use anyhow::Context;
use maxminddb::Reader;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The part of a record this server reads.
#[derive(Deserialize)]
struct Record<'a> {
    country_code: Option<&'a str>,
}

/// Where countries come from.
enum Source {
    /// No database: every lookup answers `None`.
    None,
    Mmdb(Reader<Vec<u8>>),
    /// Fixed answers for exact addresses, special-purpose ones included (tests:
    /// loopback addresses stand in for addresses abroad).
    Table(HashMap<IpAddr, String>),
}

/// The lookup, shared by every connection; [`Geo::reload`] swaps the database under it.
/// One pointer wide: every connection's task holds a clone.
#[derive(Clone)]
pub struct Geo {
    inner: Arc<Inner>,
}

struct Inner {
    source: RwLock<Arc<Source>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Geo {
    /// No database: no address has a country.
    pub fn none() -> Self {
        Self::with(Source::None, None)
    }

    /// Reads the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self::with(load(path)?, Some(path.to_owned())))
    }

    /// Fixed countries for exact addresses; every other address has none.
    pub fn table<'a>(entries: impl IntoIterator<Item = (IpAddr, &'a str)>) -> Self {
        let map = entries.into_iter().map(|(ip, c)| (ip, c.to_ascii_uppercase())).collect();
        Self::with(Source::Table(map), None)
    }

    fn with(source: Source, path: Option<PathBuf>) -> Self {
        Self { inner: Arc::new(Inner { source: RwLock::new(Arc::new(source)), path }) }
    }

    /// Replaces what this lookup (and every clone of it) answers from.
    pub fn replace_with(&self, other: &Geo) {
        let source = other.current();
        *self.inner.source.write().unwrap_or_else(|p| p.into_inner()) = source;
    }

    /// Reads the database file again and uses it from now on. On failure the one in
    /// use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let path = self.inner.path.as_deref().context("no --geoip-db to reload")?;
        let fresh = Arc::new(load(path)?);
        *self.inner.source.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Whether a database is in use.
    pub fn enabled(&self) -> bool {
        !matches!(*self.current(), Source::None)
    }

    /// The country of `ip` (an assigned ISO 3166-1 alpha-2 code, upper case), if
    /// the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let ip = canonical(ip);
        let found = match &*self.current() {
            Source::None => return None,
            // A database says nothing true of these: this one lists 192.168.0.0/16
            // and 172.16.0.0/12, for two, as Australian.
            Source::Mmdb(reader) => is_public(ip).then(|| mmdb_country(reader, ip)).flatten(),
            Source::Table(map) => map.get(&ip).cloned(),
        };
        found.and_then(|c| protocol::prefs::normalize_country(&c))
    }

    /// The source in use (the lock is held only to clone an `Arc`).
    fn current(&self) -> Arc<Source> {
        self.inner.source.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn load(path: &Path) -> anyhow::Result<Source> {
    let reader = Reader::open_readfile(path)
        .with_context(|| format!("cannot read the IP database {} (--geoip-db)", path.display()))?;
    let epoch = reader.metadata().build_epoch;
    tracing::info!(
        path = %path.display(),
        kind = %reader.metadata().database_type,
        built = epoch,
        "IP database loaded: same-country matching uses each connection's country"
    );
    Ok(Source::Mmdb(reader))
}

fn mmdb_country(reader: &Reader<Vec<u8>>, ip: IpAddr) -> Option<String> {
    // A database without the address, or a record of another shape: no country.
    let found = reader.lookup(ip).ok()?;
    let record: Record<'_> = found.decode().ok()??;
    record.country_code.map(str::to_owned)
}

/// Whether `ip` can be a client's address on the public internet: not loopback,
/// private, shared (carrier-grade NAT), link-local, documentation, benchmarking,
/// multicast, reserved or unspecified (IANA's special-purpose registries).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_documentation()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])
                || s[0] == 0x0064 && s[1] == 0xff9b)
        }
    }
}

/// IPv4 addresses mapped into IPv6 (a dual-stack listener's view of them) are looked
/// up as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_database_nothing_has_a_country() {
        let geo = Geo::none();
        assert!(!geo.enabled());
        assert_eq!(geo.country("8.8.8.8".parse().unwrap()), None);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_table_answers_exact_addresses_and_mapped_ones() {
        let geo = Geo::table([(ip("8.8.4.4"), "us")]);
        assert_eq!(geo.country(ip("8.8.4.4")).as_deref(), Some("US"));
        assert_eq!(geo.country(ip("::ffff:8.8.4.4")).as_deref(), Some("US"));
        assert_eq!(geo.country(ip("8.8.4.5")), None);
    }

    #[test]
    fn codes_that_are_not_countries_are_ignored() {
        let geo = Geo::table([(ip("8.8.4.4"), "ZZ"), (ip("8.8.4.5"), "EU")]);
        assert_eq!(geo.country(ip("8.8.4.4")), None);
        assert_eq!(geo.country(ip("8.8.4.5")), None);
    }

    #[test]
    fn special_purpose_addresses_are_not_public() {
        let special = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "2001:db8::1",
            "ff02::1",
            "::ffff:192.168.0.1",
            "64:ff9b::808:808",
            "100::1",
        ];
        for s in special {
            assert!(!is_public(ip(s)), "{s}");
        }
        for s in ["8.8.8.8", "1.1.1.1", "193.0.6.139", "2001:4860:4860::8888", "::ffff:8.8.8.8", "100.128.0.1"] {
            assert!(is_public(ip(s)), "{s}");
        }
    }

    #[test]
    fn a_missing_file_is_a_clear_error_and_a_failed_reload_keeps_the_old_source() {
        let missing = Path::new("no/such/geo.mmdb");
        let err = Geo::open(missing).unwrap_err().to_string();
        assert!(err.contains("no/such/geo.mmdb") && err.contains("--geoip-db"), "{err}");
        let geo = Geo::table([(ip("8.8.4.4"), "FR")]);
        assert!(geo.reload().is_err(), "nothing to reload");
        assert_eq!(geo.country(ip("8.8.4.4")).as_deref(), Some("FR"));
    }
}
