//! Command-line flags, each with an environment-variable fallback.

use crate::hub::HubConfig;
use crate::hub::relay::InboxLimits;
use crate::ice::IceConfig;
use crate::ws::WsSettings;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// Let'sMeet server: serves the site and the `/ws` signaling endpoint.
#[derive(Clone, Debug, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on. Defaults to the `site-addr` of the Leptos options
    /// (Leptos.toml or LEPTOS_SITE_ADDR), normally 127.0.0.1:3000.
    #[arg(long, env = "LETSMEET_BIND")]
    pub bind: Option<SocketAddr>,

    /// File holding the site's runtime options (site root, pkg dir, address).
    /// LEPTOS_* environment variables override its values.
    #[arg(long, env = "LETSMEET_LEPTOS_CONFIG", default_value = "Leptos.toml")]
    pub leptos_config: PathBuf,

    /// Origins allowed to open `/ws` (comma separated, e.g. https://letsmeet.example).
    /// Empty means same-origin only: the Origin's host must equal the Host header.
    /// Clients that send no Origin (not browsers) are allowed.
    #[arg(long, env = "LETSMEET_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `server=debug,info`.
    #[arg(long, env = "LETSMEET_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, env = "LETSMEET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// STUN/TURN URLs handed to browsers in `welcome` (comma separated), e.g.
    /// stun:stun.l.google.com:19302. None by default: on loopback, host candidates suffice.
    #[arg(long, env = "LETSMEET_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,

    /// TURN URLs handed to browsers with per-session credentials (comma separated),
    /// e.g. turn:turn.example.org:3478?transport=udp. Needs --turn-secret.
    #[arg(long, env = "LETSMEET_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,

    /// The secret shared with coturn (`static-auth-secret`), at least 16 characters.
    /// Never sent to browsers or logged. Prefer the environment variable over the flag.
    #[arg(long, env = "LETSMEET_TURN_SECRET", hide_env_values = true, value_parser = TurnSecretParser)]
    pub turn_secret: Option<crate::ice::TurnSecret>,

    /// Seconds a TURN credential stays valid (a fresh one comes with every match).
    #[arg(long, env = "LETSMEET_TURN_TTL_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub turn_ttl_secs: u64,

    /// Seconds a dropped session keeps its queue place or match for `?resume=`.
    #[arg(long, env = "LETSMEET_GRACE_SECS", default_value_t = 15.0, value_parser = positive_secs)]
    pub grace_secs: f64,

    /// Seconds a ticket with interests waits for a shared interest before matching anyone.
    #[arg(long, env = "LETSMEET_INTEREST_FALLBACK_SECS", default_value_t = 5.0, value_parser = non_negative_secs)]
    pub interest_fallback_secs: f64,

    /// Seconds two sessions whose match ended by `next` are kept apart (`block`: forever).
    #[arg(long, env = "LETSMEET_REMATCH_COOLDOWN_SECS", default_value_t = 60.0, value_parser = non_negative_secs)]
    pub rematch_cooldown_secs: f64,

    /// Largest accepted WebSocket message in bytes (bigger closes with 1009).
    #[arg(long, env = "LETSMEET_MAX_FRAME_BYTES", default_value_t = protocol::limits::MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,

    /// Sustained client messages per second per connection.
    #[arg(long, env = "LETSMEET_RATE_PER_SEC", default_value_t = protocol::limits::RATE_PER_SECOND, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_per_sec: u32,

    /// Burst of client messages allowed above the sustained rate.
    #[arg(long, env = "LETSMEET_RATE_BURST", default_value_t = protocol::limits::RATE_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,

    /// Pool searches (`join` with new preferences, `next`) per second per session...
    #[arg(long, env = "LETSMEET_JOINS_PER_SEC", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub joins_per_sec: u32,

    /// ...and at once, above that rate (beyond both, a search waits for the budget).
    #[arg(long, env = "LETSMEET_JOIN_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub join_burst: u32,

    /// Rate-limited messages tolerated (without a 5 s pause) before closing with 1008.
    #[arg(long, env = "LETSMEET_FLOOD_STRIKES", default_value_t = 200)]
    pub flood_strikes: u32,

    /// Concurrent WebSocket connections per client IP address.
    #[arg(long, env = "LETSMEET_MAX_CONN_PER_IP", default_value_t = 20)]
    pub max_conn_per_ip: u32,

    /// Sessions one address may hold, live or within their grace period (a new one
    /// beyond it ends that address's longest-absent session). Default: twice
    /// --max-conn-per-ip.
    #[arg(long, env = "LETSMEET_MAX_SESSIONS_PER_IP")]
    pub max_sessions_per_ip: Option<usize>,

    /// Concurrent WebSocket connections in all.
    #[arg(long, env = "LETSMEET_MAX_CONNECTIONS", default_value_t = 15_000)]
    pub max_connections: u32,

    /// Messages queued for one socket before it counts as not reading and is closed.
    #[arg(long, env = "LETSMEET_OUTBOX", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub outbox: u32,

    /// Bytes queued for one socket before it counts as not reading and is closed.
    #[arg(long, env = "LETSMEET_OUTBOX_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub outbox_bytes: u32,

    /// Signals held for a peer that has not sent `ready` yet (count).
    #[arg(long, env = "LETSMEET_SIGNAL_BUFFER", default_value_t = 64)]
    pub signal_buffer: usize,

    /// Signals held for a peer that has not sent `ready` yet (bytes).
    #[arg(long, env = "LETSMEET_SIGNAL_BUFFER_BYTES", default_value_t = 256 * 1024)]
    pub signal_buffer_bytes: usize,

    /// Seconds without any frame from a client (pongs count) before it is dropped.
    /// A ping is sent every third of this.
    #[arg(long, env = "LETSMEET_IDLE_TIMEOUT_SECS", default_value_t = 45.0, value_parser = positive_secs)]
    pub idle_timeout_secs: f64,

    /// Seconds between `online` count pushes at most (pushed only when they change).
    #[arg(long, env = "LETSMEET_ONLINE_INTERVAL_SECS", default_value_t = 1.0, value_parser = positive_secs)]
    pub online_interval_secs: f64,

    /// Chat lines kept for a peer whose socket is down, delivered when it resumes.
    #[arg(long, env = "LETSMEET_MISSED_CHAT", default_value_t = crate::hub::config::MISSED_CHAT_LIMIT)]
    pub missed_chat: usize,

    /// Threads running socket tasks. Default: one fewer than the CPUs (at least one),
    /// leaving a core to the kernel's network stack, which does about half of a
    /// signaling server's work; extra workers mostly add cross-thread wake-ups.
    #[arg(long, env = "LETSMEET_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Seconds a report counts against the reported address, then it expires.
    #[arg(long, env = "LETSMEET_REPORT_WINDOW_SECS", default_value_t = 600.0, value_parser = positive_secs)]
    pub report_window_secs: f64,

    /// Reports from this many distinct addresses (an IPv6 /64 counts once) within the
    /// report window ban the reported address: 1 h, then 24 h, then 7 days.
    #[arg(long, env = "LETSMEET_REPORT_THRESHOLD", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub report_threshold: u32,

    /// Hours a ban for a flagged camera lasts (repeat offenders get at least the
    /// report ladder's next step).
    #[arg(long, env = "LETSMEET_BAN_HOURS", default_value_t = 24.0, value_parser = positive_hours)]
    pub ban_hours: f64,

    /// Automated moderation of sampled video frames: `off`; `model`, the open_nsfw
    /// model run here (--moderation-model); `remote`, an HTTP classifier
    /// (--moderation-url); `test`, which flags frames that are mostly bright red (for
    /// tests and demos only).
    #[arg(long, env = "LETSMEET_MODERATION", value_enum, default_value_t = ModerationMode::Off)]
    pub moderation: ModerationMode,

    /// The open_nsfw ONNX model (`scripts/install.sh` fetches and checks it).
    #[arg(long, env = "LETSMEET_MODERATION_MODEL", default_value = "models/open_nsfw.onnx")]
    pub moderation_model: PathBuf,

    /// The remote classifier: frames are POSTed here as image/jpeg; it answers
    /// `{"score": 0.0..1.0}`. http:// only (put a TLS proxy beside it for https).
    #[arg(long, env = "LETSMEET_MODERATION_URL")]
    pub moderation_url: Option<String>,

    /// A frame scoring at least this is flagged (open_nsfw's authors: >= 0.8 unsafe).
    #[arg(long, env = "LETSMEET_MODERATION_THRESHOLD", default_value_t = 0.8, value_parser = unit_interval)]
    pub moderation_threshold: f32,

    /// Threads that classify frames. Inference never runs on the signaling threads;
    /// frames beyond what they can take are dropped and counted, never queued.
    #[arg(long, env = "LETSMEET_MODERATION_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub moderation_threads: u16,

    /// Frames waiting for a classifier thread; one more is answered "skipped".
    #[arg(long, env = "LETSMEET_MODERATION_QUEUE", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub moderation_queue: u16,

    /// Hold a video user's place in the queue until a frame of their own camera has
    /// passed (checked before they can meet anyone).
    #[arg(long, env = "LETSMEET_MODERATION_GATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub moderation_gate: bool,

    /// When a match's first sampled frame is taken: within this many milliseconds.
    #[arg(long, env = "LETSMEET_MODERATION_FIRST_MS", default_value_t = 4000)]
    pub moderation_first_ms: u32,

    /// Later frames: a random time between these two (milliseconds) apart.
    #[arg(long, env = "LETSMEET_MODERATION_EVERY_MS", value_delimiter = ',', default_values_t = [10_000u32, 30_000])]
    pub moderation_every_ms: Vec<u32>,

    /// Bearer token for the admin API on the metrics listener (`/admin/bans`). Without
    /// it the admin API is off.
    #[arg(long, env = "LETSMEET_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// HAProxy's runtime API (a stats socket: a Unix socket path, or host:port) whose
    /// ACL file --haproxy-ban-file this node keeps equal to the ban set.
    #[arg(long, env = "LETSMEET_HAPROXY_SOCKET")]
    pub haproxy_socket: Option<String>,

    /// The ACL file HAProxy's `tcp-request connection reject if { src -f FILE }`
    /// reads: named exactly as in haproxy.cfg, and rewritten so that a reload keeps
    /// the bans.
    #[arg(long, env = "LETSMEET_HAPROXY_BAN_FILE")]
    pub haproxy_ban_file: Option<PathBuf>,

    /// Open TCP connections per client address, of any kind (pages, assets, sockets);
    /// one over it is closed before a byte is read. IPv6 addresses count by their /64.
    /// Must be at least --max-conn-per-ip. Default: 64, or twice --max-conn-per-ip if
    /// that is more.
    #[arg(long, env = "LETSMEET_MAX_SOCKETS_PER_IP")]
    pub max_sockets_per_ip: Option<u32>,

    /// Seconds a client has to send a complete request header; also the longest a
    /// keep-alive connection may sit idle between requests.
    #[arg(long, env = "LETSMEET_HEADER_TIMEOUT_SECS", default_value_t = 10.0, value_parser = positive_secs)]
    pub header_timeout_secs: f64,

    /// Where `/metrics` (Prometheus) is served: its own listener, loopback by default,
    /// never the public port. `off` serves no metrics.
    #[arg(long, env = "LETSMEET_METRICS_BIND", default_value = "127.0.0.1:9187", value_parser = metrics_bind)]
    pub metrics_bind: MetricsBind,

    /// IP database (MaxMind format, with a `country_code` per range) that gives each
    /// connection's country: "only strangers from my country" then uses it, and the
    /// user's pick only for addresses it does not know. Read again on SIGHUP. Without
    /// it the user's pick is all there is. `scripts/install.sh` fetches one into
    /// node_modules/@ip-location-db/geo-whois-asn-country-mmdb/.
    #[arg(long, env = "LETSMEET_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// Load balancers (addresses or blocks, comma separated, e.g. 10.0.0.5,fd00::/8)
    /// whose connections start with a PROXY v2 header naming the client (HAProxy's
    /// `send-proxy-v2`). Caps, the IP database and bans then see the client's address.
    /// A connection from one of them without a valid header within 2 s is closed;
    /// anyone else's header is not read. Empty: clients connect directly. Name the
    /// balancers themselves, not a wide range: their connections hold no per-address
    /// slot until the header arrives.
    #[arg(long, env = "LETSMEET_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::proxy::Cidr>,

    /// Seconds between SIGTERM and closing the sockets: `/healthz` answers 503 at once,
    /// so a load balancer sends new users elsewhere, and the sockets are closed with
    /// 1012 (reconnect) only after this (set it above the balancer's health-check
    /// interval times its `fall` count). 0 without a balancer.
    #[arg(long, env = "LETSMEET_DRAIN_DELAY_SECS", default_value_t = 0.0, value_parser = non_negative_secs)]
    pub drain_delay_secs: f64,

    /// Cluster mode: the Redis that the nodes and the matcher service share (e.g.
    /// `redis://127.0.0.1:6379`). Run the `matcher` service against the same Redis.
    /// Without it, one process serves everything in memory.
    #[arg(long, env = "LETSMEET_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Cluster mode: seconds Redis may stay unreachable before this node closes every
    /// socket with 1012 (its clients reconnect to a healthy node) and exits.
    #[arg(long, env = "LETSMEET_REDIS_TIMEOUT_SECS", default_value_t = 10.0, value_parser = positive_secs)]
    pub redis_timeout_secs: f64,

    /// WebSocket read/write buffer size in bytes. Small, because signaling messages are
    /// small and idle sockets dominate memory; larger messages are read in several steps.
    #[arg(long, env = "LETSMEET_WS_BUFFER_BYTES", default_value_t = 1024)]
    pub ws_buffer_bytes: usize,
}

