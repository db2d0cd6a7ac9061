//! The suite's command line, and the sizes of a run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::PossibleValuesParser;

use crate::loadgen::seconds;

/// The sections, in the order they run.
pub const SECTIONS: &str = "fanout churn redis high-rate compression idle burst encode";

fn sections() -> PossibleValuesParser {
    PossibleValuesParser::new(SECTIONS.split(' '))
}

/// The command line of `bench-suite`: the full sizes, `--smoke` for tiny ones.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "bench-suite", about = "tower-sse's benchmark suite")]
pub struct Args {
    /// Tiny sizes, a few seconds a section: keeps the tools from rotting.
    #[arg(long)]
    pub smoke: bool,
    /// Run these sections alone; the files are then `results-<sections>.{json,md}`.
    #[arg(long, value_delimiter = ',', value_parser = sections())]
    pub only: Option<Vec<String>>,
    /// Sections to leave out.
    #[arg(long, value_delimiter = ',', value_parser = sections())]
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
        let named = |list: &Vec<String>| list.iter().any(|s| s == section);
        self.args
            .only
            .as_ref()
            .map_or(!named(&self.args.skip), named)
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
pub(super) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
