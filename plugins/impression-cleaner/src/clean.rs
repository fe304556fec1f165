//! The cleaning of one impression line, in one pass over the input with
//! the scanner of [`crate::json`]: strings are borrowed from the input and
//! copied only when they need rewriting (escapes, case, whitespace).

use std::borrow::Cow;
use std::fmt;

use crate::json::{write_i64, write_str, JsonError, Scanner, Value};
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

impl From<JsonError> for CleanError {
    fn from(e: JsonError) -> Self {
        CleanError::InvalidJson(e.to_string())
    }
}

/// The fields of a raw impression the cleaner looks at (others are
/// validated and skipped). `null` counts as absent.
#[derive(Default)]
struct RawImpression<'a> {
    event: Option<Cow<'a, str>>,
    ts: Option<RawTs<'a>>,
    request_id: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    item_id: Option<Cow<'a, str>>,
    device: Option<Cow<'a, str>>,
    os: Option<Cow<'a, str>>,
    app_version: Option<Cow<'a, str>>,
    position: Option<f64>,
    page: Option<Cow<'a, str>>,
    ab: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    is_bot: Option<bool>,
    duration_ms: Option<f64>,
    /// Passed through verbatim.
    extra: Option<&'a str>,
}

/// `ts` as it comes: a number or a string.
enum RawTs<'a> {
    Int(i64),
    Float(f64),
    Text(Cow<'a, str>),
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

/// The fields the cleaner reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Event,
    Ts,
    RequestId,
    UserId,
    ItemId,
    Device,
    Os,
    AppVersion,
    Position,
    Page,
    Ab,
    UserAgent,
    IsBot,
    DurationMs,
    Extra,
    Other,
}

/// Recognises a known key at the start of `rest` (the input after the
/// key's opening quote) by comparing it, closing quote included, with the
/// one or two fields starting with the same letter; returns the field and
/// the length matched. None for other keys and keys written with escapes.
fn known_key(rest: &[u8]) -> Option<(Field, usize)> {
    let candidates: &[(&[u8], Field)] = match rest.first()? {
        b'e' => &[(b"event\"", Field::Event), (b"extra\"", Field::Extra)],
        b't' => &[(b"ts\"", Field::Ts)],
        b'r' => &[(b"request_id\"", Field::RequestId)],
        b'u' => &[(b"user_id\"", Field::UserId), (b"user_agent\"", Field::UserAgent)],
        b'i' => &[(b"item_id\"", Field::ItemId), (b"is_bot\"", Field::IsBot)],
        b'd' => &[(b"device\"", Field::Device), (b"duration_ms\"", Field::DurationMs)],
        b'o' => &[(b"os\"", Field::Os)],
        b'a' => &[(b"app_version\"", Field::AppVersion), (b"ab\"", Field::Ab)],
        b'p' => &[(b"position\"", Field::Position), (b"page\"", Field::Page)],
        _ => return None,
    };
    candidates
        .iter()
        .find(|(name, _)| rest.len() >= name.len() && rest.iter().zip(name.iter()).all(|(a, b)| a == b))
        .map(|(name, field)| (*field, name.len()))
}

/// Recognises a key by its length and first and last bytes (unique among
/// the fields), then confirms it: one comparison per key instead of one per
/// candidate field, as a string `match` would do (each a `memcmp` call in
/// WebAssembly).
fn field_of(key: &[u8]) -> Field {
    let (Some(&first), Some(&last)) = (key.first(), key.last()) else { return Field::Other };
    let (field, name): (Field, &[u8]) = match (key.len(), first, last) {
        (5, b'e', b't') => (Field::Event, b"event"),
        (2, b't', b's') => (Field::Ts, b"ts"),
        (10, b'r', b'd') => (Field::RequestId, b"request_id"),
        (7, b'u', b'd') => (Field::UserId, b"user_id"),
        (7, b'i', b'd') => (Field::ItemId, b"item_id"),
        (6, b'd', b'e') => (Field::Device, b"device"),
        (2, b'o', b's') => (Field::Os, b"os"),
        (11, b'a', b'n') => (Field::AppVersion, b"app_version"),
        (8, b'p', b'n') => (Field::Position, b"position"),
        (4, b'p', b'e') => (Field::Page, b"page"),
        (2, b'a', b'b') => (Field::Ab, b"ab"),
        (10, b'u', b't') => (Field::UserAgent, b"user_agent"),
        (6, b'i', b't') => (Field::IsBot, b"is_bot"),
        (11, b'd', b's') => (Field::DurationMs, b"duration_ms"),
        (5, b'e', b'a') => (Field::Extra, b"extra"),
        _ => return Field::Other,
    };
    // A byte loop: a slice `==` is a `memcmp` call in WebAssembly.
    if key.iter().zip(name).all(|(a, b)| a == b) { field } else { Field::Other }
}

