//! The cleaning of one impression line, with borrowed fields: strings are
//! copied only when they need rewriting (escapes, case, whitespace).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::timestamp::{normalise_ms, parse_timestamp_ms};

/// Positions beyond this are clamped (a feed is never longer).
pub const MAX_POSITION: i64 = 1000;

/// Why a record was rejected (dead-lettered by the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanError {
    /// Not a JSON object of the expected shape.
    InvalidJson(String),
    /// The record is some other event type.
    NotAnImpression(String),
    /// A required field is absent or empty.
    Missing(&'static str),
    /// `ts` is not a usable timestamp.
    BadTimestamp,
}

impl fmt::Display for CleanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CleanError::InvalidJson(e) => write!(f, "invalid JSON: {e}"),
            CleanError::NotAnImpression(kind) => write!(f, "not an impression: event {kind:?}"),
            CleanError::Missing(field) => write!(f, "missing or empty {field}"),
            CleanError::BadTimestamp => f.write_str("unparseable ts"),
        }
    }
}

impl std::error::Error for CleanError {}

impl From<CleanError> for String {
    fn from(e: CleanError) -> String {
        e.to_string()
    }
}

/// A raw impression; unknown fields are skipped.
#[derive(Deserialize)]
struct RawImpression<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    ts: Option<RawTs<'a>>,
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    device: Option<Cow<'a, str>>,
    #[serde(borrow)]
    os: Option<Cow<'a, str>>,
    #[serde(borrow)]
    app_version: Option<Cow<'a, str>>,
    position: Option<f64>,
    #[serde(borrow)]
    page: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ab: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    is_bot: Option<bool>,
    duration_ms: Option<f64>,
    #[serde(borrow)]
    extra: Option<&'a RawValue>,
}

/// `ts` as it comes: a number or a string (possibly with escapes).
enum RawTs<'a> {
    Int(i64),
    Float(f64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawTs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TsVisitor;
        impl<'de> Visitor<'de> for TsVisitor {
            type Value = RawTs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a timestamp number or string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawTs::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map(RawTs::Int).unwrap_or(RawTs::Float(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawTs::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawTs::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawTs::Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(TsVisitor)
    }
}

impl RawTs<'_> {
    fn to_ms(&self) -> Option<i64> {
        match self {
            RawTs::Int(v) => normalise_ms(*v),
            RawTs::Float(v) if v.is_finite() && *v >= 0.0 && *v < 9.0e15 => normalise_ms(*v as i64),
            RawTs::Float(_) => None,
            RawTs::Text(t) => parse_timestamp_ms(t),
        }
    }
}

/// The cleaned record, serialised compactly in this field order.
#[derive(Serialize)]
struct CleanImpression<'a> {
    event: &'static str,
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    user_id: &'a str,
    item_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_version: Option<&'a str>,
    position: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ab: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<&'a RawValue>,
}

/// Cleans one raw impression line. `Ok(None)`: bot traffic, dropped.
pub fn clean_impression(raw: &[u8]) -> Result<Option<Vec<u8>>, CleanError> {
    let mut out = Vec::with_capacity(raw.len());
    Ok(clean_impression_into(raw, &mut out)?.map(|_| out))
}

