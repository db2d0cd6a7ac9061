//! The load generator's command line.

use std::net::IpAddr;
use std::time::Duration;

use http::Uri;

use crate::codec::Codec;
use crate::proc::Usage;

/// Command-line seconds, such as `2` or `0.5`.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs = text
        .parse()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    secs.ok_or_else(|| format!("not seconds: {text:?}"))
}

/// What the generator does.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "loadgen", about = "A Server-Sent Events load generator")]
pub struct Options {
    /// An event stream URL; repeat it to spread streams over several, round-robin.
    #[arg(long = "url", required = true)]
    pub targets: Vec<Uri>,
    /// Streams held at each step of a rising ramp, such as `1000,5000,15000`.
    #[arg(short = 'n', value_delimiter = ',', default_value = "100")]
    pub steps: Vec<usize>,
    /// Seconds between the last stream of a step and its window.
    #[arg(long, value_parser = seconds, default_value = "2")]
    pub settle: Duration,
    /// Seconds of each window (or of the churn).
    #[arg(long, value_parser = seconds, default_value = "10")]
    pub duration: Duration,
    /// A server process to read from `/proc`; repeatable.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// A fan-out server's `/stats` URL: the subscribers it counts after a churn.
    #[arg(long)]
    pub control: Option<Uri>,
    /// Churn workers: connect, GET, read the head, close, again.
    #[arg(long)]
    pub churn: Option<usize>,
    /// Hold streams as told on standard input.
    #[arg(long)]
    pub hold: bool,
    /// Source addresses to bind, round-robin.
    #[arg(long = "bind", value_delimiter = ',')]
    pub sources: Vec<IpAddr>,
    /// Ask for streams compressed with this codec, and decode them.
    #[arg(long, value_enum)]
    pub accept_encoding: Option<Codec>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds to wait for a step's streams to answer (`--hold`: also for events).
    #[arg(long, value_parser = seconds, default_value = "60")]
    pub timeout: Duration,
    /// No progress lines.
    #[arg(short, long)]
    pub quiet: bool,
}

impl Options {
    /// The servers' usage now, summed.
    pub(super) fn usage(&self) -> Option<Usage> {
        Usage::of(&self.pids)
    }
}
