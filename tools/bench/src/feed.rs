//! The payloads the fan-out servers publish: JSON carrying the publish time (`"t"`,
//! Unix microseconds: the load generator's latency stamp), the topic (`"k"`) and the
//! topic's sequence number (`"seq"`: its delivery check), then the feed's own fields.
//!
//! - `padded`: `{"t":..,"k":..,"seq":..,"pad":"xx.."}` of exactly `--size` bytes, no
//!   event type (the fan-out and high-rate runs).
//! - `aircraft`: a position report per aircraft, one aircraft per topic, shaped like the
//!   aircraft example's (`examples/aircraft`): address, callsign, route, latitude and
//!   longitude to four decimals, altitude, ground speed, track, vertical rate and phase,
//!   about 200 bytes; event type `position`. Each aircraft flies on between its reports,
//!   so the decimals change from one report to the next, as real positions do.
//! - `sensors`: a reading per sensor, six sensors, shaped like the sensors example's
//!   (`examples/sensors`): sensor id, temperature to two decimals, humidity to one, the
//!   reading's time in milliseconds; event type `sensor-update`.
//!
//! This is the tools' own generator: nothing of the examples is imported.

use std::fmt::Write as _;

/// A feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Feed {
    /// `--size` bytes of padded JSON.
    Padded,
    /// Aircraft position reports, one aircraft per topic.
    Aircraft,
    /// Sensor readings, one sensor per topic (six kinds, in turn).
    Sensors,
}

impl Feed {
    /// The name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Feed::Padded => "padded",
            Feed::Aircraft => "aircraft",
            Feed::Sensors => "sensors",
        }
    }

    /// The event type of every event (`event: <type>`), if any.
    pub fn event_type(self) -> Option<&'static str> {
        match self {
            Feed::Padded => None,
            Feed::Aircraft => Some("position"),
            Feed::Sensors => Some("sensor-update"),
        }
    }
}

/// SplitMix64: small, fast, deterministic.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Airports of the region: code, latitude, longitude.
const AIRPORTS: [(&str, f64, f64); 16] = [
    ("BKK", 13.690, 100.750),
    ("DMK", 13.913, 100.607),
    ("CNX", 18.767, 98.963),
    ("HKT", 8.113, 98.317),
    ("USM", 9.548, 100.062),
    ("SIN", 1.364, 103.991),
    ("KUL", 2.746, 101.710),
    ("PEN", 5.297, 100.277),
    ("CGK", -6.126, 106.656),
    ("DPS", -8.748, 115.167),
    ("MNL", 14.509, 121.020),
    ("SGN", 10.819, 106.652),
    ("HAN", 21.221, 105.807),
    ("RGN", 16.907, 96.133),
    ("PNH", 11.547, 104.844),
    ("VTE", 17.988, 102.563),
];

/// Airline designators of the region.
const AIRLINES: [(&str, u32); 8] = [
    ("THA", 0x88_0000),
    ("AIQ", 0x88_4000),
    ("SIA", 0x76_0000),
    ("MAS", 0x75_0000),
    ("GIA", 0x8A_0000),
    ("PAL", 0x75_8000),
    ("HVN", 0x88_8000),
    ("VJC", 0x88_A000),
];

#[derive(Clone, Copy, Debug)]
enum Phase {
    Ground,
    Climb,
    Cruise,
    Descent,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Ground => "ground",
            Phase::Climb => "climb",
            Phase::Cruise => "cruise",
            Phase::Descent => "descent",
        }
    }
}

/// One simulated aircraft.
#[derive(Clone, Debug)]
struct Aircraft {
    icao24: String,
    callsign: String,
    from: &'static str,
    to: &'static str,
    lat: f64,
    lon: f64,
    alt_ft: f64,
    cruise_ft: f64,
    speed_kt: f64,
    track: f64,
    vs_fpm: f64,
    phase: Phase,
    /// Seconds left in the current phase.
    left_s: f64,
}

impl Aircraft {
    fn new(index: usize, rng: &mut Rng) -> Aircraft {
        let (designator, block) = AIRLINES[index % AIRLINES.len()];
        let from = AIRPORTS[rng.below(AIRPORTS.len())];
        let to = AIRPORTS[rng.below(AIRPORTS.len())];
        let cruise_ft = (rng.range(24_000.0, 39_000.0) / 1000.0).round() * 1000.0;
        let phase = match rng.below(10) {
            0 => Phase::Ground,
            1 | 2 => Phase::Climb,
            3 | 4 => Phase::Descent,
            _ => Phase::Cruise,
        };
        let alt_ft = match phase {
            Phase::Ground => 0.0,
            Phase::Cruise => cruise_ft,
            _ => rng.range(3_000.0, cruise_ft),
        };
        Aircraft {
            icao24: format!("{:06x}", block + 0x100 + index as u32),
            callsign: format!("{designator}{}", 100 + rng.below(8900)),
            from: from.0,
            to: to.0,
            lat: from.1 + rng.range(-3.0, 3.0),
            lon: from.2 + rng.range(-3.0, 3.0),
            alt_ft,
            cruise_ft,
            speed_kt: 0.0,
            track: rng.range(0.0, 360.0),
            vs_fpm: 0.0,
            phase,
            left_s: rng.range(60.0, 1800.0),
        }
    }