impl<'a> RawImpression<'a> {
    fn parse(raw: &'a [u8]) -> Result<Self, CleanError> {
        let mut s = Scanner::new(raw)?;
        s.begin_object()?;
        let mut r = RawImpression::default();
        let mut first = true;
        while s.next_member(first)? {
            first = false;
            let field = match known_key(s.key_bytes()) {
                Some((field, len)) => {
                    s.consume_key(len)?;
                    field
                }
                None => field_of(s.key()?.as_bytes()),
            };
            let at = s.position();
            let type_error = |field: &str, expected: &str| {
                CleanError::InvalidJson(format!("{field}: expected {expected} at byte {at}"))
            };
            macro_rules! set {
                ($field:ident, $value:expr) => {{
                    if r.$field.is_some() {
                        return Err(CleanError::InvalidJson(format!("duplicate field {} at byte {at}", stringify!($field))));
                    }
                    r.$field = $value;
                }};
            }
            macro_rules! string {
                ($field:ident) => {
                    set!($field, match s.value()? {
                        Value::Str(v) => Some(v),
                        Value::Null => None,
                        _ => return Err(type_error(stringify!($field), "a string")),
                    })
                };
            }
            macro_rules! number {
                ($field:ident) => {
                    set!($field, match s.value()? {
                        Value::Int(v) => Some(v as f64),
                        Value::Float(v) => Some(v),
                        Value::Null => None,
                        _ => return Err(type_error(stringify!($field), "a number")),
                    })
                };
            }
            match field {
                Field::Event => string!(event),
                Field::RequestId => string!(request_id),
                Field::UserId => string!(user_id),
                Field::ItemId => string!(item_id),
                Field::Device => string!(device),
                Field::Os => string!(os),
                Field::AppVersion => string!(app_version),
                Field::Page => string!(page),
                Field::Ab => string!(ab),
                Field::UserAgent => string!(user_agent),
                Field::Position => number!(position),
                Field::DurationMs => number!(duration_ms),
                Field::Ts => set!(ts, match s.value()? {
                    Value::Int(v) => Some(RawTs::Int(v)),
                    Value::Float(v) => Some(RawTs::Float(v)),
                    Value::Str(v) => Some(RawTs::Text(v)),
                    Value::Null => None,
                    _ => return Err(type_error("ts", "a number or a string")),
                }),
                Field::IsBot => set!(is_bot, match s.value()? {
                    Value::Bool(v) => Some(v),
                    Value::Null => None,
                    _ => return Err(type_error("is_bot", "a boolean")),
                }),
                Field::Extra => set!(extra, Some(s.raw_value()?).filter(|raw| *raw != "null")),
                Field::Other => s.skip()?,
            }
        }
        s.finish()?;
        Ok(r)
    }
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
    let r = RawImpression::parse(raw)?;
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
    let (os, os_version) = match r.os.as_deref().map(trim).filter(|s| !s.is_empty()) {
        Some(os) => match os.split_once(char::is_whitespace) {
            Some((name, version)) => (Some(lowercase(name)), Some(version.trim_start())),
            None => (Some(lowercase(os)), None),
        },
        None => (None, None),
    };
    let device = r.device.as_deref().map(trim).filter(|s| !s.is_empty()).map(lowercase);
    let page = r.page.as_deref().map(trim).filter(|s| !s.is_empty()).map(lowercase);

    // Field order and formatting are part of the output contract.
    out.extend_from_slice(b"{\"event\":\"impression\",\"ts\":");
    write_i64(out, ts);
    // A macro rather than a closure: each prefix is a constant, which the
    // compiler writes with plain stores instead of a `memcpy` call.
    macro_rules! field {
        ($name:literal, $value:expr, $raw:expr) => {
            if let Some(v) = $value {
                out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes());
                if $raw {
                    // Borrowed from the input without escapes: nothing to escape.
                    out.push(b'"');
                    out.extend_from_slice(v.as_bytes());
                    out.push(b'"');
                } else {
                    write_str(out, v);
                }
            }
        };
    }
    field!("request_id", non_empty(&r.request_id), is_raw(&r.request_id));
    field!("user_id", Some(user_id), is_raw(&r.user_id));
    field!("item_id", Some(item_id), is_raw(&r.item_id));
    field!("device", device.as_deref(), is_raw(&r.device));
    field!("os", os.as_deref(), is_raw(&r.os));
    field!("os_version", os_version, is_raw(&r.os));
    field!("app_version", non_empty(&r.app_version), is_raw(&r.app_version));
    out.extend_from_slice(b",\"position\":");
    write_i64(out, clamp_position(r.position));
    field!("page", page.as_deref(), is_raw(&r.page));
    field!("ab", non_empty(&r.ab), is_raw(&r.ab));
    if let Some(d) = r.duration_ms.filter(|d| d.is_finite()) {
        out.extend_from_slice(b",\"duration_ms\":");
        write_i64(out, d.max(0.0) as i64);
    }
    if let Some(extra) = r.extra {
        out.extend_from_slice(b",\"extra\":");
        out.extend_from_slice(extra.as_bytes());
    }
    out.push(b'}');
    Ok(Some(ts))
}

