//! The payloads the fan-out servers publish: JSON that carries the publish time (`"t"`,
//! Unix microseconds: the load generator's latency stamp), the topic (`"k"`) and the
//! topic's sequence number (`"seq"`), then the feed's own fields: `padded` to exactly
//! `--size` bytes; `aircraft`, one aircraft per topic, a position report shaped like the
//! aircraft example's (about 200 bytes, event type `position`), whose decimals change
//! from one report to the next as real positions do; `sensors`, one sensor per topic,
//! shaped like the sensors example's readings (event type `sensor-update`).

use std::time::UNIX_EPOCH;

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    UNIX_EPOCH.elapsed().map_or(0, |d| d.as_micros() as u64)
}

/// A feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Feed {
    Padded,
    Aircraft,
    Sensors,
}

impl Feed {
    /// The event type of every event, if any.
    pub fn event_type(self) -> Option<&'static str> {
        [None, Some("position"), Some("sensor-update")][self as usize]
    }

    /// The payload of event `seq` of `topic`, published at `t`.
    pub fn payload(self, size: usize, t: u64, topic: u64, seq: u64) -> String {
        let head = format!(r#"{{"t":{t},"k":{topic},"seq":{seq}"#);
        let (k, s) = (topic as f64, seq as f64);
        // A smooth path per topic, and a little noise per report.
        let (wave, noise) = ((s / 40.0 + k).sin(), ((t % 1_000) as f64 / 1e3) - 0.5);
        const PLACES: [&str; 8] = ["BKK", "CNX", "HKT", "SIN", "KUL", "CGK", "MNL", "SGN"];
        match self {
            Feed::Padded => {
                let pad = size.saturating_sub(head.len() + r#","pad":""}"#.len());
                format!(r#"{head},"pad":"{}"}}"#, "x".repeat(pad))
            }
            Feed::Aircraft => format!(
                r#"{head},"icao":"{:06x}","cs":"THA{}","from":"{}","to":"{}","lat":{:.4},"lon":{:.4},"alt":{:.0},"gs":{:.1},"trk":{:.1},"vr":{:.0},"phase":"cruise"}}"#,
                0x88_0000 + topic * 37,
                100 + topic % 900,
                PLACES[topic as usize % 8],
                PLACES[(topic as usize * 3 + 1) % 8],
                5.0 + (k * 0.37) % 15.0 + s * 0.0031 + noise * 1e-3,
                98.0 + (k * 0.71) % 20.0 + s * 0.0027 + noise * 1e-3,
                30_000.0 + 4_000.0 * wave,
                440.0 + 20.0 * wave + noise,
                (k * 37.0 + s * 0.3) % 360.0,
                800.0 * wave,
            ),
            Feed::Sensors => format!(
                r#"{head},"sensor":"sensor-{topic}","temperature":{:.2},"humidity":{:.1},"ts":{}}}"#,
                21.0 + 3.0 * wave + noise,
                45.0 + 10.0 * wave,
                t / 1000
            ),
        }
    }
}

#[test]
fn payloads_are_json_with_the_stamp() {
    for feed in [Feed::Padded, Feed::Aircraft, Feed::Sensors] {
        let payload = feed.payload(140, 42, 2, 7);
        let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!([&value["t"], &value["k"], &value["seq"]], [42, 2, 7]);
        assert!(feed != Feed::Padded || payload.len() == 140);
    }
}
