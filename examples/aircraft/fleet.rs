//! The simulated fleet: every aircraft flies a great circle from one airport to another,
//! climbing, cruising and descending, turns around on the ground, and flies again.
//!
//! An aircraft's altitude and speed follow from how far it has flown and how far it still
//! has to go, so one number per flight (the distance flown) is its whole state in the air.

use serde::Serialize;

use super::airports::{AIRPORTS, Airport};

const EARTH_RADIUS_KM: f64 = 6371.0;
const KM_PER_NM: f64 = 1.852;
/// Climb gradient: about 2,000 ft/min at the speeds of a climb.
const CLIMB_FT_PER_NM: f64 = 350.0;
/// Descent gradient: the usual "three miles per thousand feet".
const DESCENT_FT_PER_NM: f64 = 300.0;
/// Ground speed at lift-off and touchdown.
const RUNWAY_KT: f64 = 150.0;
/// Flights shorter or longer than this are not flown.
const ROUTE_KM: std::ops::RangeInclusive<f64> = 250.0..=3500.0;

/// An airline: its ICAO designator and the block of 24-bit addresses of its country.
struct Airline {
    designator: &'static str,
    address_block: u32,
}

const AIRLINES: &[Airline] = &[
    airline("THA", 0x88_0000),
    airline("AIQ", 0x88_0000),
    airline("BKP", 0x88_0000),
    airline("SIA", 0x76_8000),
    airline("TGW", 0x76_8000),
    airline("MAS", 0x75_0000),
    airline("AXM", 0x75_0000),
    airline("GIA", 0x8A_0000),
    airline("LNI", 0x8A_0000),
    airline("PAL", 0x75_8000),
    airline("CEB", 0x75_8000),
    airline("HVN", 0x88_8000),
    airline("VJC", 0x88_8000),
    airline("UBA", 0x70_4000),
    airline("LAO", 0x70_8000),
    airline("CPA", 0x78_0000),
];

const fn airline(designator: &'static str, address_block: u32) -> Airline {
    Airline {
        designator,
        address_block,
    }
}

/// A small, seedable random generator (SplitMix64): the simulation needs nothing more.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// What an aircraft is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    Ground,
    Climb,
    Cruise,
    Descent,
}

/// One aircraft's position report: the JSON data of a `position` event.
#[derive(Debug, Serialize)]
pub(crate) struct Position<'a> {
    pub(crate) icao24: &'a str,
    pub(crate) callsign: &'a str,
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    /// Degrees, four decimals (about 10 m).
    pub(crate) lat: f64,
    pub(crate) lon: f64,
    /// Feet.
    pub(crate) alt: i32,
    /// Ground speed, knots.
    pub(crate) gs: i32,
    /// Degrees clockwise from true north.
    pub(crate) track: f64,
    /// Vertical rate, feet per minute.
    pub(crate) vs: i32,
    pub(crate) phase: Phase,
}

/// One aircraft and its current flight.
#[derive(Debug)]
pub(crate) struct Aircraft {
    icao24: String,
    airline: usize,
    callsign: String,
    origin: usize,
    destination: usize,
    /// Great-circle length of the flight, km.
    length_km: f64,
    /// Distance flown so far, km.
    flown_km: f64,
    cruise_ft: f64,
    cruise_kt: f64,
    /// Seconds left on the ground before the next departure; positive while parked.
    turnaround_s: f64,
    // Where the aircraft is now, derived from the fields above.
    lat: f64,
    lon: f64,
    alt_ft: f64,
    speed_kt: f64,
    track: f64,
    vs_fpm: f64,
    phase: Phase,
}

impl Aircraft {
    /// Its 24-bit address, six lowercase hex digits.
    pub(crate) fn icao24(&self) -> &str {
        &self.icao24
    }