/// Whether a string field was borrowed from the input as is: such text
/// holds no quote, backslash or control character (the scanner copies
/// strings with escapes), and trimming or lowercasing it adds none.
fn is_raw(field: &Option<Cow<'_, str>>) -> bool {
    matches!(field, Some(Cow::Borrowed(_)))
}

/// `str::trim`, with a fast path for the usual value that needs none.
fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

fn required<'a>(field: &'a Option<Cow<'_, str>>, name: &'static str) -> Result<&'a str, CleanError> {
    non_empty(field).ok_or(CleanError::Missing(name))
}

fn non_empty<'a>(field: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    field.as_deref().map(trim).filter(|s| !s.is_empty())
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
/// "crawler" (ASCII case-insensitive, one pass, without allocating).
fn is_bot_agent(agent: &str) -> bool {
    let a = agent.as_bytes();
    let mut i = 0;
    while let Some(at) = next_marker_start(a, i) {
        let marker: &[u8] = match a[at] | 0x20 {
            b'b' => b"bot",
            b's' => b"spider",
            _ => b"crawl",
        };
        if a.len() - at >= marker.len() && a[at..at + marker.len()].eq_ignore_ascii_case(marker) {
            return true;
        }
        i = at + 1;
    }
    false
}

/// The first index at or after `from` holding a 'b', 's' or 'c' (any
/// case): eight bytes at a time, since user agents are long.
fn next_marker_start(a: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut i = from;
    while i + 8 <= a.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&a[i..i + 8]);
        // Setting bit 5 lowercases ASCII letters; only 'B'/'b' become 'b'.
        let w = u64::from_le_bytes(word) | (ONES * 0x20);
        let mask = zero_bytes(w ^ (ONES * u64::from(b'b')))
            | zero_bytes(w ^ (ONES * u64::from(b's')))
            | zero_bytes(w ^ (ONES * u64::from(b'c')));
        if mask != 0 {
            // The lowest flagged byte is exact (higher ones may be borrows).
            return Some(i + (mask.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    (i..a.len()).find(|&j| matches!(a[j] | 0x20, b'b' | b's' | b'c'))
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
    fn keys_written_with_escapes_are_still_recognised() {
        let raw = GOOD.replace(r#""user_id""#, r#""user\u005fid""#);
        assert_eq!(clean_json(&raw)["user_id"], "u-12345");
    }

    #[test]
    fn duplicate_fields_are_refused() {
        let raw = GOOD.replace(r#""page":"feed""#, r#""page":"feed","user_id":"u-2""#);
        match clean_impression(raw.as_bytes()) {
            Err(CleanError::InvalidJson(e)) => assert!(e.starts_with("duplicate field user_id"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_fields_and_extra_are_validated_and_extra_kept_verbatim() {
        let extra = r#"{"a":[1,-2.5e3,"\u00e9\ud83d\ude00",{"b":null}], "c" : true}"#;
        let raw = GOOD.replace(r#"{"net":"wifi","lang":"en-US"}"#, extra).replace(r#""page":"feed""#, r#""page":"feed","more":["x",{}]"#);
        let out = clean_impression(raw.as_bytes()).unwrap().unwrap();
        assert!(std::str::from_utf8(&out).unwrap().ends_with(&format!(r#","extra":{extra}}}"#)));
        assert_eq!(clean_json(&raw)["extra"]["a"][2], "é😀");
        for bad in [r#"[1,]"#, r#""\q""#, r#"{"k":}"#, r#""\ud800""#, r#""\udc00x""#] {
            let raw = GOOD.replace(r#""page":"feed""#, &format!(r#""page":"feed","more":{bad}"#));
            assert!(matches!(clean_impression(raw.as_bytes()), Err(CleanError::InvalidJson(_))), "{bad}");
        }
    }

    #[test]
    fn plugin_function_sets_the_event_time() {
        let e = streamhost_sdk::Event::new(GOOD).with_timestamp(5).with_key("k");
        let out = streamhost_sdk::process_batch(vec![e], crate::clean).remove(0).unwrap().remove(0);
        assert_eq!(out.timestamp, 1_700_000_000_123);
        assert_eq!(out.key.as_deref(), Some(&b"k"[..]), "the key is kept");
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
