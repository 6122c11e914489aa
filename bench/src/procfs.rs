//! CPU time and memory of a process, read from `/proc` (no extra tools needed).

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident memory now, and its peak so far (KiB).
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    /// The anonymous part of `rss_kib` (RssAnon: heap and stacks, without the program's code
    /// and other file pages).
    pub anon_kib: u64,
}

/// CPU use and memory of a process over a measurement window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Percent of one core over the window.
    pub cpu_percent: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    /// RssAnon at the end of the window (0 in results from before it was recorded).
    #[serde(default)]
    pub anon_kib: u64,
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        at,
        cpu_ticks: cpu_ticks(&stat)?,
        rss_kib: status_kib(&status, "VmRSS:")?,
        peak_rss_kib: status_kib(&status, "VmHWM:")?,
        anon_kib: status_kib(&status, "RssAnon:")?,
    })
}

/// Usage between two samples of the same process.
pub fn usage(start: &ProcSample, end: &ProcSample, ticks_per_second: u64) -> Usage {
    let wall = end.at.saturating_duration_since(start.at).as_secs_f64();
    let cpu = end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 / ticks_per_second.max(1) as f64;
    Usage {
        cpu_percent: if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 },
        rss_kib: end.rss_kib,
        peak_rss_kib: end.peak_rss_kib,
        anon_kib: end.anon_kib,
    }
}

/// What a process's memory grew by from `before_rss` / `before_anon` to `after` (KiB): its
/// anonymous part (RssAnon: heap and stacks) when both readings have it, else VmRSS (results
/// recorded before RssAnon was). The program's code, which VmRSS also counts, is paged in by
/// the first sessions once and does not grow with them (docs/benchmarks.md).
pub fn growth_kib(after: &Usage, before_rss: u64, before_anon: Option<u64>) -> i64 {
    let (after, before) = match before_anon {
        Some(before) if after.anon_kib > 0 => (after.anon_kib, before),
        _ => (after.rss_kib, before_rss),
    };
    after as i64 - before as i64
}

/// CPU time spent by every process on the machine (user, nice, system, irq, softirq, steal),
/// in clock ticks, from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum();
    Some(busy)
}

/// The kernel's clock tick rate for `/proc/<pid>/stat` times.
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime: fields 14 and 15, counted after the parenthesised command name (which may
/// itself contain spaces or parentheses).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_after_an_awkward_command_name() {
        let stat = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 170 30 0 0 20 0 1 0 100";
        assert_eq!(cpu_ticks(stat), Some(200));
    }

    #[test]
    fn reads_memory_from_status() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t   512 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "RssAnon:"), Some(512));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
    }

    #[test]
    fn samples_this_process() {
        let sample = sample(std::process::id()).expect("own /proc entry");
        assert!(sample.rss_kib > 0);
        assert!(sample.peak_rss_kib >= sample.rss_kib);
        assert!(sample.anon_kib > 0 && sample.anon_kib <= sample.rss_kib);
    }
}