    /// The report published for it.
    pub(crate) fn position(&self) -> Position<'_> {
        Position {
            icao24: &self.icao24,
            callsign: &self.callsign,
            from: AIRPORTS[self.origin].iata,
            to: AIRPORTS[self.destination].iata,
            lat: round(self.lat, 1e4),
            lon: round(self.lon, 1e4),
            alt: self.alt_ft.round() as i32,
            gs: self.speed_kt.round() as i32,
            track: round(self.track, 10.0),
            vs: (self.vs_fpm / 50.0).round() as i32 * 50,
            phase: self.phase,
        }
    }

    /// Recomputes position, altitude, speed and heading from the distance flown.
    fn update(&mut self) {
        let from = &AIRPORTS[self.origin];
        let to = &AIRPORTS[self.destination];
        if self.turnaround_s > 0.0 {
            (self.lat, self.lon) = (from.lat, from.lon);
            (self.alt_ft, self.speed_kt, self.vs_fpm) = (0.0, 0.0, 0.0);
            self.phase = Phase::Ground;
            return;
        }
        let fraction = (self.flown_km / self.length_km).clamp(0.0, 1.0);
        (self.lat, self.lon) = along_great_circle(from, to, fraction);
        let remaining_km = self.length_km - self.flown_km;
        if remaining_km > 1.0 {
            self.track = bearing(self.lat, self.lon, to.lat, to.lon);
        }
        let climb = CLIMB_FT_PER_NM * self.flown_km / KM_PER_NM;
        let descent = DESCENT_FT_PER_NM * remaining_km / KM_PER_NM;
        self.alt_ft = self.cruise_ft.min(climb).min(descent).max(0.0);
        let share = (self.alt_ft / self.cruise_ft).sqrt();
        self.speed_kt = RUNWAY_KT + (self.cruise_kt - RUNWAY_KT) * share;
        (self.phase, self.vs_fpm) = if climb < self.cruise_ft && climb <= descent {
            (Phase::Climb, CLIMB_FT_PER_NM * self.speed_kt / 60.0)
        } else if descent < self.cruise_ft {
            (Phase::Descent, -DESCENT_FT_PER_NM * self.speed_kt / 60.0)
        } else {
            (Phase::Cruise, 0.0)
        };
    }
}

/// The whole fleet.
#[derive(Debug)]
pub(crate) struct Fleet {
    aircraft: Vec<Aircraft>,
    rng: Rng,
    /// Flights begun since the start, the fleet's own counter for new flight numbers.
    flights: u64,
}

impl Fleet {
    /// `size` aircraft, each somewhere along a flight (one in ten parked at its gate).
    pub(crate) fn new(size: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut per_airline = vec![0u32; AIRLINES.len()];
        let mut aircraft = Vec::with_capacity(size);
        for _ in 0..size {
            let airline = rng.below(AIRLINES.len());
            per_airline[airline] += 1;
            // Offset into the block, so that the addresses of airlines sharing a
            // country's block do not collide.
            let address = AIRLINES[airline].address_block
                + 0x100 * (airline as u32 + 1)
                + per_airline[airline];
            let origin = pick_airport(&mut rng, None);
            let mut plane = Aircraft {
                icao24: format!("{address:06x}"),
                airline,
                callsign: String::new(),
                origin,
                destination: origin,
                length_km: 0.0,
                flown_km: 0.0,
                cruise_ft: 0.0,
                cruise_kt: 0.0,
                turnaround_s: 0.0,
                lat: 0.0,
                lon: 0.0,
                alt_ft: 0.0,
                speed_kt: 0.0,
                track: 0.0,
                vs_fpm: 0.0,
                phase: Phase::Ground,
            };
            let number = 100 + rng.below(8900) as u64;
            begin_flight(&mut plane, &mut rng, number);
            if rng.unit() < 0.1 {
                plane.turnaround_s = rng.range(60.0, 900.0);
            } else {
                plane.flown_km = plane.length_km * rng.range(0.02, 0.98);
            }
            plane.update();
            aircraft.push(plane);
        }
        Fleet {
            aircraft,
            rng,
            flights: 0,
        }
    }

    pub(crate) fn aircraft(&self) -> &[Aircraft] {
        &self.aircraft
    }

    /// Advances the simulation by `seconds`.
    pub(crate) fn step(&mut self, seconds: f64) {
        self.step_part(0..self.aircraft.len(), seconds);
    }

    /// Advances the aircraft of `part` (indexes in fleet order) by `seconds`.
    pub(crate) fn step_part(&mut self, part: std::ops::Range<usize>, seconds: f64) {
        for plane in &mut self.aircraft[part] {
            if plane.turnaround_s > 0.0 {
                plane.turnaround_s -= seconds;
                if plane.turnaround_s <= 0.0 {
                    plane.turnaround_s = 0.0;
                    self.flights += 1;
                    begin_flight(plane, &mut self.rng, 100 + self.flights % 8900);
                }
            } else {
                plane.flown_km += plane.speed_kt.max(RUNWAY_KT) * KM_PER_NM * seconds / 3600.0;
                if plane.flown_km >= plane.length_km {
                    // Landed: park at the destination until the next departure.
                    plane.origin = plane.destination;
                    plane.turnaround_s = self.rng.range(120.0, 1200.0);
                }
            }
            plane.update();
        }
    }
}

