//! The server's memory and CPU time, read from /proc.

use anyhow::Context;

/// Clock ticks per second in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct Process {
    pid: u32,
}

impl Process {
    pub fn new(pid: u32) -> anyhow::Result<Self> {
        let p = Self { pid };
        p.rss_bytes().with_context(|| format!("cannot read /proc/{pid}: is the server running?"))?;
        Ok(p)
    }

    /// Resident set size in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .context("no VmRSS line")?;
        Ok(kb * 1024)
    }

    /// User plus system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The command name (field 2) may contain spaces: count fields after its ')'.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11).context("no utime")?.parse()?;
        let stime: f64 = fields.get(12).context("no stime")?.parse()?;
        Ok((utime + stime) / USER_HZ)
    }
}
