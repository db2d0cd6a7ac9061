//! The benchmark suite (the `bench-suite` binary; `benches/run.sh` runs it): every
//! section, tower-sse side by side with axum, warp and the two floors, written to
//! `benches/results/results.json` and, made from that, `results.md`
//! ([`crate::markdown`]). Each server is a child process (`fanout-server`), the load
//! runs in this process ([`crate::loadgen`]) or, for idle memory, in `loadgen --hold`
//! child processes; burst runs in this process; encode runs criterion.

mod child;
mod encode;
mod idle;
mod sections;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::loadgen::seconds;
use crate::results::{Meta, Results};
use crate::{markdown, proc};

/// The sections, in the order they run.
pub const SECTIONS: [&str; 9] = [
    "check",
    "fanout",
    "idle",
    "churn",
    "redis",
    "high-rate",
    "compression",
    "burst",
    "encode",
];

/// The command line of `bench-suite`: a size (full, or `--smoke`), then overrides.
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
    #[arg(long, value_delimiter = ',')]
    pub steps: Option<Vec<usize>>,
    /// Fan-out: rounds (every stack once a round; figures are medians of the rounds).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds of each measuring window.
    #[arg(long, value_parser = seconds)]
    pub window: Option<Duration>,
    /// Idle memory: streams at each size, in one server process.
    #[arg(long, value_delimiter = ',')]
    pub idle_sizes: Option<Vec<usize>>,
    /// Idle memory: streams per load generator process (at most ~19,000 here).
    #[arg(long)]
    pub idle_per_process: Option<usize>,
    /// Idle memory: seconds of the heartbeat CPU window (the heartbeat is every 15 s).
    #[arg(long, value_parser = seconds)]
    pub idle_window: Option<Duration>,
    /// Idle memory of a server already running at this event stream URL (with
    /// `--idle-pid`), instead of the suite's own servers.
    #[arg(long, requires = "idle_pid")]
    pub idle_url: Option<String>,
    /// The process id of the server at `--idle-url`.
    #[arg(long, requires = "idle_url")]
    pub idle_pid: Option<u32>,
    /// High rate: subscribers at each step.
    #[arg(long, value_delimiter = ',')]
    pub high_rate_steps: Option<Vec<usize>>,
    /// High rate: tower-sse's write delays besides none, milliseconds.
    #[arg(long, value_delimiter = ',')]
    pub write_delays: Option<Vec<u64>>,
    /// Compression: subscribers.
    #[arg(long)]
    pub compression_subscribers: Option<usize>,
    /// Burst: events per run.
    #[arg(long)]
    pub burst_events: Option<u64>,
    /// Where the results go (default: benches/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only write the Markdown of this results JSON (next to it).
    #[arg(long)]
    pub render: Option<PathBuf>,
    /// The command to name in the results.
    #[arg(long, default_value = "benches/run.sh")]
    pub command: String,
}

/// The sizes of one run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The command line.
    pub args: Args,
    /// The directory of `fanout-server` and `loadgen`.
    pub bin: PathBuf,
    /// Measuring window, and the settle before it.
    pub window: Duration,
    pub(crate) settle: Duration,
    pub(crate) connect_rate: f64,
    /// Delivery check: subscribers and events.
    pub(crate) check: (usize, u64),
    pub(crate) steps: Vec<usize>,
    pub(crate) rounds: usize,
    pub(crate) idle_sizes: Vec<usize>,
    pub(crate) idle_per_process: usize,
    pub(crate) idle_window: Duration,
    /// Churn: workers and seconds.
    pub(crate) churn: (usize, Duration),
    pub(crate) redis: usize,
    pub(crate) high_rate_steps: Vec<usize>,
    pub(crate) write_delays: Vec<u64>,
    /// Aircraft topics and reports per second of each (compression's feed).
    pub(crate) aircraft: (u64, f64),
    pub(crate) compression_subscribers: usize,
    /// Burst: events and runs.
    pub(crate) burst: (u64, usize),
    pub(crate) smoke: bool,
}

impl Config {
    /// The full suite, or with `--smoke` tiny sizes; then the overrides of `args`.
    pub fn new(args: Args) -> Result<Config, String> {
        let smoke = args.smoke;
        fn pick<T>(smoke: bool, full: T, tiny: T) -> T {
            if smoke { tiny } else { full }
        }
        let ms = |full, tiny| Duration::from_millis(pick(smoke, full, tiny));
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        Ok(Config {
            bin: exe.parent().ok_or("no directory")?.to_path_buf(),
            window: args.window.unwrap_or(ms(6_000, 500)),
            settle: ms(2_000, 100),
            connect_rate: pick(smoke, 2_500.0, 1_000.0),
            check: (pick(smoke, 100, 20), 20),
            steps: args.steps.clone().unwrap_or(if smoke {
                vec![20]
            } else {
                vec![1_000, 5_000, 15_000]
            }),
            rounds: args.rounds.unwrap_or(pick(smoke, 3, 1)).max(1),
            idle_sizes: args.idle_sizes.clone().unwrap_or(if smoke {
                vec![10, 30]
            } else {
                vec![5_000, 10_000, 19_000]
            }),
            idle_per_process: args.idle_per_process.unwrap_or(pick(smoke, 9_500, 20)),
            idle_window: args.idle_window.unwrap_or(ms(32_000, 300)),
            churn: (pick(smoke, 64, 4), ms(10_000, 500)),
            redis: pick(smoke, 1_000, 20),
            high_rate_steps: args.high_rate_steps.clone().unwrap_or(if smoke {
                vec![20]
            } else {
                vec![500, 2_000]
            }),
            write_delays: args.write_delays.clone().unwrap_or(vec![5, 20, 50]),
            aircraft: (pick(smoke, 320, 32), pick(smoke, 1.0, 5.0)),
            compression_subscribers: args
                .compression_subscribers
                .unwrap_or(pick(smoke, 1_000, 10)),
            burst: (
                args.burst_events.unwrap_or(pick(smoke, 1_000_000, 2_000)),
                pick(smoke, 3, 1),
            ),
            smoke,
            args,
        })
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
        if !self.smoke {
            eprintln!("suite: {text}");
        }
    }

    /// A binary next to this one.
    pub(crate) fn tool(&self, name: &str) -> PathBuf {
        self.bin
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }
}

/// The repository's root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn commit() -> String {
    let output = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output();
    let output = output.ok().filter(|o| o.status.success());
    output.map_or("?".into(), |o| {
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    })
}

/// Runs the sections and writes `<stem>.json` and `<stem>.md` into the output directory;
/// returns the Markdown.
pub fn run(config: &Config) -> Result<String, String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut results = Results {
        meta: Meta {
            date: httpdate::fmt_http_date(SystemTime::now()),
            commit: commit(),
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
        results.encode = encode::run(config)?;
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
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    write(&out.join(format!("{stem}.json")), &json)?;
    render(&out.join(format!("{stem}.json")))
}

/// Writes the Markdown of a results JSON next to it; returns it.
pub fn render(json: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?;
    let results: Results =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let md = markdown::render(&results);
    write(&json.with_extension("md"), &md)?;
    Ok(md)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
