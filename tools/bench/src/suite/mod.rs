//! The benchmark suite (the `bench-suite` binary; `benches/run.sh` runs it): every
//! section, tower-sse side by side with axum, warp and the two floors, written to
//! `benches/results/results.json` and, made from that, `results.md`. Each server is a
//! child process (`fanout-server`); the load runs in this process or, for idle memory,
//! in `loadgen --hold` child processes; burst runs in this process; encode is
//! criterion's `benches/encode.rs`.

mod child;
mod encode;
mod idle;
mod sections;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::loadgen::seconds;
use crate::results::{Meta, Results};
use crate::{markdown, proc};

/// The sections, in the order they run.
pub const SECTIONS: [&str; 8] = [
    "fanout",
    "churn",
    "redis",
    "high-rate",
    "compression",
    "burst",
    "idle",
    "encode",
];

/// The command line of `bench-suite`: the full sizes (or `--smoke`), then overrides.
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
    /// Fan-out: subscribers at each step (default 1000,5000,15000).
    #[arg(long, value_delimiter = ',')]
    pub steps: Option<Vec<usize>>,
    /// Fan-out: rounds; each figure is the median of the rounds (default 3).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds of each measuring window (default 6).
    #[arg(long, value_parser = seconds)]
    pub window: Option<Duration>,
    /// High rate: subscribers at each step (default 500,2000).
    #[arg(long, value_delimiter = ',')]
    pub high_rate_steps: Option<Vec<usize>>,
    /// Idle memory: streams at each size, in one server process (default
    /// 5000,10000,19000).
    #[arg(long, value_delimiter = ',')]
    pub idle_sizes: Option<Vec<usize>>,
    /// Idle memory: streams per load generator process (default 9500).
    #[arg(long)]
    pub idle_per_process: Option<usize>,
    /// Idle memory: seconds of the CPU window with every stream open (default 32: two
    /// heartbeats of 15 s).
    #[arg(long, value_parser = seconds)]
    pub idle_window: Option<Duration>,
    /// Idle memory of a server already running, at this event stream URL.
    #[arg(long, requires = "idle_pid")]
    pub idle_url: Option<String>,
    /// The process id of the server at `--idle-url`.
    #[arg(long, requires = "idle_url")]
    pub idle_pid: Option<u32>,
    /// Where the results go (default: benches/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the Markdown of this results JSON, next to it, and do nothing else.
    #[arg(long)]
    pub render: Option<PathBuf>,
    /// The command to name in the results.
    #[arg(long, default_value = "benches/run.sh")]
    pub command: String,
}

/// The sizes of one run: the full ones, or with `--smoke` tiny ones; then the overrides.
#[derive(Clone, Debug)]
pub struct Config {
    pub args: Args,
    pub(crate) window: Duration,
    pub(crate) settle: Duration,
    pub(crate) steps: Vec<usize>,
    pub(crate) rounds: usize,
    /// Churn: workers and seconds.
    pub(crate) churn: (usize, Duration),
    pub(crate) redis: usize,
    pub(crate) high_rate_steps: Vec<usize>,
    /// Aircraft topics and reports per second of each.
    pub(crate) aircraft: (u64, f64),
    pub(crate) compression: usize,
    /// Burst: events and runs.
    pub(crate) burst: (u64, usize),
    pub(crate) idle_sizes: Vec<usize>,
    pub(crate) idle_per_process: usize,
    pub(crate) idle_window: Duration,
}

impl Config {
    pub fn new(args: Args) -> Config {
        let smoke = args.smoke;
        let ms = |full, tiny| Duration::from_millis(if smoke { tiny } else { full });
        let n = |full: &[usize], tiny: &[usize]| if smoke { tiny.to_vec() } else { full.to_vec() };
        Config {
            window: args.window.unwrap_or(ms(6_000, 500)),
            settle: ms(2_000, 100),
            steps: args
                .steps
                .clone()
                .unwrap_or(n(&[1_000, 5_000, 15_000], &[20])),
            rounds: args.rounds.unwrap_or(n(&[3], &[1])[0]).max(1),
            churn: (n(&[64], &[4])[0], ms(10_000, 500)),
            redis: n(&[1_000], &[20])[0],
            high_rate_steps: args
                .high_rate_steps
                .clone()
                .unwrap_or(n(&[500, 2_000], &[20])),
            aircraft: if smoke { (32, 5.0) } else { (320, 1.0) },
            compression: n(&[1_000], &[10])[0],
            burst: if smoke { (2_000, 1) } else { (1_000_000, 3) },
            idle_sizes: args
                .idle_sizes
                .clone()
                .unwrap_or(n(&[5_000, 10_000, 19_000], &[10, 30])),
            // At smoke size too, more than one load generator process.
            idle_per_process: args.idle_per_process.unwrap_or(n(&[9_500], &[20])[0]),
            idle_window: args.idle_window.unwrap_or(ms(32_000, 300)),
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
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut results = Results {
        meta: Meta {
            date: httpdate::fmt_http_date(SystemTime::now()),
            commit: git.map_or("?".into(), |o| {
                String::from_utf8_lossy(&o.stdout).trim().into()
            }),
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
    if config.runs("encode") {
        config.say("encode (criterion)");
        results.encode = encode::run(config.args.smoke)?;
    }
    results.meta.load_after = proc::load_average();
    let out = config
        .args
        .out
        .clone()
        .unwrap_or_else(|| root().join("benches/results"));
    let stem = config
        .args
        .only
        .as_ref()
        .map_or("results".into(), |o| format!("results-{}", o.join("-")));
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
    let md = markdown::render(&results);
    let path = json.with_extension("md");
    std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(md)
}
