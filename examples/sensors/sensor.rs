//! A simulated temperature and humidity sensor.
//!
//! Temperature follows the time of day (warmest mid-afternoon) plus a slow random drift
//! that is pulled back towards zero (an Ornstein-Uhlenbeck process), plus a little
//! measurement noise. Relative humidity falls as the air warms (the same water in warmer
//! air is a smaller share of what it could hold), and drifts on its own too.

use serde::Serialize;

/// What a sensor is and where it hangs.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Its topic and the `sensor` field of its readings.
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) place: &'static str,
    /// Daily mean, °C.
    temperature: f64,
    /// Half the daily swing, °C.
    daily_swing: f64,
    /// Typical size of the slow drift, °C.
    drift: f64,
    /// Mean relative humidity, %.
    humidity: f64,
    /// Humidity change per °C above the mean, % (negative: warmer is drier).
    humidity_per_degree: f64,
}

pub(crate) const SENSORS: &[Spec] = &[
    Spec {
        id: "greenhouse",
        name: "Greenhouse",
        place: "Chiang Mai",
        temperature: 28.0,
        daily_swing: 4.5,
        drift: 0.8,
        humidity: 78.0,
        humidity_per_degree: -2.5,
    },
    Spec {
        id: "server-room",
        name: "Server room",
        place: "Bangkok",
        temperature: 21.5,
        daily_swing: 0.6,
        drift: 0.4,
        humidity: 42.0,
        humidity_per_degree: -1.5,
    },
    Spec {
        id: "cold-store",
        name: "Cold store",
        place: "Samut Prakan",
        temperature: 3.5,
        daily_swing: 0.3,
        drift: 0.5,
        humidity: 88.0,
        humidity_per_degree: -1.0,
    },
    Spec {
        id: "office",
        name: "Office",
        place: "Bangkok",
        temperature: 25.0,
        daily_swing: 1.5,
        drift: 0.5,
        humidity: 55.0,
        humidity_per_degree: -2.0,
    },
    Spec {
        id: "rooftop",
        name: "Rooftop",
        place: "Bangkok",
        temperature: 30.5,
        daily_swing: 4.0,
        drift: 1.0,
        humidity: 68.0,
        humidity_per_degree: -3.5,
    },
    Spec {
        id: "wine-cellar",
        name: "Wine cellar",
        place: "Hua Hin",
        temperature: 14.0,
        daily_swing: 0.2,
        drift: 0.3,
        humidity: 70.0,
        humidity_per_degree: -1.0,
    },
];

/// How long the drift takes to fade, seconds.
const DRIFT_TIME_S: f64 = 240.0;

/// One reading: the JSON data of a `sensor-update` event.
#[derive(Debug, Serialize)]
pub(crate) struct Reading {
    pub(crate) sensor: &'static str,
    /// °C, two decimals.
    pub(crate) temperature: f64,
    /// Relative humidity, %, one decimal.
    pub(crate) humidity: f64,
    /// When it was taken, ms since the Unix epoch.
    pub(crate) time: u64,
}

/// A sensor and its state.
#[derive(Debug)]
pub(crate) struct Sensor {
    spec: &'static Spec,
    rng: u64,
    /// Drift of temperature and humidity from their means.
    temperature_drift: f64,
    humidity_drift: f64,
    temperature: f64,
    humidity: f64,
}

impl Sensor {
    pub(crate) fn new(spec: &'static Spec, seed: u64) -> Self {
        Sensor {
            spec,
            rng: seed ^ 0xA076_1D64_78BD_642F,
            temperature_drift: 0.0,
            humidity_drift: 0.0,
            temperature: spec.temperature,
            humidity: spec.humidity,
        }
    }

    /// A standard normal value (Box-Muller over SplitMix64).
    fn gaussian(&mut self) -> f64 {
        let mut uniform = || {
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (u, v) = (1.0 - uniform(), uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Advances `seconds`, to the moment `time_ms`.
    pub(crate) fn step(&mut self, seconds: f64, time_ms: f64) {
        let spec = self.spec;
        // Ornstein-Uhlenbeck: decay towards zero, plus noise scaled so that the drift's
        // typical size stays `spec.drift`.
        let decay = (-seconds / DRIFT_TIME_S).exp();
        let spread = (1.0 - decay * decay).sqrt();
        self.temperature_drift =
            decay * self.temperature_drift + spec.drift * spread * self.gaussian();
        self.humidity_drift = decay * self.humidity_drift + 2.0 * spread * self.gaussian();

        // Local time in Thailand (UTC+7); warmest at 15:00.
        let hours = (time_ms / 3_600_000.0 + 7.0).rem_euclid(24.0);
        let daily = spec.daily_swing * ((hours - 9.0) / 24.0 * std::f64::consts::TAU).sin();
        let warmer = daily + self.temperature_drift;
        self.temperature = spec.temperature + warmer + 0.05 * self.gaussian();
        self.humidity = (spec.humidity
            + spec.humidity_per_degree * warmer
            + self.humidity_drift
            + 0.2 * self.gaussian())
        .clamp(5.0, 100.0);
    }

    pub(crate) fn reading(&self, time_ms: u64) -> Reading {
        Reading {
            sensor: self.spec.id,
            temperature: (self.temperature * 100.0).round() / 100.0,
            humidity: (self.humidity * 10.0).round() / 10.0,
            time: time_ms,
        }
    }
}
