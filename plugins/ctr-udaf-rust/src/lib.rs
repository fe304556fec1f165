//! Smoothed click-through rate per group, as a user-defined aggregate: an
//! event with `"type": "click"` is a click, any other an impression, and
//! the value is `(clicks + a) / (impressions + a + b)` with `a` and `b` from
//! the plugin's config (`{"a": 1, "b": 10}` by default): a prior of `a`
//! clicks in `a + b` impressions, so a group with few impressions is pulled
//! towards `a / (a + b)` instead of swinging between 0 and 1.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use streamhost_sdk::aggregator::Aggregate;
use streamhost_sdk::{Error, Event};

/// The prior: `a` clicks in `a + b` impressions.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prior {
    pub a: f64,
    pub b: f64,
}

impl Default for Prior {
    fn default() -> Self {
        Prior { a: 1.0, b: 10.0 }
    }
}

static PRIOR: OnceLock<Prior> = OnceLock::new();

fn prior() -> Prior {
    PRIOR.get().copied().unwrap_or_default()
}

/// `init`: the prior from the config (`null`: the defaults).
pub fn setup(config: Option<Prior>) -> Result<(), Error> {
    let p = config.unwrap_or_default();
    if !(p.a.is_finite() && p.b.is_finite() && p.a >= 0.0 && p.b >= 0.0 && p.a + p.b > 0.0) {
        return Err(Error::new(format!("a and b must be finite, non-negative and not both 0 (got a = {}, b = {})", p.a, p.b)));
    }
    // One instance is initialised once; a second init keeps the first prior.
    let _ = PRIOR.set(p);
    Ok(())
}

/// The counts of one group.
pub struct SmoothedCtr;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub clicks: u64,
    pub impressions: u64,
}

impl Aggregate for SmoothedCtr {
    type State = Counts;

    /// Counts the event; a payload that is not a JSON object fails alone.
    fn add(state: &mut Counts, event: &Event) -> Result<(), Error> {
        let v: Value = event.json()?;
        let Value::Object(record) = v else { return Err(Error::new("expected a JSON object")) };
        if record.get("type").and_then(Value::as_str) == Some("click") {
            state.clicks += 1;
        } else {
            state.impressions += 1;
        }
        Ok(())
    }

    fn merge(into: &mut Counts, other: Counts) {
        into.clicks += other.clicks;
        into.impressions += other.impressions;
    }

    /// `{"ctr": .., "clicks": .., "impressions": ..}`.
    fn finish(state: &Counts) -> Value {
        let Prior { a, b } = prior();
        let ctr = (state.clicks as f64 + a) / (state.impressions as f64 + a + b);
        json!({"ctr": ctr, "clicks": state.clicks, "impressions": state.impressions})
    }
}

streamhost_sdk::aggregator!(SmoothedCtr, init = setup);

#[cfg(test)]
mod tests {
    use super::*;
    use streamhost_sdk::aggregator::{add_batch, create_state, finish_batch, merge_batch};

    fn ev(kind: &str) -> Event {
        Event::new(json!({"type": kind, "user": "u"}).to_string())
    }

    #[test]
    fn counts_clicks_and_impressions_per_group() {
        let empty = create_state::<SmoothedCtr>();
        let events = vec![ev("click"), ev("view"), ev("impression"), Event::new("[1]"), ev("click"), ev("click")];
        let (states, errors) = add_batch::<SmoothedCtr>(vec![empty.clone(), empty], events, &[0, 0, 0, 0, 1, 0]);
        assert_eq!(errors, vec![(3, "expected a JSON object".to_string())]);
        let values = finish_batch::<SmoothedCtr>(states.clone(), false);
        // Default prior a = 1, b = 10.
        check(&values[0], 2, 2, 3.0 / 13.0);
        check(&values[1], 1, 0, 2.0 / 11.0);
        let merged = merge_batch::<SmoothedCtr>(states, &[0, 0], 1).unwrap();
        check(&finish_batch::<SmoothedCtr>(merged, false)[0], 3, 2, 4.0 / 13.0);
    }

    /// Counts exact, the rate within 1e-12 (serde_json's float text is not
    /// always the nearest double when read back).
    fn check(value: &Result<Value, String>, clicks: u64, impressions: u64, ctr: f64) {
        let v = value.as_ref().unwrap();
        assert_eq!((v["clicks"].as_u64(), v["impressions"].as_u64()), (Some(clicks), Some(impressions)), "{v}");
        assert!((v["ctr"].as_f64().unwrap() - ctr).abs() < 1e-12, "{v} vs {ctr}");
    }

    #[test]
    fn a_bad_prior_is_refused() {
        assert!(setup(Some(Prior { a: -1.0, b: 2.0 })).unwrap_err().message().contains("non-negative"));
        assert!(setup(Some(Prior { a: 0.0, b: 0.0 })).is_err());
        assert!(serde_json::from_str::<Prior>(r#"{"a": 1, "c": 2}"#).is_err(), "unknown fields refused");
        assert_eq!(serde_json::from_str::<Prior>(r#"{"a": 2}"#).unwrap(), Prior { a: 2.0, b: 10.0 });
    }
}
