//! What the kernel says about a process and the machine, through the `procfs` crate.

use procfs::Current;
use procfs::process::{LimitValue, Process};
use serde::{Deserialize, Serialize};

/// CPU time, memory and write system calls of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time of all threads, nanoseconds: the sum of their `schedstat` run times
    /// (finer than `stat`'s clock ticks, which it falls back to).
    pub cpu_ns: u64,
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Write system calls so far (`syscw` of `/proc/PID/io`: `write` and `writev`).
    pub syscw: u64,
}

impl Usage {
    /// Process `pid` now (0: this process); `None` once it is gone.
    pub fn of(pid: u32) -> Option<Usage> {
        let process = match pid {
            0 => Process::myself(),
            pid => Process::new(pid as i32),
        }
        .ok()?;
        let tasks = process.tasks().ok()?;
        let run_time: u64 = tasks
            .flatten()
            .filter_map(|task| task.schedstat().ok())
            .map(|s| s.sum_exec_runtime)
            .sum();
        let cpu_ns = match run_time {
            0 => process.stat().map_or(0, |s| {
                (s.utime + s.stime) * 1_000_000_000 / procfs::ticks_per_second()
            }),
            n => n,
        };
        Some(Usage {
            cpu_ns,
            rss_kib: process.status().ok()?.vmrss.unwrap_or(0),
            syscw: process.io().map_or(0, |io| io.syscw),
        })
    }

    /// The sum over `pids`; `None` if any is gone.
    pub fn sum(pids: &[u32]) -> Option<Usage> {
        pids.iter().try_fold(Usage::default(), |sum, &pid| {
            let u = Usage::of(pid)?;
            Some(Usage {
                cpu_ns: sum.cpu_ns + u.cpu_ns,
                rss_kib: sum.rss_kib + u.rss_kib,
                syscw: sum.syscw + u.syscw,
            })
        })
    }
}

/// The load average, `1 5 15` minutes.
pub fn load_average() -> String {
    procfs::LoadAverage::current().map_or("?".into(), |l| {
        format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen)
    })
}

/// The model name of the first CPU.
pub fn cpu_model() -> String {
    let info = procfs::CpuInfo::current().ok();
    let model = info.as_ref().and_then(|c| c.model_name(0));
    model.unwrap_or("?").to_string()
}

/// The soft limit of open files of this process.
pub fn open_files_limit() -> Option<u64> {
    let limits = Process::myself().and_then(|p| p.limits()).ok()?;
    match limits.max_open_files.soft_limit {
        LimitValue::Value(n) => Some(n),
        LimitValue::Unlimited => Some(u64::MAX),
    }
}