/// Plans a new flight from the aircraft's current airport.
fn begin_flight(plane: &mut Aircraft, rng: &mut Rng, number: u64) {
    let destination = loop {
        let candidate = pick_airport(rng, Some(plane.origin));
        let length = distance_km(&AIRPORTS[plane.origin], &AIRPORTS[candidate]);
        if ROUTE_KM.contains(&length) {
            break candidate;
        }
    };
    plane.destination = destination;
    plane.length_km = distance_km(&AIRPORTS[plane.origin], &AIRPORTS[destination]);
    plane.flown_km = 0.0;
    // Short hops cruise lower and slower.
    let long = ((plane.length_km - 250.0) / 1500.0).clamp(0.0, 1.0);
    plane.cruise_ft = (rng.range(24_000.0, 30_000.0) + 9_000.0 * long).round();
    plane.cruise_ft -= plane.cruise_ft % 1000.0;
    plane.cruise_kt = rng.range(400.0, 440.0) + 40.0 * long;
    plane.callsign = format!("{}{number}", AIRLINES[plane.airline].designator);
}

/// An airport drawn by weight, never `except`.
fn pick_airport(rng: &mut Rng, except: Option<usize>) -> usize {
    let total: u32 = AIRPORTS.iter().map(|a| a.weight).sum();
    loop {
        let mut ticket = rng.below(total as usize) as u32;
        for (index, airport) in AIRPORTS.iter().enumerate() {
            if ticket < airport.weight {
                if Some(index) != except {
                    return index;
                }
                break;
            }
            ticket -= airport.weight;
        }
    }
}

fn round(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

/// A point as a unit vector.
fn unit_vector(lat: f64, lon: f64) -> [f64; 3] {
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// The central angle between two airports, radians.
fn central_angle(a: &Airport, b: &Airport) -> f64 {
    let (u, v) = (unit_vector(a.lat, a.lon), unit_vector(b.lat, b.lon));
    let dot = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    dot.clamp(-1.0, 1.0).acos()
}

pub(crate) fn distance_km(a: &Airport, b: &Airport) -> f64 {
    central_angle(a, b) * EARTH_RADIUS_KM
}

/// The point at `fraction` of the great circle from `a` to `b` (spherical interpolation).
fn along_great_circle(a: &Airport, b: &Airport, fraction: f64) -> (f64, f64) {
    let omega = central_angle(a, b);
    if omega < 1e-9 {
        return (a.lat, a.lon);
    }
    let (u, v) = (unit_vector(a.lat, a.lon), unit_vector(b.lat, b.lon));
    let wa = ((1.0 - fraction) * omega).sin() / omega.sin();
    let wb = (fraction * omega).sin() / omega.sin();
    let p = [
        wa * u[0] + wb * v[0],
        wa * u[1] + wb * v[1],
        wa * u[2] + wb * v[2],
    ];
    let lat = p[2].atan2((p[0] * p[0] + p[1] * p[1]).sqrt());
    let lon = p[1].atan2(p[0]);
    (lat.to_degrees(), lon.to_degrees())
}

/// The initial bearing of the great circle from one point to another, degrees.
fn bearing(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let delta = (lon2 - lon1).to_radians();
    let y = delta.sin() * phi2.cos();
    let x = phi1.cos() * phi2.sin() - phi1.sin() * phi2.cos() * delta.cos();
    (y.atan2(x).to_degrees() + 360.0) % 360.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn airport(iata: &str) -> &'static Airport {
        AIRPORTS.iter().find(|a| a.iata == iata).unwrap()
    }

    #[test]
    fn great_circle_distances_match_published_ones() {
        // Published great-circle distances: BKK-SIN 1,431 km, HAN-SGN 1,160 km.
        let bkk_sin = distance_km(airport("BKK"), airport("SIN"));
        let han_sgn = distance_km(airport("HAN"), airport("SGN"));
        assert!((bkk_sin - 1431.0).abs() < 15.0, "{bkk_sin}");
        assert!((han_sgn - 1160.0).abs() < 15.0, "{han_sgn}");
    }

    #[test]
    fn every_flight_climbs_cruises_descends_and_lands() {
        let mut fleet = Fleet::new(50, 7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 * 3600 / 10 {
            fleet.step(10.0);
            for plane in fleet.aircraft() {
                seen.insert(plane.phase);
                assert!(plane.alt_ft <= plane.cruise_ft.max(0.0) + 1.0);
                assert!((-12.0..25.0).contains(&plane.lat), "{plane:?}");
            }
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(fleet.flights > 50, "{} new flights", fleet.flights);
    }
}
