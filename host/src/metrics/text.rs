//! Reading Prometheus's text format back (version 0.0.4): what
//! `streamhost top` does with a scrape of `/metrics`.

use std::collections::BTreeMap;

/// One sample: a series (name and labels) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The samples of a scrape, in order. Comment lines (`# HELP`, `# TYPE`)
/// and blank lines are skipped; a line that is not a sample is an error
/// naming its number.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(sample(line).ok_or_else(|| format!("line {}: not a sample: {line}", i + 1))?);
    }
    Ok(samples)
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = label_set(after)?;
        labels = parsed;
        rest = tail;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// `a="x",b="y"}` → the labels and what follows the `}`.
fn label_set(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start();
        if let Some(tail) = s.strip_prefix('}') {
            return Some((labels, tail));
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name, value);
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_escapes_and_special_values() {
        let text = "# HELP a An a.\n# TYPE a counter\na 3\nb{x=\"1\",y=\"q\\\"u\\\\o\\nte\"} 2.5 1700000000000\nc{} +Inf\nd{z=\"\"} NaN\n\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].name.as_str(), s[0].value, s[0].labels.len()), ("a", 3.0, 0));
        assert_eq!((s[1].label("x"), s[1].label("y"), s[1].value), ("1", "q\"u\\o\nte", 2.5));
        assert_eq!(s[2].value, f64::INFINITY);
        assert!(s[3].value.is_nan());
        assert_eq!(s[3].labels.get("z").map(String::as_str), Some(""));
        assert!(parse("a{x=\"1\" 2").unwrap_err().contains("line 1"));
        assert!(parse("a notanumber").is_err());
    }

    #[test]
    fn reads_back_what_the_metrics_render() {
        let m = super::super::Metrics::new("p\"1", true);
        let s = m.step("clean", "0.1");
        s.events_in.inc_by(7);
        s.batch.observe(0.002);
        let samples = parse(&m.render()).unwrap();
        let events = samples.iter().find(|s| s.name == "streamhost_step_events_in_total").unwrap();
        assert_eq!((events.label("step"), events.label("worker"), events.label("pipeline"), events.value), ("clean", "0.1", "p\"1", 7.0));
        let count = samples.iter().find(|s| s.name == "streamhost_step_batch_duration_seconds_count").unwrap();
        assert_eq!(count.value, 1.0);
    }
}