/// The `--metrics-bind` value: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsBind(pub Option<SocketAddr>);

fn metrics_bind(s: &str) -> Result<MetricsBind, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(MetricsBind(None));
    }
    s.parse()
        .map(|a| MetricsBind(Some(a)))
        .map_err(|_| format!("`{s}` is neither an address like 127.0.0.1:9187 nor `off`"))
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses the TURN secret without ever echoing it: clap's usual "invalid value"
/// message would print the rejected secret to the terminal and the service's logs.
#[derive(Clone, Copy, Debug)]
struct TurnSecretParser;

impl clap::builder::TypedValueParser for TurnSecretParser {
    type Value = crate::ice::TurnSecret;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        value.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                "the TURN secret must be UTF-8 with at least 16 characters (the value is not shown)\n",
            )
            .with_cmd(cmd)
        })
    }
}

fn positive_hours(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of hours"))?;
    if !(v.is_finite() && v > 0.0 && v <= 24.0 * 365.0) {
        return Err(format!("`{s}` is out of range (more than 0, at most a year)"));
    }
    Ok(v)
}

fn unit_interval(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!("`{s}` must be more than 0 and at most 1"));
    }
    Ok(v)
}

/// Which classifier moderates frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModerationMode {
    Off,
    Model,
    Remote,
    Test,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    let v = non_negative_secs(s)?;
    if v == 0.0 { Err("must be greater than 0".into()) } else { Ok(v) }
}

