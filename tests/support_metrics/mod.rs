//! Reading the Prometheus text format (what `metrics-exporter-prometheus` renders and
//! the examples serve at `/metrics`): every series, by name and labels.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};

/// One scrape: the value of every series.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    series: HashMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("a series and its value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a value: {line}"));
            let (name, labels) = match key.split_once('{') {
                None => (key.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("labels end with }");
                    (name.to_owned(), parse_labels(rest))
                }
            };
            series.insert((name, labels), value);
        }
        Scrape { series }
    }

    /// The series `name` with exactly `labels`; 0 when it is not there (a counter not
    /// incremented yet).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.series
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum of every series named `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// How many series there are.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// The series of the crate's metrics (names starting with `tower_sse_`), sorted:
    /// for messages.
    pub fn ours(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .series
            .iter()
            .filter(|((name, _), _)| name.starts_with("tower_sse_"))
            .map(|((name, labels), value)| format!("{name}{labels:?} {value}"))
            .collect();
        lines.sort();
        lines
    }

    /// The distinct values of the label `label` on the series `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .series
            .keys()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, labels)| labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end..].trim_start_matches(',');
    }
    labels
}

#[test]
fn a_scrape_reads_names_labels_and_values() {
    let scrape = Scrape::parse(
        "# HELP x y\n# TYPE a counter\na 3\nb{reason=\"x\",topic=\"q\\\"r\"} 4.5\nb{reason=\"y\"} 1\n",
    );
    assert_eq!(scrape.get("a", &[]), 3.0);
    assert_eq!(scrape.get("b", &[("topic", "q\"r"), ("reason", "x")]), 4.5);
    assert_eq!(scrape.sum("b"), 5.5);
    assert_eq!(scrape.get("c", &[]), 0.0);
    assert_eq!(scrape.len(), 3);
}
