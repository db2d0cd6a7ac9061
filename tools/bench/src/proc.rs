//! What the kernel says about a process and the machine, through the `procfs` crate.

use procfs::Current;
use procfs::process::{LimitValue, Process};

/// CPU time (all threads: the sum of their `schedstat` run times, finer than `stat`'s
/// clock ticks), `VmRSS` and write system calls (`syscw` of `/proc/PID/io`: `write` and
/// `writev`) of processes, summed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_ns: u64,
    pub rss_kib: u64,
    pub syscw: u64,
}

impl Usage {
    /// Processes `pids` now (0: this process), summed; `None` if there are none or one
    /// is gone.
    pub fn of(pids: &[u32]) -> Option<Usage> {
        let mut sum = Usage::default();
        for &pid in pids {
            let process = match pid {
                0 => Process::myself(),
                pid => Process::new(pid as i32),
            };
            let process = process.ok()?;
            let tasks = process.tasks().ok()?.flatten();
            let runs = tasks.filter_map(|task| task.schedstat().ok());
            sum.cpu_ns += runs.map(|s| s.sum_exec_runtime).sum::<u64>();
            sum.rss_kib += process.status().ok()?.vmrss.unwrap_or(0);
            sum.syscw += process.io().map_or(0, |io| io.syscw);
        }
        (!pids.is_empty()).then_some(sum)
    }
}

/// The load average, `1 5 15` minutes.
pub fn load_average() -> String {
    let load = procfs::LoadAverage::current();
    load.map_or("?".into(), |l| {
        format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen)
    })
}

/// The model name of the first CPU.
pub fn cpu_model() -> String {
    let info = procfs::CpuInfo::current().ok();
    info.as_ref()
        .and_then(|c| c.model_name(0))
        .unwrap_or("?")
        .into()
}

/// The soft limit of open files of this process.
pub fn open_files_limit() -> Option<u64> {
    match Process::myself()
        .ok()?
        .limits()
        .ok()?
        .max_open_files
        .soft_limit
    {
        LimitValue::Value(n) => Some(n),
        LimitValue::Unlimited => Some(u64::MAX),
    }
}