    /// Flies `seconds` on.
    fn step(&mut self, seconds: f64, rng: &mut Rng) {
        self.left_s -= seconds;
        if self.left_s <= 0.0 {
            self.left_s = rng.range(120.0, 1800.0);
            self.phase = match self.phase {
                Phase::Ground => Phase::Climb,
                Phase::Climb => Phase::Cruise,
                Phase::Cruise => Phase::Descent,
                Phase::Descent => Phase::Ground,
            };
        }
        let (speed, vs) = match self.phase {
            Phase::Ground => (0.0, 0.0),
            Phase::Climb if self.alt_ft >= self.cruise_ft => {
                self.phase = Phase::Cruise;
                (rng.range(430.0, 480.0), 0.0)
            }
            Phase::Climb => (rng.range(280.0, 420.0), rng.range(1_500.0, 2_500.0)),
            Phase::Cruise => (rng.range(430.0, 480.0), 0.0),
            Phase::Descent if self.alt_ft <= 0.0 => {
                self.phase = Phase::Ground;
                (0.0, 0.0)
            }
            Phase::Descent => (rng.range(250.0, 400.0), -rng.range(1_000.0, 2_000.0)),
        };
        // Smoothly towards the new speed and rate, with a little wandering of the track.
        self.speed_kt += (speed - self.speed_kt) * 0.2;
        self.vs_fpm += (vs - self.vs_fpm) * 0.2;
        if !matches!(self.phase, Phase::Ground) {
            self.track = (self.track + rng.range(-0.5, 0.5)).rem_euclid(360.0);
        }
        self.alt_ft = (self.alt_ft + self.vs_fpm * seconds / 60.0).clamp(0.0, self.cruise_ft);
        let nm = self.speed_kt * seconds / 3600.0;
        let (sin, cos) = self.track.to_radians().sin_cos();
        self.lat += nm * cos / 60.0;
        self.lon += nm * sin / (60.0 * self.lat.to_radians().cos().max(0.1));
    }
}

/// One simulated sensor: kind, and where its readings stand.
#[derive(Clone, Debug)]
struct Sensor {
    id: &'static str,
    temperature: f64,
    humidity: f64,
    mean: (f64, f64),
}

/// The six sensors' ids and means (°C, % relative humidity).
const SENSORS: [(&str, f64, f64); 6] = [
    ("greenhouse", 28.0, 78.0),
    ("server-room", 21.5, 42.0),
    ("cold-store", 3.5, 88.0),
    ("office", 25.0, 55.0),
    ("rooftop", 30.5, 68.0),
    ("wine-cellar", 14.0, 70.0),
];

impl Sensor {
    fn new(index: usize) -> Sensor {
        let (id, temperature, humidity) = SENSORS[index % SENSORS.len()];
        Sensor {
            id,
            temperature,
            humidity,
            mean: (temperature, humidity),
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        // A drift pulled back to the mean, and a little noise.
        self.temperature += (self.mean.0 - self.temperature) * 0.05 + rng.range(-0.15, 0.15);
        self.humidity += (self.mean.1 - self.humidity) * 0.05 + rng.range(-0.4, 0.4);
        self.humidity = self.humidity.clamp(5.0, 100.0);
    }
}

/// Makes each topic's next payload.
#[derive(Clone, Debug)]
pub struct Generator {
    feed: Feed,
    size: usize,
    /// Seconds between two reports of one topic.
    period_s: f64,
    rng: Rng,
    aircraft: Vec<Aircraft>,
    sensors: Vec<Sensor>,
}

/// `value` rounded to `decimals` decimals, written the shortest way (as serde_json
/// writes the examples' rounded floats).
fn push_rounded(out: &mut String, value: f64, decimals: i32) {
    let scale = 10f64.powi(decimals);
    let _ = write!(out, "{}", (value * scale).round() / scale);
}

impl Generator {
    /// The payloads of `feed` on `topics` topics, each topic published every `period_s`
    /// seconds; `size` is the padded feed's size.
    pub fn new(feed: Feed, topics: u64, size: usize, period_s: f64) -> Generator {
        let mut rng = Rng(0x005E_ED0F_A1C0);
        let topics = topics as usize;
        let aircraft = match feed {
            Feed::Aircraft => (0..topics).map(|k| Aircraft::new(k, &mut rng)).collect(),
            _ => Vec::new(),
        };
        let sensors = match feed {
            Feed::Sensors => (0..topics).map(Sensor::new).collect(),
            _ => Vec::new(),
        };
        Generator {
            feed,
            size,
            period_s,
            rng,
            aircraft,
            sensors,
        }
    }

