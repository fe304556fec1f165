//! The figures rules read: a gathered registry, by metric name and labels.

use std::collections::HashMap;

use prometheus::proto::{MetricFamily, MetricType};

/// One gathering of the registry: each counter's and gauge's series, by
/// metric name (histograms and summaries are not read by rules).
#[derive(Debug, Default)]
pub struct Figures {
    series: HashMap<String, Vec<Series>>,
}

#[derive(Debug)]
struct Series {
    labels: Vec<(String, String)>,
    value: f64,
}

impl Figures {
    pub fn gather(families: &[MetricFamily]) -> Self {
        let mut series: HashMap<String, Vec<Series>> = HashMap::new();
        for f in families {
            let value = |m: &prometheus::proto::Metric| match f.get_field_type() {
                MetricType::COUNTER => Some(m.get_counter().get_value()),
                MetricType::GAUGE => Some(m.get_gauge().get_value()),
                _ => None,
            };
            let entry = series.entry(f.name().to_string()).or_default();
            for m in f.get_metric() {
                if let Some(value) = value(m) {
                    let labels = m.get_label().iter().map(|l| (l.name().to_string(), l.value().to_string())).collect();
                    entry.push(Series { labels, value });
                }
            }
        }
        Figures { series }
    }

    /// Adds a series by hand (tests and callers that gather elsewhere).
    pub fn insert(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.series.entry(name.into()).or_default().push(Series { labels, value });
    }

    fn matching<'a>(&'a self, name: &str, filter: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = f64> + 'a {
        self.series
            .get(name)
            .into_iter()
            .flatten()
            .filter(move |s| filter.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|s| s.value)
    }

    /// The sum of the series of `name` whose labels include `filter`
    /// (`None`: there is none).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, filter).fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }

    /// The largest of them (`None`: there is none, or none is a number).
    pub fn max(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, filter).filter(|v| v.is_finite()).fold(None, |acc: Option<f64>, v| Some(acc.map_or(v, |a| a.max(v))))
    }
}
