//! What the kernel says about a process and the machine, through the `procfs` crate.

use procfs::Current;
use procfs::process::{LimitValue, Process};

/// CPU time (all threads: the sum of their `schedstat` run times, finer than `stat`'s
/// clock ticks), `VmRSS` and write system calls (`syscw` of `/proc/PID/io`: `write` and
/// `writev`) of one process or, summed, of several.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_ns: u64,
    pub rss_kib: u64,
    pub syscw: u64,
}

impl Usage {
    /// Process `pid` now (0: this process); `None` once it is gone.
    pub fn of(pid: u32) -> Option<Usage> {
        let process = if pid == 0 { Process::myself() } else { Process::new(pid as i32) }.ok()?;
        let tasks = process.tasks().ok()?.flatten().filter_map(|task| task.schedstat().ok());
        let cpu_ns = tasks.map(|s| s.sum_exec_runtime).sum();
        let (status, io) = (process.status().ok()?, process.io().ok());
        Some(Usage {
            cpu_ns,
            rss_kib: status.vmrss.unwrap_or(0),
            syscw: io.map_or(0, |io| io.syscw),
        })
    }

    /// The sum over `pids` (none: `None`; `None` too if any is gone).
    pub fn sum(pids: &[u32]) -> Option<Usage> {
        let mut all = pids.iter().map(|&pid| Usage::of(pid));
        let first = all.next()??;
        all.try_fold(first, |s, u| {
            let u = u?;
            Some(Usage {
                cpu_ns: s.cpu_ns + u.cpu_ns,
                rss_kib: s.rss_kib + u.rss_kib,
                syscw: s.syscw + u.syscw,
            })
        })
    }
}

/// The load average, `1 5 15` minutes.
pub fn load_average() -> String {
    let load = procfs::LoadAverage::current();
    load.map_or("?".into(), |l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
}

/// The model name of the first CPU.
pub fn cpu_model() -> String {
    let info = procfs::CpuInfo::current().ok();
    info.as_ref().and_then(|c| c.model_name(0)).unwrap_or("?").to_string()
}

/// The soft limit of open files of this process.
pub fn open_files_limit() -> Option<u64> {
    match Process::myself().and_then(|p| p.limits()).ok()?.max_open_files.soft_limit {
        LimitValue::Value(n) => Some(n),
        LimitValue::Unlimited => Some(u64::MAX),
    }
}
