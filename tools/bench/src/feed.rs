//! The payloads the fan-out servers publish: JSON that carries the publish time (`"t"`,
//! Unix microseconds: the load generator's latency stamp), the topic (`"k"`) and the
//! topic's sequence number (`"seq"`: the delivery check), then the feed's own fields.
//!
//! - `padded`: `{"t":..,"k":..,"seq":..,"pad":"xx.."}` of exactly `--size` bytes, no
//!   event type (fan-out and high rate).
//! - `aircraft`: one aircraft per topic, a position report shaped like the aircraft
//!   example's (address, callsign, route, position to four decimals, altitude, speed,
//!   track, vertical rate, phase; about 200 bytes), event type `position`. Each aircraft
//!   flies on between reports, so the decimals change as real positions do.
//! - `sensors`: one sensor per topic, a reading shaped like the sensors example's,
//!   event type `sensor-update`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in microseconds since the Unix epoch: the publish stamp of every event.
pub fn now_micros() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.map_or(0, |d| d.as_micros() as u64)
}

/// A feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Feed {
    /// `--size` bytes of padded JSON.
    Padded,
    /// Aircraft position reports, one aircraft per topic.
    Aircraft,
    /// Sensor readings, one sensor per topic.
    Sensors,
}

impl Feed {
    /// The event type of every event, if any.
    pub fn event_type(self) -> Option<&'static str> {
        match self {
            Feed::Padded => None,
            Feed::Aircraft => Some("position"),
            Feed::Sensors => Some("sensor-update"),
        }
    }
}

const AIRPORTS: [&str; 12] = [
    "BKK", "CNX", "HKT", "SIN", "KUL", "PEN", "CGK", "DPS", "MNL", "SGN", "HAN", "RGN",
];
const AIRLINES: [&str; 6] = ["THA", "SIA", "MAS", "GIA", "PAL", "HVN"];
const PHASES: [&str; 3] = ["climb", "cruise", "descent"];

/// Where one aircraft is.
#[derive(Clone, Debug)]
struct Aircraft {
    lat: f64,
    lon: f64,
    alt: f64,
    track: f64,
    speed: f64,
}

/// Makes the payloads of a feed.
#[derive(Clone, Debug)]
pub struct Generator {
    feed: Feed,
    size: usize,
    /// Seconds between two reports of one topic.
    period: f64,
    aircraft: Vec<Aircraft>,
}

/// A deterministic pseudo-random number in [0, 1) of `seed`.
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

impl Generator {
    /// The feed over `topics` topics; `size`: bytes of a padded payload; `period`:
    /// seconds between two reports of one topic.
    pub fn new(feed: Feed, topics: u64, size: usize, period: f64) -> Generator {
        let aircraft = (0..topics)
            .map(|k| Aircraft {
                lat: -8.0 + 28.0 * unit(k * 5 + 1),
                lon: 96.0 + 26.0 * unit(k * 5 + 2),
                alt: 3_000.0 + 36_000.0 * unit(k * 5 + 3),
                track: 360.0 * unit(k * 5 + 4),
                speed: 250.0 + 250.0 * unit(k * 5 + 5),
            })
            .collect();
        Generator {
            feed,
            size,
            period,
            aircraft,
        }
    }

    /// The payload of event `seq` of `topic`, published at `t` (Unix microseconds).
    pub fn next(&mut self, t: u64, topic: u64, seq: u64) -> String {
        let head = format!(r#"{{"t":{t},"k":{topic},"seq":{seq}"#);
        match self.feed {
            Feed::Padded => {
                let pad = self.size.saturating_sub(head.len() + r#","pad":""}"#.len());
                format!(r#"{head},"pad":"{}"}}"#, "x".repeat(pad))
            }
            Feed::Aircraft => {
                let a = &mut self.aircraft[topic as usize];
                let hours = self.period / 3600.0;
                let (sin, cos) = a.track.to_radians().sin_cos();
                a.lat += cos * a.speed * hours / 60.0;
                a.lon += sin * a.speed * hours / 60.0;
                a.track = (a.track + 4.0 * (unit(t ^ topic) - 0.5)).rem_euclid(360.0);
                let vr = (2_000.0 * (unit(seq ^ topic << 20) - 0.5)).round();
                a.alt = (a.alt + vr * self.period / 60.0).clamp(0.0, 41_000.0);
                let n = topic as usize;
                format!(
                    r#"{head},"icao":"{:06x}","cs":"{}{}","from":"{}","to":"{}","lat":{:.4},"lon":{:.4},"alt":{:.0},"gs":{:.1},"trk":{:.1},"vr":{vr},"phase":"{}"}}"#,
                    0x88_0000 + topic * 37,
                    AIRLINES[n % AIRLINES.len()],
                    100 + topic % 900,
                    AIRPORTS[n % AIRPORTS.len()],
                    AIRPORTS[(n * 7 + 3) % AIRPORTS.len()],
                    a.lat,
                    a.lon,
                    a.alt,
                    a.speed,
                    a.track,
                    PHASES[(seq / 60 + topic) as usize % PHASES.len()],
                )
            }
            Feed::Sensors => {
                let wave = (seq as f64 / 30.0 + topic as f64).sin();
                let temperature = 21.0 + 3.0 * wave + unit(t) - 0.5;
                let humidity = 45.0 + 10.0 * wave;
                format!(
                    r#"{head},"sensor":"sensor-{topic}","temperature":{temperature:.2},"humidity":{humidity:.1},"ts":{}}}"#,
                    t / 1000
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_with_the_stamp() {
        for feed in [Feed::Padded, Feed::Aircraft, Feed::Sensors] {
            let mut generator = Generator::new(feed, 3, 140, 1.0);
            let payload = generator.next(42, 2, 7);
            let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(
                (value["t"].as_u64(), value["k"].as_u64()),
                (Some(42), Some(2))
            );
            assert_eq!(value["seq"], 7);
            if feed == Feed::Padded {
                assert_eq!(payload.len(), 140);
            }
        }
    }
}
