//! The hub: sessions, matches and relay, as a sans-IO core behind a tokio shell.
//!
//! Layout, each file one job, each importing only files above it in this list:
//! - [`budget`] — token buckets on the core's clock (message and resume budgets).
//! - [`timers`] — per-side deadlines (`ready`, TURN refresh).
//! - [`model`] — plain data (session, side of a match, inbox, envelope).
//! - [`snapshot`] — a session's resumable state, for another node.
//! - [`backend`] — the seam a cluster plugs into: directory, bus, matchmaking, with
//!   in-memory implementations.
//! - [`io`] — the core's inputs and outputs.
//! - [`relay`] — the receiving session's inbox: send now, hold, or drop.
//! - [`config`] — the policy values.
//! - [`sessions`] — the registry: by id and socket, grace timers, per-address queues.
//! - [`matches`] — starting and ending one side of a match, avoid lists.
//! - [`moderation`] — reports.
//! - [`core`] — every protocol rule: `handle(input, now)`, `poll_output()`; one file
//!   each for connections, commands, matching and delivery.
//! - [`node`] — the core joined to its backend (still no I/O).
//! - [`conn`] — the shell's handle on a socket: bounded outbox, kill switch.
//! - [`exporter`] — the core's metrics onto Prometheus.
//! - [`shell`] — tokio: sockets, clock, timer; [`HubHandle`].

pub mod backend;
pub mod budget;
pub mod config;
pub mod conn;
pub mod core;
pub mod exporter;
pub mod io;
pub mod matches;
pub mod model;
pub mod moderation;
pub mod node;
pub mod relay;
pub mod sessions;
pub mod shell;
pub mod snapshot;
pub mod timers;

#[cfg(test)]
mod tests;

pub use config::HubConfig;
pub use core::{Counts, HubCore, IdSource};
pub use io::{Command, Dropped, Ended, Input, Metric, Output};
pub use model::{ConnId, Frame, RelayKind};
pub use node::{HubStats, Node};
pub use shell::{Epoch, HubGone, HubHandle, Step};