    /// The feed.
    pub fn feed(&self) -> Feed {
        self.feed
    }

    /// The payload of event `seq` of `topic`, published at `t` (Unix microseconds).
    pub fn next(&mut self, t: u64, topic: u64, seq: u64) -> String {
        let mut s = String::with_capacity(self.size.max(224));
        let _ = write!(s, "{{\"t\":{t},\"k\":{topic},\"seq\":{seq},");
        match self.feed {
            Feed::Padded => {
                s.push_str("\"pad\":\"");
                let pad = self.size.saturating_sub(s.len() + 2);
                s.extend(std::iter::repeat_n('x', pad));
                s.push('"');
            }
            Feed::Aircraft => {
                let a = &mut self.aircraft[topic as usize];
                a.step(self.period_s, &mut self.rng);
                let _ = write!(
                    s,
                    "\"icao24\":\"{}\",\"callsign\":\"{}\",\"from\":\"{}\",\"to\":\"{}\",\"lat\":",
                    a.icao24, a.callsign, a.from, a.to
                );
                push_rounded(&mut s, a.lat, 4);
                s.push_str(",\"lon\":");
                push_rounded(&mut s, a.lon, 4);
                let (alt, gs) = (a.alt_ft.round() as i64, a.speed_kt.round() as i64);
                let _ = write!(s, ",\"alt\":{alt},\"gs\":{gs},\"track\":");
                push_rounded(&mut s, a.track, 1);
                let vs = (a.vs_fpm / 50.0).round() as i64 * 50;
                let _ = write!(s, ",\"vs\":{vs},\"phase\":\"{}\"", a.phase.name());
            }
            Feed::Sensors => {
                let sensor = &mut self.sensors[topic as usize];
                sensor.step(&mut self.rng);
                let _ = write!(s, "\"sensor\":\"{}\",\"temperature\":", sensor.id);
                push_rounded(&mut s, sensor.temperature, 2);
                s.push_str(",\"humidity\":");
                push_rounded(&mut s, sensor.humidity, 1);
                let _ = write!(s, ",\"time\":{}", t / 1000);
            }
        }
        s.push('}');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::field;

    #[test]
    fn payloads_are_json_with_the_stamps() {
        for (feed, topics) in [(Feed::Padded, 1), (Feed::Aircraft, 320), (Feed::Sensors, 6)] {
            let mut generator = Generator::new(feed, topics, 140, 1.0);
            let mut sizes = Vec::new();
            for seq in 1..=3 {
                for topic in 0..topics {
                    let t = 1_795_977_114_019_157 + seq * 1000 + topic;
                    let payload = generator.next(t, topic, seq);
                    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
                    assert_eq!(value["t"], t, "{payload}");
                    assert_eq!(value["k"], topic, "{payload}");
                    assert_eq!(value["seq"], seq, "{payload}");
                    let bytes = payload.as_bytes();
                    assert_eq!(field(bytes, b"\"t\":"), Some(t), "{payload}");
                    assert_eq!(field(bytes, b"\"seq\":"), Some(seq), "{payload}");
                    assert_eq!(field(bytes, b"\"k\":"), Some(topic), "{payload}");
                    sizes.push(payload.len());
                }
            }
            let mean = sizes.iter().sum::<usize>() / sizes.len();
            match feed {
                Feed::Padded => assert!(sizes.iter().all(|&s| s == 140)),
                Feed::Aircraft => assert!((180..=230).contains(&mean), "aircraft: {mean}"),
                Feed::Sensors => assert!((100..=140).contains(&mean), "sensors: {mean}"),
            }
        }
    }

    #[test]
    fn positions_move_between_reports() {
        let mut generator = Generator::new(Feed::Aircraft, 4, 0, 1.0);
        let a = generator.next(1, 2, 1);
        let b = generator.next(2, 2, 2);
        let lat = |p: &str| serde_json::from_str::<serde_json::Value>(p).unwrap()["lat"].clone();
        let phase =
            |p: &str| serde_json::from_str::<serde_json::Value>(p).unwrap()["phase"].clone();
        assert!(lat(&a) != lat(&b) || phase(&a) == "ground", "{a}\n{b}");
    }
}
