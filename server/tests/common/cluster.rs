//! A real cluster on loopback: redis-server, matcher processes and server nodes.

use super::{TestServer, config};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A redis-server of its own (no persistence), stopped when dropped.
pub struct Redis {
    child: Child,
    pub addr: SocketAddr,
}

impl Redis {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Kills the server (SIGKILL) and starts an empty one on the same port.
    pub async fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let fresh = Self::start_on(self.addr).await;
        // Swap in the new process; the old handle (already reaped) is dropped.
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
    }

    async fn start_on(addr: SocketAddr) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string(), "--save", "", "--appendonly", "no"])
            // DEBUG SLEEP freezes the server in a fault test (loopback only).
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) is installed; scripts/install.sh installs it");
        let redis = Self { child, addr };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut con) = redis.connection().await
                && redis::cmd("PING").query_async::<String>(&mut con).await.is_ok()
            {
                return redis;
            }
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not answer on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?.get_multiplexed_async_connection().await
    }

    /// A string key's value.
    pub async fn get(&self, key: &str) -> Option<String> {
        let mut con = self.connection().await.ok()?;
        redis::cmd("GET").arg(key).query_async(&mut con).await.ok().flatten()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `matcher` binary, built next to this test binary by `cargo test --workspace`.
fn matcher_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = dir.join(format!("matcher{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p matcher --features service`", bin.display());
    bin
}

/// A matcher service process, killed when dropped. Its log goes to a file.
pub struct MatcherProcess {
    child: Child,
    pub log: PathBuf,
}

impl MatcherProcess {
    pub fn start(redis: &Redis, lease_ms: u64, interest_fallback_secs: f64) -> Self {
        let log = std::env::temp_dir().join(format!("letsmeet-matcher-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(matcher_bin())
            .args(["--redis-url", &redis.url(), "--lease-ms", &lease_ms.to_string()])
            .args(["--interest-fallback-secs", &interest_fallback_secs.to_string(), "--log", "info"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the matcher binary starts");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether this process holds the lease now.
    pub async fn is_active(&self, redis: &Redis) -> bool {
        redis.get(matcher::store::LEASE).await.is_some_and(|holder| holder.starts_with(&format!("{}-", self.pid())))
    }

    /// Waits until this process holds the lease.
    pub async fn wait_active(&self, redis: &Redis, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.is_active(redis).await {
            assert!(tokio::time::Instant::now() < deadline, "matcher {} did not take the lease", self.pid());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MatcherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of matcher {} ---\n{}", self.pid(), self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A server node of the cluster on `redis`.
pub async fn node(redis: &Redis) -> TestServer {
    let mut c = config();
    c.redis_url = Some(redis.url());
    TestServer::start(c).await
}

/// A server node as its own process (so it can be killed with SIGKILL), on `redis`.
pub struct NodeProcess {
    child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
}

impl NodeProcess {
    pub async fn start(redis: &Redis, extra: &[&str]) -> Self {
        let (addr, metrics) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--bind", &addr.to_string(), "--metrics-bind", &metrics.to_string(), "--log", "warn"])
            .args(["--redis-url", &redis.url(), "--max-conn-per-ip", "10000"])
            .args(["--leptos-config", concat!(env!("CARGO_MANIFEST_DIR"), "/../Leptos.toml")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server binary starts");
        let node = Self { child, addr, metrics };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(metrics).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "node on {addr} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn resume_url(&self, token: &protocol::ResumeToken) -> String {
        format!("{}?resume={token}", self.url())
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// A gauge from the node's `/metrics` (0 when absent).
    pub async fn gauge(&self, name: &str) -> f64 {
        let text = super::http_get(self.metrics, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits for the process to end by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Paths of a balancer's runtime API socket and ban list, in a folder of its own.
#[derive(Clone, Debug)]
pub struct HaproxyFiles {
    pub admin: PathBuf,
    pub ban_file: PathBuf,
    dir: PathBuf,
}

/// HAProxy running `deploy/haproxy.cfg` in front of three nodes, stopped when dropped.
pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
    /// Its runtime API socket and ban ACL file (for `--haproxy-socket` and
    /// `--haproxy-ban-file`), in a folder removed with it.
    pub admin: PathBuf,
    pub ban_file: PathBuf,
    dir: PathBuf,
}

impl Haproxy {
    /// Where a balancer will keep its runtime API socket and ban list (created empty),
    /// for the nodes' flags, before it starts.
    pub fn files() -> HaproxyFiles {
        let dir = std::env::temp_dir().join(format!("letsmeet-haproxy-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let files = HaproxyFiles { admin: dir.join("admin.sock"), ban_file: dir.join("banned.lst"), dir };
        std::fs::write(&files.ban_file, "").expect("an empty ban list");
        files
    }

    /// Starts it and waits until its health checks have found every node up.
    pub async fn start(nodes: [SocketAddr; 3]) -> Self {
        Self::start_with(Self::files(), nodes).await
    }

    /// [`Haproxy::start`] with its files made beforehand.
    pub async fn start_with(files: HaproxyFiles, nodes: [SocketAddr; 3]) -> Self {
        let addr = free_port();
        let HaproxyFiles { admin, ban_file, dir } = files;
        let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/haproxy.cfg");
        let child = Command::new("haproxy")
            .args(["-f", conf, "-db"])
            .env("LETSMEET_LB_BIND", addr.to_string())
            .env("LETSMEET_LB_ADMIN", &admin)
            .env("LETSMEET_LB_BANS", &ban_file)
            .env("LETSMEET_NODE1", nodes[0].to_string())
            .env("LETSMEET_NODE2", nodes[1].to_string())
            .env("LETSMEET_NODE3", nodes[2].to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (Debian package haproxy) is installed; scripts/install.sh installs it");
        let lb = Self { child, addr, admin, ban_file, dir };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !try_get(addr, "/healthz").await.starts_with("HTTP/1.1 200") {
            assert!(tokio::time::Instant::now() < deadline, "HAProxy never passed a request on");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // `rise 2` at 1 s intervals: every node is in rotation after about 2 s.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        lb
    }

    /// A WebSocket through the balancer from the loopback address `from`, resuming
    /// `token` if given; `None` if the balancer could not reach a node this time.
    pub async fn connect(&self, from: [u8; 4], token: Option<&protocol::ResumeToken>) -> Option<super::Client> {
        let stream = super::tcp_from(from, self.addr).await;
        let url = match token {
            Some(t) => format!("ws://{}/ws?resume={t}", self.addr),
            None => format!("ws://{}/ws", self.addr),
        };
        let (ws, _) =
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.ok()?;
        Some(super::Client::after_upgrade(ws).await)
    }

    /// Connects (again and again, while the balancer has yet to notice a node is
    /// gone) until a node welcomes the client.
    pub async fn reconnect(&self, from: [u8; 4], token: &protocol::ResumeToken) -> super::Client {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(c) = self.connect(from, Some(token)).await {
                return c;
            }
            assert!(tokio::time::Instant::now() < deadline, "no node took the reconnect through HAProxy");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `GET`; the whole response, or "" if the connection failed or was cut.
async fn try_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { return String::new() };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut body)).await;
    String::from_utf8_lossy(&body).into_owned()
}