fn non_negative_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&v) {
        return Err(format!("`{s}` is out of range (0 to one year)"));
    }
    Ok(v)
}

impl Config {
    /// A configuration with every default, as if no flag were given (for tests).
    pub fn defaults() -> Self {
        Self::parse_from(["server"])
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.grace_secs)
    }

    pub fn interest_fallback(&self) -> Duration {
        Duration::from_secs_f64(self.interest_fallback_secs)
    }

    pub fn rematch_cooldown(&self) -> Duration {
        Duration::from_secs_f64(self.rematch_cooldown_secs)
    }

    /// Worker threads for the runtime (see the flag).
    pub fn worker_threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
            usize::from,
        )
    }

    /// Sessions one address may hold (see the flag).
    pub fn max_sessions_per_ip(&self) -> usize {
        self.max_sessions_per_ip.unwrap_or((self.max_conn_per_ip as usize).saturating_mul(2))
    }

    /// Checks what no single flag's parser can: combinations, and values set in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.turn_urls.is_empty() && self.turn_secret.is_none() {
            return Err(ConfigError::TurnWithoutSecret);
        }
        if (self.outbox_bytes as usize) < self.max_frame_bytes {
            return Err(ConfigError::OutboxBelowFrame);
        }
        for (value, flag) in [
            (self.rate_per_sec, "--rate-per-sec"),
            (self.rate_burst, "--rate-burst"),
            (self.max_conn_per_ip, "--max-conn-per-ip"),
            (self.max_connections, "--max-connections"),
            (self.outbox, "--outbox"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        if self.max_sockets_per_ip() < self.max_conn_per_ip {
            return Err(ConfigError::SocketsBelowConnections);
        }
        if self.moderation == ModerationMode::Remote && self.moderation_url.is_none() {
            return Err(ConfigError::RemoteWithoutUrl);
        }
        if !matches!(self.moderation_every_ms[..], [low, high] if low > 0 && low <= high) {
            return Err(ConfigError::SamplingRange);
        }
        if self.haproxy_socket.is_some() != self.haproxy_ban_file.is_some() {
            return Err(ConfigError::HaproxyHalf);
        }
        if self.max_frame_bytes == 0 || self.ws_buffer_bytes == 0 || self.max_sessions_per_ip() == 0 {
            return Err(ConfigError::Zero("--max-frame-bytes, --ws-buffer-bytes and --max-sessions-per-ip"));
        }
        Ok(())
    }

    /// TCP connections one address may hold (see the flag).
    pub fn max_sockets_per_ip(&self) -> u32 {
        self.max_sockets_per_ip.unwrap_or(self.max_conn_per_ip.saturating_mul(2).max(64))
    }

    /// How long bans last.
    pub fn ban_policy(&self) -> crate::bans::BanPolicy {
        crate::bans::BanPolicy { model: Duration::from_secs_f64(self.ban_hours * 3600.0), ..Default::default() }
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout_secs)
    }

    /// At least 30 ms, so that the ping interval (a third of it) is never zero.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_secs).max(Duration::from_millis(30))
    }
}

