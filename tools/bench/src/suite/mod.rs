//! The benchmark suite (the `bench-suite` binary; `benches/run.sh` runs it): every
//! section, tower-sse side by side with axum, warp and the floors, written to
//! `benches/results/results.json` and, made from that, `results.md`. Each server is a
//! child process (`fanout-server`); the load runs in this process or, for idle memory,
//! in `loadgen --hold` child processes; burst and encode are criterion benches.

mod child;
mod criterion;
mod idle;
mod sections;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::loadgen::seconds;
use crate::results::{Meta, Results};
use crate::{markdown, proc};

/// The sections, in the order they run.
pub const SECTIONS: [&str; 8] =
    ["fanout", "churn", "redis", "high-rate", "compression", "idle", "burst", "encode"];

/// The command line of `bench-suite`: the full sizes, `--smoke` for tiny ones.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "bench-suite", about = "tower-sse's benchmark suite")]
pub struct Args {
    /// Tiny sizes, a few seconds a section: keeps the tools from rotting.
    #[arg(long)]
    pub smoke: bool,
    /// Run these sections alone; the files are then `results-<sections>.{json,md}`.
    #[arg(long, value_delimiter = ',', value_parser = SECTIONS)]
    pub only: Option<Vec<String>>,
    /// Sections to leave out.
    #[arg(long, value_delimiter = ',', value_parser = SECTIONS)]
    pub skip: Vec<String>,
    /// Fan-out: subscribers at each step.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,15000")]
    pub steps: Vec<usize>,
    /// Fan-out: rounds (each figure is the median of the rounds).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of each measuring window.
    #[arg(long, value_parser = seconds, default_value = "6")]
    pub window: Duration,
    /// High rate: subscribers at each step.
    #[arg(long, value_delimiter = ',', default_value = "500,2000")]
    pub high_rate_steps: Vec<usize>,
    /// Idle memory: streams at each size, in one server process.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,19000")]
    pub idle_sizes: Vec<usize>,
    /// Idle memory: streams per load generator process.
    #[arg(long, default_value_t = 9_500)]
    pub idle_per_process: usize,
    /// Idle memory: seconds of the CPU window with every stream open.
    #[arg(long, value_parser = seconds, default_value = "32")]
    pub idle_window: Duration,
    /// Idle memory of a server already running at this event stream URL instead.
    #[arg(long, requires = "idle_pid")]
    pub idle_url: Option<String>,
    /// The process id of the server at `--idle-url`.
    #[arg(long, requires = "idle_url")]
    pub idle_pid: Option<u32>,
    /// Where the results go (default: benches/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the Markdown of this results JSON, next to it, and nothing else.
    #[arg(long)]
    pub render: Option<PathBuf>,
    /// The command to name in the results.
    #[arg(long, default_value = "benches/run.sh")]
    pub command: String,
}

/// What a run does: `args`, and the sizes `args` do not set.
#[derive(Clone, Debug)]
pub struct Config {
    pub args: Args,
    /// Before each window.
    pub(crate) settle: Duration,
    /// Churn: workers and seconds.
    pub(crate) churn: (usize, Duration),
    pub(crate) redis: usize,
    /// Aircraft topics, and reports per second of each.
    pub(crate) aircraft: (u64, f64),
    pub(crate) compression: usize,
    pub(crate) burst_events: u64,
}

impl Config {
    /// The full sizes, or with `--smoke` tiny ones (more than one idle load generator
    /// process even so).
    pub fn new(mut args: Args) -> Config {
        let smoke = args.smoke;
        if smoke {
            (args.steps, args.rounds, args.window) = (vec![20], 1, Duration::from_millis(500));
            (args.high_rate_steps, args.idle_sizes) = (vec![20], vec![10, 30]);
            (args.idle_per_process, args.idle_window) = (20, Duration::from_millis(300));
        }
        let ms = |full, tiny| Duration::from_millis(if smoke { tiny } else { full });
        Config {
            settle: ms(2_000, 100),
            churn: (if smoke { 4 } else { 64 }, ms(10_000, 500)),
            redis: if smoke { 20 } else { 1_000 },
            aircraft: if smoke { (32, 5.0) } else { (320, 1.0) },
            compression: if smoke { 10 } else { 1_000 },
            burst_events: if smoke { 2_000 } else { 1_000_000 },
            args,
        }
    }

    /// Whether `section` runs.
    pub fn runs(&self, section: &str) -> bool {
        match &self.args.only {
            Some(only) => only.iter().any(|s| s == section),
            None => !self.args.skip.iter().any(|s| s == section),
        }
    }

    /// Progress on stderr, unless at smoke size.
    pub(crate) fn say(&self, text: &str) {
        if !self.args.smoke {
            eprintln!("suite: {text}");
        }
    }

    /// The path of a binary next to this one (`fanout-server`, `loadgen`).
    pub(crate) fn tool(&self, name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap_or_default();
        exe.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the sections, writes `<stem>.json` and, from it, `<stem>.md`; returns the latter.
pub fn run(config: &Config) -> Result<String, String> {
    let mut git = std::process::Command::new("git");
    let git = git.args(["rev-parse", "--short", "HEAD"]).current_dir(root()).output();
    let commit = git.map_or("?".into(), |o| String::from_utf8_lossy(&o.stdout).trim().into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut results = Results {
        meta: Meta {
            date: httpdate::fmt_http_date(SystemTime::now()),
            commit,
            command: config.args.command.clone(),
            machine: format!("{cores} cores, {}", proc::cpu_model()),
            open_files: proc::open_files_limit(),
            load_before: proc::load_average(),
            load_after: String::new(),
        },
        ..Results::default()
    };
    sections::run(config, &mut results)?;
    if config.runs("idle") {
        results.idle = idle::run(config)?;
    }
    if config.runs("burst") {
        config.say("burst (criterion)");
        let events = config.burst_events;
        let env = [("BURST_EVENTS", events.to_string())];
        let runs = criterion::run("burst", config.args.smoke, &env)?;
        results.burst = runs.into_iter().map(|(_, s, ns)| (s, events as f64 * 1e9 / ns)).collect();
    }
    if config.runs("encode") {
        config.say("encode (criterion)");
        results.encode = criterion::run("encode", config.args.smoke, &[])?;
    }
    results.meta.load_after = proc::load_average();
    let out = config.args.out.clone().unwrap_or_else(|| root().join("benches/results"));
    let stem =
        config.args.only.as_ref().map_or("results".into(), |o| format!("results-{}", o.join("-")));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = out.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&json, text).map_err(|e| format!("{}: {e}", json.display()))?;
    render(&json)
}

/// Writes the Markdown of a results JSON next to it; returns it.
pub fn render(json: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?;
    let results = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let (md, path) = (markdown::render(&results), json.with_extension("md"));
    std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(md)
}
