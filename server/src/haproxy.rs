//! Keeps HAProxy's ban ACL equal to the ban set, so that a banned address is refused
//! by the balancer itself (`tcp-request connection reject if { src -f FILE }`) and
//! never reaches a node.
//!
//! Through HAProxy's runtime API (its stats socket, `level admin`): each new ban is
//! added to the ACL at once (`del acl` then `add acl`, so an entry is never doubled),
//! each lifted or expired one deleted. Every 10 s, and whenever a command failed (the
//! balancer was restarting, say), the whole ACL is replaced in one atomic step
//! (`prepare acl` / `add acl @version` / `commit acl`). The file itself is rewritten
//! at each change, so that a reload or restart of HAProxy starts with the same bans.
//! In a cluster, every node with these flags does the same; the commands are
//! idempotent.

use crate::bans::{Bans, Change, block, unix_ms};
use crate::hub::HubHandle;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;

/// How often the whole ACL is replaced, whatever happened.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// Longest one runtime-API exchange may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries added per runtime-API connection in a full sync.
const CHUNK: usize = 200;

/// Runs until the hub stops. `socket`: a Unix socket path, or `host:port`.
pub async fn sync(bans: Arc<Bans>, socket: String, file: PathBuf, hub: HubHandle) {
    let api = Api { socket, acl: file.display().to_string() };
    let mut changes = bans.subscribe();
    let mut tick = tokio::time::interval(RESYNC_EVERY);
    loop {
        let full = tokio::select! {
            _ = hub.failed() => return,
            _ = tick.tick() => true,
            change = changes.recv() => match change {
                // Evidence is no change to the list.
                Ok(Change::Marked(_)) => continue,
                Ok(change) => {
                    let blocks = bans.list(unix_ms()).iter().map(|b| b.block()).collect::<Vec<_>>();
                    write_file(&file, &blocks).await;
                    // `del acl` of an entry that is not there answers "Key not found":
                    // not a failure here.
                    let done = match change {
                        Change::Added { ban, .. } => match api.delete(&ban.block()).await {
                            Ok(()) => api.run(&format!("add acl {} {}", api.acl, ban.block())).await.map(drop),
                            Err(e) => Err(e),
                        },
                        Change::Lifted { key, .. } | Change::Expired { key } => api.delete(&block(key)).await,
                        Change::Marked(_) => Ok(()),
                    };
                    match done {
                        Ok(_) => false,
                        Err(e) => {
                            tracing::warn!("HAProxy's ban ACL not updated ({e:#}); replacing it whole");
                            true
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
        };
        if full {
            let blocks = bans.list(unix_ms()).iter().map(|b| b.block()).collect::<Vec<_>>();
            write_file(&file, &blocks).await;
            if let Err(e) = api.replace(&blocks).await {
                tracing::warn!("cannot replace HAProxy's ban ACL: {e:#}");
            }
        }
    }
}

/// Writes `blocks` to `file` (a new file renamed over the old one, so HAProxy never
/// reads half of it).
async fn write_file(file: &Path, blocks: &[String]) {
    let mut text = String::from("# Banned addresses, kept by Let'sMeet: do not edit (lift bans on the admin API).\n");
    for b in blocks {
        text.push_str(b);
        text.push('\n');
    }
    let tmp = file.with_extension("tmp");
    let written = async {
        tokio::fs::write(&tmp, text).await?;
        tokio::fs::rename(&tmp, file).await
    };
    if let Err(e) = written.await {
        tracing::warn!("cannot write the ban list {}: {e}", file.display());
    }
}

/// HAProxy's runtime API.
struct Api {
    socket: String,
    /// The ACL's name: its file, exactly as haproxy.cfg names it.
    acl: String,
}

impl Api {
    /// Sends `command` (several may be joined with `;`) and returns the answer.
    async fn run(&self, command: &str) -> anyhow::Result<String> {
        let exchange = async {
            let mut answer = String::new();
            if self.socket.contains('/') {
                #[cfg(unix)]
                {
                    let mut s = tokio::net::UnixStream::connect(&self.socket).await?;
                    s.write_all(format!("{command}\n").as_bytes()).await?;
                    s.read_to_string(&mut answer).await?;
                }
                #[cfg(not(unix))]
                bail!("Unix sockets are not available here");
            } else {
                let mut s = tokio::net::TcpStream::connect(&self.socket).await?;
                s.write_all(format!("{command}\n").as_bytes()).await?;
                s.read_to_string(&mut answer).await?;
            }
            anyhow::Ok(answer)
        };
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .context("HAProxy's runtime API did not answer in time")?
            .with_context(|| format!("HAProxy's runtime API at {}", self.socket))?;
        let lower = answer.to_ascii_lowercase();
        if ["unknown", "denied", "not found", "error", "can't", "cannot"].iter().any(|w| lower.contains(w)) {
            bail!("HAProxy answered: {}", answer.trim());
        }
        Ok(answer)
    }

    /// Deletes every entry for `pattern` (none is fine).
    async fn delete(&self, pattern: &str) -> anyhow::Result<()> {
        match self.run(&format!("del acl {} {pattern}", self.acl)).await {
            Err(e) if e.to_string().to_ascii_lowercase().contains("key not found") => Ok(()),
            other => other.map(drop),
        }
    }

    /// Replaces the ACL's entries with `blocks` in one step.
    async fn replace(&self, blocks: &[String]) -> anyhow::Result<()> {
        let prepared = self.run(&format!("prepare acl {}", self.acl)).await?;
        let version = prepared
            .split(|c: char| !c.is_ascii_digit())
            .rfind(|s| !s.is_empty())
            .with_context(|| format!("unexpected answer to prepare acl: {}", prepared.trim()))?
            .to_string();
        for chunk in blocks.chunks(CHUNK) {
            let adds: Vec<String> = chunk.iter().map(|b| format!("add acl @{version} {} {b}", self.acl)).collect();
            self.run(&adds.join(";")).await?;
        }
        self.run(&format!("commit acl @{version} {}", self.acl)).await?;
        Ok(())
    }
}
