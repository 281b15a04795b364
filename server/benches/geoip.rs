//! The cost of one connection's country lookup in the real IP database (fetched by
//! `scripts/install.sh`), over addresses spread across the whole IPv4 and IPv6 space.
//! Run with `cargo bench -p server --bench geoip`; lookups per second = 1 / median.

use server::geo::Geo;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

fn main() {
    divan::main();
}

const ADDRESSES: usize = 4096;

fn geo() -> Geo {
    let db = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb");
    Geo::open(&db).unwrap_or_else(|e| panic!("{e:#}: run scripts/install.sh"))
}

/// Reproducible pseudo-random addresses (xorshift), IPv6 ones in 2000::/4 where the
/// allocations are.
fn addresses(v6: bool) -> Vec<IpAddr> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..ADDRESSES)
        .map(|_| match v6 {
            false => IpAddr::V4(Ipv4Addr::from(next() as u32)),
            true => IpAddr::V6(Ipv6Addr::from((u128::from(next()) << 64 | u128::from(next())) >> 4 | 0x2 << 124)),
        })
        .collect()
}

#[divan::bench(args = [false, true], name = "lookup (v6?)", sample_count = 500, sample_size = 64)]
fn lookup(bencher: divan::Bencher, v6: bool) {
    let geo = geo();
    let addrs = addresses(v6);
    let mut i = 0;
    bencher.bench_local(|| {
        i = (i + 1) % ADDRESSES;
        divan::black_box(geo.country(addrs[i]))
    });
}
