//! What the kernel says about this process and the machine: `/proc`, read through the
//! `procfs` crate.

use procfs::Current;
use procfs::process::{LimitValue, Process};
use serde::Serialize;

/// CPU time, memory and write system calls of this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// CPU time of all threads, nanoseconds: the sum of their `schedstat` run times
    /// (finer than `stat`'s clock ticks, which it falls back to).
    pub cpu_ns: u64,
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Write system calls (`write`, `writev`, ...) so far: `syscw` of `/proc/PID/io`.
    pub syscw: Option<u64>,
}

/// This process now.
pub fn usage() -> Usage {
    let Ok(me) = Process::myself() else {
        return Usage::default();
    };
    let run_time: u64 = me.tasks().map_or(0, |tasks| {
        tasks
            .flatten()
            .filter_map(|task| task.schedstat().ok())
            .map(|s| s.sum_exec_runtime)
            .sum()
    });
    let cpu_ns = if run_time > 0 {
        run_time
    } else {
        me.stat().map_or(0, |s| {
            (s.utime + s.stime) * 1_000_000_000 / procfs::ticks_per_second()
        })
    };
    Usage {
        cpu_ns,
        rss_kib: me.status().ok().and_then(|s| s.vmrss).unwrap_or(0),
        syscw: me.io().ok().map(|io| io.syscw),
    }
}

/// CPU time of the calling thread so far, nanoseconds (`CLOCK_THREAD_CPUTIME_ID`):
/// unlike wall time, not stretched by other processes on a shared machine, and unlike
/// `/proc`'s figures, not rounded to the scheduler's tick.
pub fn thread_cpu_ns() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call to fill.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (status == 0).then(|| now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}

/// The machine, for the report: load average, CPU model, cores, open files per process.
pub fn load_average() -> String {
    procfs::LoadAverage::current().map_or("?".into(), |l| {
        format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen)
    })
}

/// The model name of the first CPU.
pub fn cpu_model() -> String {
    procfs::CpuInfo::current()
        .ok()
        .and_then(|c| c.model_name(0).map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The soft limit of open files of this process.
pub fn open_files_limit() -> String {
    match Process::myself().and_then(|p| p.limits()) {
        Ok(limits) => match limits.max_open_files.soft_limit {
            LimitValue::Value(n) => n.to_string(),
            LimitValue::Unlimited => "unlimited".into(),
        },
        Err(_) => "?".into(),
    }
}