/// A configuration that cannot work.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// TURN URLs were given without the secret their credentials are made with.
    #[error("--turn-urls needs --turn-secret (or LETSMEET_TURN_SECRET): TURN without credentials is useless")]
    TurnWithoutSecret,
    /// The outbox could never hold a peer's largest message.
    #[error("--outbox-bytes must be at least --max-frame-bytes, or a peer's largest message could never be delivered")]
    OutboxBelowFrame,
    /// An address could hold fewer TCP connections than WebSockets.
    #[error("--max-sockets-per-ip must be at least --max-conn-per-ip (every WebSocket is a TCP connection)")]
    SocketsBelowConnections,
    #[error("--moderation remote needs --moderation-url")]
    RemoteWithoutUrl,
    #[error("--moderation-every-ms takes two numbers of milliseconds, the first above 0 and not above the second")]
    SamplingRange,
    #[error("--haproxy-socket and --haproxy-ban-file go together")]
    HaproxyHalf,
    /// A count that must be at least 1.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl From<&Config> for HubConfig {
    fn from(c: &Config) -> Self {
        HubConfig {
            grace: c.grace(),
            interest_fallback: c.interest_fallback(),
            rematch_cooldown: c.rematch_cooldown(),
            inbox: InboxLimits {
                signals: c.signal_buffer,
                signal_bytes: c.signal_buffer_bytes,
                missed_chat: c.missed_chat,
                missed_chat_bytes: crate::hub::config::MISSED_CHAT_BYTES,
            },
            ice: IceConfig {
                stun_urls: c.stun_urls.clone(),
                turn_urls: c.turn_urls.clone(),
                secret: c.turn_secret.clone(),
                ttl: Duration::from_secs(c.turn_ttl_secs),
            },
            online_interval: Duration::from_secs_f64(c.online_interval_secs),
            max_sessions_per_ip: c.max_sessions_per_ip(),
            avoid_limit: crate::hub::config::AVOID_LIMIT,
            message_rate: crate::hub::budget::Rate::per_second(c.rate_per_sec, c.rate_burst),
            resume_rate: crate::hub::config::RESUME_RATE,
            join_rate: crate::hub::budget::Rate::per_second(c.joins_per_sec, c.join_burst),
            ready_timeout: crate::hub::config::READY_TIMEOUT,
            report_window: Duration::from_secs_f64(c.report_window_secs),
            report_threshold: c.report_threshold,
            moderation: (c.moderation != ModerationMode::Off).then(|| protocol::Moderation {
                path: crate::moderation::FRAME_PATH.into(),
                size: crate::moderation::FRAME_SIZE,
                first_ms: c.moderation_first_ms,
                // Two values, the first not above the second (`Config::validate`).
                every_ms: match c.moderation_every_ms[..] {
                    [low, high] => [low, high],
                    _ => [10_000, 30_000],
                },
                gate: c.moderation_gate,
            }),
            // A cluster's sessions can be resumed on another node.
            snapshots: c.redis_url.is_some(),
        }
    }
}

