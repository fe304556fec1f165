//! Example joiner plugin: turns an impression and the clicks a window join
//! matched to it into one training sample.
//!
//! Output (JSON object, keys sorted): `request_id`, `user_id`, `item_id`,
//! the impression's feature fields (by default every other field of the
//! impression; config `{"features": [...]}` picks them), then
//! `label` (1 if any click matched, else 0), `clicks` (how many) and
//! `dwell_ms` (the sum of the clicks' integer `dwell_ms`). The sample keeps
//! the impression's time and key. An impression that is not a JSON object,
//! or lacks one of the three ids, fails alone (dead-lettered).
//!
//! Config: `{"clicks_input": "clicks", "features": ["device", ...]}`, both
//! optional. `plugins/sample-joiner-python` is the same plugin in Python;
//! the host's tests check that both give the same samples.

use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{Map, Value};
use streamhost_sdk::joiner::Matches;
use streamhost_sdk::{Error, Event};

/// The plugin's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The input whose matches are clicks.
    #[serde(default = "default_clicks_input")]
    pub clicks_input: String,
    /// The impression fields copied into the sample; `None`: all of them.
    #[serde(default)]
    pub features: Option<Vec<String>>,
}

fn default_clicks_input() -> String {
    "clicks".into()
}

impl Default for Config {
    fn default() -> Self {
        Config { clicks_input: default_clicks_input(), features: None }
    }
}

static CONFIG: Mutex<Option<Config>> = Mutex::new(None);

/// The ids every sample carries.
pub const IDS: [&str; 3] = ["request_id", "user_id", "item_id"];

/// The sample of `impression` given its `clicks` (pure, for native use).
pub fn sample(impression: &[u8], clicks: &[Event], config: &Config) -> Result<Vec<u8>, Error> {
    let Value::Object(imp) = serde_json::from_slice(impression)? else {
        return Err(Error::new("the impression is not a JSON object"));
    };
    let mut out = Map::new();
    for id in IDS {
        match imp.get(id) {
            Some(v) if !v.is_null() => out.insert(id.to_string(), v.clone()),
            _ => return Err(Error::new(format!("the impression has no {id}"))),
        };
    }
    match &config.features {
        Some(features) => {
            for f in features {
                if let Some(v) = imp.get(f) {
                    out.insert(f.clone(), v.clone());
                }
            }
        }
        None => {
            for (k, v) in &imp {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    let dwell: i64 = clicks
        .iter()
        .filter_map(|c| serde_json::from_slice::<Value>(&c.value).ok())
        .filter_map(|c| c.get("dwell_ms").and_then(Value::as_i64))
        .fold(0i64, i64::saturating_add);
    out.insert("label".into(), Value::from(u8::from(!clicks.is_empty())));
    out.insert("clicks".into(), Value::from(clicks.len()));
    out.insert("dwell_ms".into(), Value::from(dwell));
    Ok(serde_json::to_vec(&Value::Object(out))?)
}

/// The plugin's join: one sample per impression.
pub fn join(main: Event, matches: &Matches) -> Result<Event, Error> {
    let config = CONFIG.lock().ok().and_then(|c| c.clone()).unwrap_or_default();
    if !matches.inputs().contains(&config.clicks_input) {
        return Err(Error::new(format!(
            "no input named {:?} among this join's inputs {:?} (config clicks_input)",
            config.clicks_input,
            matches.inputs()
        )));
    }
    let value = sample(&main.value, matches.get(&config.clicks_input), &config)?;
    Ok(Event { value, ..main })
}

/// Reads the config (`null`: the defaults).
pub fn setup(config: Option<Config>) -> Result<(), Error> {
    *CONFIG.lock().map_err(|_| Error::new("config lock poisoned"))? = Some(config.unwrap_or_default());
    Ok(())
}

streamhost_sdk::joiner!(join, init = setup);

#[cfg(test)]
mod tests {
    use super::*;
    use streamhost_sdk::joiner::join_batch;

    fn ev(v: &str, t: i64) -> Event {
        Event { key: None, value: v.as_bytes().to_vec(), timestamp: t, headers: vec![] }
    }

    #[test]
    fn labels_counts_and_sums_dwell() {
        let imp = r#"{"request_id":"r1","user_id":"u1","item_id":"i1","device":"ios","position":3}"#;
        let out = join_batch(
            &["clicks"],
            vec![
                (ev(imp, 10), vec![("clicks", ev(r#"{"dwell_ms":100}"#, 11)), ("clicks", ev(r#"{"dwell_ms":50}"#, 12))]),
                (ev(imp, 20), vec![]),
                (ev(r#"{"user_id":"u"}"#, 30), vec![]),
            ],
            join,
        );
        let v: Value = serde_json::from_slice(&out[0].as_ref().unwrap()[0].value).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"request_id":"r1","user_id":"u1","item_id":"i1","device":"ios","position":3,
                               "label":1,"clicks":2,"dwell_ms":150})
        );
        assert_eq!(out[0].as_ref().unwrap()[0].timestamp, 10);
        let v: Value = serde_json::from_slice(&out[1].as_ref().unwrap()[0].value).unwrap();
        assert_eq!((v["label"].as_i64(), v["clicks"].as_i64(), v["dwell_ms"].as_i64()), (Some(0), Some(0), Some(0)));
        assert!(out[2].as_ref().unwrap_err().contains("request_id"));
    }

    #[test]
    fn features_pick_fields() {
        let config = Config { features: Some(vec!["device".into(), "missing".into()]), ..Config::default() };
        let imp = br#"{"request_id":"r1","user_id":"u1","item_id":"i1","device":"ios","position":3}"#;
        let v: Value = serde_json::from_slice(&sample(imp, &[], &config).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"request_id":"r1","user_id":"u1","item_id":"i1","device":"ios","label":0,"clicks":0,"dwell_ms":0}));
    }
}