/// Cleans one raw impression line, appending the cleaned JSON to `out`.
/// Returns its event time in ms, or `None` when the record is bot traffic
/// (then nothing is written).
pub fn clean_impression_into(raw: &[u8], out: &mut Vec<u8>) -> Result<Option<i64>, CleanError> {
    let r: RawImpression = serde_json::from_slice(raw).map_err(|e| CleanError::InvalidJson(e.to_string()))?;
    if let Some(kind) = r.event.as_deref() {
        if kind != "impression" {
            return Err(CleanError::NotAnImpression(kind.to_string()));
        }
    }
    if r.is_bot == Some(true) || r.user_agent.as_deref().is_some_and(is_bot_agent) {
        return Ok(None);
    }
    let user_id = required(&r.user_id, "user_id")?;
    let item_id = required(&r.item_id, "item_id")?;
    let ts = r.ts.as_ref().ok_or(CleanError::Missing("ts"))?.to_ms().ok_or(CleanError::BadTimestamp)?;
    let (os, os_version) = match r.os.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(os) => match os.split_once(char::is_whitespace) {
            Some((name, version)) => (Some(lowercase(name)), Some(version.trim_start())),
            None => (Some(lowercase(os)), None),
        },
        None => (None, None),
    };
    let clean = CleanImpression {
        event: "impression",
        ts,
        request_id: non_empty(&r.request_id),
        user_id,
        item_id,
        device: r.device.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(lowercase),
        os,
        os_version,
        app_version: non_empty(&r.app_version),
        position: clamp_position(r.position),
        page: r.page.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(lowercase),
        ab: non_empty(&r.ab),
        duration_ms: r.duration_ms.filter(|d| d.is_finite()).map(|d| d.max(0.0) as i64),
        extra: r.extra.filter(|e| e.get() != "null"),
    };
    serde_json::to_writer(&mut *out, &clean).map_err(|e| CleanError::InvalidJson(e.to_string()))?;
    Ok(Some(ts))
}

fn required<'a>(field: &'a Option<Cow<'_, str>>, name: &'static str) -> Result<&'a str, CleanError> {
    non_empty(field).ok_or(CleanError::Missing(name))
}