impl From<&Config> for WsSettings {
    /// Zero rates (refused by [`Config::validate`]) become 1.
    fn from(c: &Config) -> Self {
        let at_least_one = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        WsSettings {
            allowed_origins: c.allowed_origins.clone(),
            max_frame_bytes: c.max_frame_bytes,
            buffer_bytes: c.ws_buffer_bytes,
            outbox: c.outbox as usize,
            outbox_bytes: c.outbox_bytes as usize,
            rate_per_sec: at_least_one(c.rate_per_sec),
            rate_burst: at_least_one(c.rate_burst),
            flood_strikes: c.flood_strikes,
            idle_timeout: c.idle_timeout(),
            // A client owes its first message as promptly as its request header.
            hello_timeout: c.header_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_combinations_that_cannot_work() {
        assert_eq!(Config::defaults().validate(), Ok(()));
        let mut c = Config::defaults();
        c.turn_urls = vec!["turn:x".into()];
        assert_eq!(c.validate(), Err(ConfigError::TurnWithoutSecret));
        let mut c = Config::defaults();
        c.outbox_bytes = 1000;
        assert_eq!(c.validate(), Err(ConfigError::OutboxBelowFrame));
        let mut c = Config::defaults();
        c.max_conn_per_ip = 100;
        assert_eq!(c.max_sockets_per_ip(), 200, "the default follows --max-conn-per-ip");
        c.max_sockets_per_ip = Some(99);
        assert_eq!(c.validate(), Err(ConfigError::SocketsBelowConnections));
        let mut c = Config::defaults();
        c.max_conn_per_ip = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("--max-conn-per-ip")));
    }

