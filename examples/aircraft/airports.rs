//! Airports of Southeast Asia (and two neighbours) that the simulated fleet flies between.

/// An airport: its codes, where it is, and how busy it is (hubs get more flights).
#[derive(Debug)]
pub(crate) struct Airport {
    pub(crate) iata: &'static str,
    pub(crate) icao: &'static str,
    pub(crate) city: &'static str,
    pub(crate) lat: f64,
    pub(crate) lon: f64,
    /// Relative share of departures and arrivals.
    pub(crate) weight: u32,
}

const fn airport(
    iata: &'static str,
    icao: &'static str,
    city: &'static str,
    lat: f64,
    lon: f64,
    weight: u32,
) -> Airport {
    Airport {
        iata,
        icao,
        city,
        lat,
        lon,
        weight,
    }
}

/// The airports, reference points rounded to about a kilometre.
pub(crate) const AIRPORTS: &[Airport] = &[
    airport("BKK", "VTBS", "Bangkok Suvarnabhumi", 13.690, 100.750, 10),
    airport("DMK", "VTBD", "Bangkok Don Mueang", 13.913, 100.607, 7),
    airport("CNX", "VTCC", "Chiang Mai", 18.767, 98.963, 4),
    airport("CEI", "VTCT", "Chiang Rai", 19.952, 99.883, 2),
    airport("HKT", "VTSP", "Phuket", 8.113, 98.317, 5),
    airport("KBV", "VTSG", "Krabi", 8.099, 98.986, 2),
    airport("USM", "VTSM", "Koh Samui", 9.548, 100.062, 2),
    airport("HDY", "VTSS", "Hat Yai", 6.933, 100.393, 2),
    airport("UTH", "VTUD", "Udon Thani", 17.386, 102.788, 2),
    airport("SIN", "WSSS", "Singapore Changi", 1.364, 103.991, 10),
    airport("KUL", "WMKK", "Kuala Lumpur", 2.746, 101.710, 9),
    airport("PEN", "WMKP", "Penang", 5.297, 100.277, 3),
    airport("BKI", "WBKK", "Kota Kinabalu", 5.937, 116.051, 3),
    airport("KCH", "WBGG", "Kuching", 1.485, 110.347, 2),
    airport("BWN", "WBSB", "Bandar Seri Begawan", 4.944, 114.928, 2),
    airport("CGK", "WIII", "Jakarta Soekarno-Hatta", -6.126, 106.656, 10),
    airport("SUB", "WARR", "Surabaya", -7.380, 112.787, 4),
    airport("DPS", "WADD", "Bali Denpasar", -8.748, 115.167, 6),
    airport("KNO", "WIMM", "Medan Kualanamu", 3.642, 98.885, 3),
    airport("UPG", "WAAA", "Makassar", -5.062, 119.554, 3),
    airport("BPN", "WALL", "Balikpapan", -1.268, 116.894, 2),
    airport("DIL", "WPDL", "Dili", -8.547, 125.525, 1),
    airport("MNL", "RPLL", "Manila", 14.509, 121.020, 8),
    airport("CEB", "RPVM", "Cebu", 10.307, 123.979, 4),
    airport("DVO", "RPMD", "Davao", 7.125, 125.646, 2),
    airport("SGN", "VVTS", "Ho Chi Minh City", 10.819, 106.652, 8),
    airport("HAN", "VVNB", "Hanoi", 21.221, 105.807, 7),
    airport("DAD", "VVDN", "Da Nang", 16.044, 108.199, 4),
    airport("CXR", "VVCR", "Nha Trang Cam Ranh", 11.998, 109.219, 2),
    airport("PQC", "VVPQ", "Phu Quoc", 10.171, 103.993, 2),
    airport("RGN", "VYYY", "Yangon", 16.907, 96.133, 4),
    airport("MDL", "VYMD", "Mandalay", 21.702, 95.978, 2),
    airport("PNH", "VDPP", "Phnom Penh", 11.547, 104.844, 3),
    airport("VTE", "VLVT", "Vientiane", 17.988, 102.563, 3),
    airport("LPQ", "VLLB", "Luang Prabang", 19.897, 102.161, 1),
    airport("HKG", "VHHH", "Hong Kong", 22.309, 113.915, 6),
];