fn non_empty<'a>(field: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    field.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Lowercases, borrowing when there is nothing to change (the common case).
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) || !s.is_ascii() {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn clamp_position(p: Option<f64>) -> i64 {
    match p {
        Some(p) if p.is_finite() => (p as i64).clamp(0, MAX_POSITION),
        _ => 0,
    }
}

/// Crawler user agents: "Googlebot", "bingbot", "AhrefsBot", "... spider",
/// "crawler" (ASCII case-insensitive, without allocating).
fn is_bot_agent(agent: &str) -> bool {
    const MARKERS: [&[u8]; 3] = [b"bot", b"spider", b"crawl"];
    let a = agent.as_bytes();
    MARKERS.iter().any(|m| a.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event":"impression","ts":1700000000123,"request_id":"r-000001a4","user_id":"u-12345","item_id":"i-9876","device":" Android ","os":"android 14","app_version":"8.2.1","position":3,"page":"feed","ab":"exp_42:B","user_agent":"Mozilla/5.0 (Linux; Android 14)","duration_ms":1234,"extra":{"net":"wifi","lang":"en-US"}}"#;

    fn clean_json(raw: &str) -> serde_json::Value {
        let out = clean_impression(raw.as_bytes()).expect("accepted").expect("kept");
        serde_json::from_slice(&out).expect("valid JSON out")
    }

    #[test]
    fn cleans_a_typical_line_compactly() {
        let out = clean_impression(GOOD.as_bytes()).unwrap().unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            r#"{"event":"impression","ts":1700000000123,"request_id":"r-000001a4","user_id":"u-12345","item_id":"i-9876","device":"android","os":"android","os_version":"14","app_version":"8.2.1","position":3,"page":"feed","ab":"exp_42:B","duration_ms":1234,"extra":{"net":"wifi","lang":"en-US"}}"#
        );
        assert!(out.len() < GOOD.len());
    }

    #[test]
    fn normalises_case_whitespace_string_ts_and_negative_position() {
        let raw = GOOD
            .replace(r#"" Android ""#, r#""  IOS  ""#)
            .replace(r#""android 14""#, r#""  iOS   17.1 ""#)
            .replace("1700000000123", r#""1700000000123""#)
            .replace(r#""position":3"#, r#""position":-4"#);
        let v = clean_json(&raw);
        assert_eq!(v["device"], "ios");
        assert_eq!(v["os"], "ios");
        assert_eq!(v["os_version"], "17.1");
        assert_eq!(v["ts"], 1_700_000_000_123i64);
        assert_eq!(v["position"], 0);
        let v = clean_json(&GOOD.replace(r#""position":3"#, r#""position":99999"#));
        assert_eq!(v["position"], MAX_POSITION);
    }

    #[test]
    fn timestamps_in_seconds_and_rfc3339_become_ms() {
        assert_eq!(clean_json(&GOOD.replace("1700000000123", "1700000000"))["ts"], 1_700_000_000_000i64);
        assert_eq!(clean_json(&GOOD.replace("1700000000123", r#""2023-11-14T22:13:20.5Z""#))["ts"], 1_700_000_000_500i64);
        assert_eq!(clean_impression(GOOD.replace("1700000000123", r#""soon""#).as_bytes()), Err(CleanError::BadTimestamp));
        assert_eq!(clean_impression(GOOD.replace(r#""ts":1700000000123,"#, "").as_bytes()), Err(CleanError::Missing("ts")));
    }

    #[test]
    fn drops_bots() {
        let googlebot = GOOD.replace("Mozilla/5.0 (Linux; Android 14)", "Googlebot/2.1 (+http://www.google.com/bot.html)");
        assert_eq!(clean_impression(googlebot.as_bytes()), Ok(None));
        let flagged = GOOD.replace(r#""page":"feed""#, r#""page":"feed","is_bot":true"#);
        assert_eq!(clean_impression(flagged.as_bytes()), Ok(None));
        let mut out = Vec::new();
        assert_eq!(clean_impression_into(flagged.as_bytes(), &mut out), Ok(None));
        assert!(out.is_empty());
        assert!(is_bot_agent("Mozilla/5.0 (compatible; AhrefsBot/7.0)"));
        assert!(!is_bot_agent("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36"));
    }

    #[test]
    fn rejects_missing_ids_and_other_events() {
        let no_user = GOOD.replace(r#""user_id":"u-12345","#, "");
        assert_eq!(clean_impression(no_user.as_bytes()), Err(CleanError::Missing("user_id")));
        let empty_item = GOOD.replace(r#""i-9876""#, r#""  ""#);
        assert_eq!(clean_impression(empty_item.as_bytes()), Err(CleanError::Missing("item_id")));
        let click = GOOD.replace(r#""event":"impression""#, r#""event":"click""#);
        assert_eq!(clean_impression(click.as_bytes()), Err(CleanError::NotAnImpression("click".into())));
        assert_eq!(CleanError::Missing("user_id").to_string(), "missing or empty user_id");
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        for raw in [&b""[..], b"null", b"[]", b"{", b"{\"user_id\":5}", b"\xff\xfe", b"{\"ts\":{}}", b"{\"position\":\"x\"}"] {
            assert!(matches!(clean_impression(raw), Err(CleanError::InvalidJson(_))), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn escaped_strings_are_decoded_and_re_escaped() {
        let raw = GOOD.replace(r#""u-12345""#, r#""u-\"quoted\"\u00e9""#);
        assert_eq!(clean_json(&raw)["user_id"], "u-\"quoted\"é");
    }

    #[test]
    fn plugin_function_sets_the_event_time() {
        let e = streamhost_sdk::Event::new(GOOD).with_timestamp(5);
        let out = crate::clean(e).unwrap().unwrap();
        assert_eq!(out.timestamp, 1_700_000_000_123);
        assert_eq!(out.json::<serde_json::Value>().unwrap()["device"], "android");
        let batch = vec![
            streamhost_sdk::Event::new(GOOD),
            streamhost_sdk::Event::new("not json"),
            streamhost_sdk::Event::new(GOOD.replace("Mozilla", "bingbot")),
        ];
        let outcomes = streamhost_sdk::process_batch(batch, crate::clean);
        assert_eq!(outcomes.len(), 3);
        assert_eq!(outcomes[0].as_ref().map(Vec::len), Ok(1));
        assert!(outcomes[1].as_ref().unwrap_err().starts_with("invalid JSON"));
        assert_eq!(outcomes[2].as_ref().map(Vec::len), Ok(0));
    }
}