    #[test]
    fn moderation_flags_are_checked() {
        let parse = |args: &[&str]| Config::try_parse_from([&["server"], args].concat());
        let c = parse(&["--moderation", "test", "--moderation-every-ms", "1500,2500"]).unwrap();
        assert_eq!((c.validate(), c.moderation_every_ms.as_slice()), (Ok(()), &[1500, 2500][..]));
        assert_eq!(HubConfig::from(&c).moderation.map(|m| m.every_ms), Some([1500, 2500]));
        for bad in ["2500,1500", "0,10", "1,2,3", "5"] {
            let c = parse(&["--moderation-every-ms", bad]).unwrap();
            assert_eq!(c.validate(), Err(ConfigError::SamplingRange), "{bad}");
        }
        assert_eq!(parse(&["--moderation", "remote"]).unwrap().validate(), Err(ConfigError::RemoteWithoutUrl));
        assert_eq!(parse(&["--haproxy-socket", "/run/x.sock"]).unwrap().validate(), Err(ConfigError::HaproxyHalf));
        assert!(parse(&["--moderation", "sometimes"]).is_err());
        assert!(parse(&["--moderation-threshold", "1.5"]).is_err());
        assert!(HubConfig::from(&Config::defaults()).moderation.is_none(), "off by default");
    }

    #[test]
    fn sessions_per_address_default_to_twice_the_connection_cap() {
        let mut c = Config::defaults();
        c.max_conn_per_ip = 7;
        assert_eq!(HubConfig::from(&c).max_sessions_per_ip, 14);
        c.max_sessions_per_ip = Some(3);
        assert_eq!(HubConfig::from(&c).max_sessions_per_ip, 3);
    }
}
