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
}

impl NodeProcess {
    pub async fn start(redis: &Redis, extra: &[&str]) -> Self {
        let addr = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--bind", &addr.to_string(), "--metrics-bind", "off", "--log", "warn"])
            .args(["--redis-url", &redis.url(), "--max-conn-per-ip", "10000"])
            .args(["--leptos-config", concat!(env!("CARGO_MANIFEST_DIR"), "/../Leptos.toml")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server binary starts");
        let node = Self { child, addr };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
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
