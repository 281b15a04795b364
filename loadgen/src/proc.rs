//! The server's memory and CPU time, read from /proc.

use anyhow::Context;

/// Clock ticks per second in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Most processes one measurement covers (a cluster: nodes, matchers, Redis).
pub const MAX_PROCESSES: usize = 8;

/// The server's processes: one, or every process of a cluster, whose memory and CPU
/// time are summed.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    pids: [u32; MAX_PROCESSES],
    len: usize,
}

impl Process {
    pub fn new(pids: &[u32]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_PROCESSES).contains(&pids.len()),
            "between 1 and {MAX_PROCESSES} --server-pid values, please"
        );
        let mut p = Self { pids: [0; MAX_PROCESSES], len: pids.len() };
        p.pids[..pids.len()].copy_from_slice(pids);
        for &pid in pids {
            rss_bytes(pid).with_context(|| format!("cannot read /proc/{pid}: is the server running?"))?;
        }
        Ok(p)
    }

    fn pids(&self) -> &[u32] {
        &self.pids[..self.len]
    }

    /// Resident set size in bytes, summed.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        self.pids().iter().map(|&pid| rss_bytes(pid)).sum()
    }

    /// User plus system CPU seconds used so far, summed.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        self.pids().iter().map(|&pid| cpu_seconds(pid)).sum()
    }
}

/// Resident set size in bytes.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .context("no VmRSS line")?;
        Ok(kb * 1024)
    }
}

/// User plus system CPU seconds used so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name (field 2) may contain spaces: count fields after its ')'.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11).context("no utime")?.parse()?;
        let stime: f64 = fields.get(12).context("no stime")?.parse()?;
        Ok((utime + stime) / USER_HZ)
    }
}
