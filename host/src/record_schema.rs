//! Checks a raw record against its source's declared schema, and pulls the
//! event time and key out of it, in one borrowed parse of the top level.
//!
//! Only top-level fields are looked at and nested values stay unparsed
//! (`RawValue`), so this costs a fraction of a full `serde_json::Value` parse.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{FieldSchema, FieldType, RecordSchema, SourceCommon};
use crate::step::{KeyCapture, RoutedKey};

/// What a source needs to know about each record, compiled once.
#[derive(Clone, Debug, Default)]
pub struct RecordCheck {
    schema: Option<RecordSchema>,
    timestamp_field: Option<String>,
    key_field: Option<String>,
    /// The timestamp field, then the key field (those named).
    wanted: Vec<String>,
}

/// Why a record was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection(pub String);

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What was found in an accepted record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    /// A keyed step's key, read in the same pass (when asked for and the
    /// record is an object without a declared schema).
    pub routed: Option<RoutedKey>,
}

impl RecordCheck {
    pub fn new(common: &SourceCommon) -> Self {
        RecordCheck {
            schema: common.schema.clone(),
            timestamp_field: common.timestamp_field.clone(),
            key_field: common.key_field.clone(),
            wanted: common.timestamp_field.iter().chain(&common.key_field).cloned().collect(),
        }
    }

    /// Validates `raw` (one JSON document) and extracts time and key.
    pub fn check(&self, raw: &[u8]) -> Result<Extracted, Rejection> {
        self.check_capturing(raw, None)
    }

    /// [`Self::check`], also reading `capture`'s key in the same pass over the
    /// top level (not for a declared schema, nor for a record that is not an
    /// object: `routed` is then `None` and the router reads it).
    pub fn check_capturing(&self, raw: &[u8], capture: Option<&dyn KeyCapture>) -> Result<Extracted, Rejection> {
        if let (Some(capture), None) = (capture, &self.schema) {
            if let Some(found) = self.capture_pass(raw, capture) {
                return found;
            }
        }
        if let Some(schema) = self.schema.as_ref().filter(|s| s.allow_extra_fields) {
            return self.schema_pass(schema, raw, capture);
        }
        if self.schema.is_none() && self.timestamp_field.is_none() && self.key_field.is_none() {
            // Still must be one well-formed JSON value.
            serde_json::from_slice::<serde::de::IgnoredAny>(raw).map_err(|e| Rejection(format!("malformed JSON: {e}")))?;
            return Ok(Extracted::default());
        }
        let refused = |e: serde_json::Error| self.refusal(raw, e);
        if self.schema.is_none() {
            // Only the time and the key: one pass, no map of the members.
            let mut found = [None, None];
            members_named(raw, &self.wanted, &mut found[..self.wanted.len()]).map_err(refused)?;
            let mut found = found.into_iter();
            let ts = self.timestamp_field.as_ref().map(|tf| (tf, found.next().flatten()));
            let key = self.key_field.as_ref().map(|kf| (kf, found.next().flatten()));
            return extract(ts, key);
        }
        let fields: TopLevel = serde_json::from_slice(raw).map_err(refused)?;
        let fields = fields.0;
        if let Some(schema) = &self.schema {
            for (name, f) in &schema.fields {
                check_field(name, f, fields.get(name.as_str()).map(|v| v.get()))?;
            }
            if !schema.allow_extra_fields {
                if let Some(extra) = fields.keys().find(|k| !schema.fields.contains_key(k.as_ref())) {
                    return Err(Rejection(format!("unexpected field `{extra}`")));
                }
            }
        }
        let ts = self.timestamp_field.as_ref().map(|tf| (tf, fields.get(tf.as_str()).copied()));
        let key = self.key_field.as_ref().map(|kf| (kf, fields.get(kf.as_str()).copied()));
        extract(ts, key)
    }
}

impl RecordCheck {
    /// A declared schema that allows other fields: one pass over the top
    /// level for its fields, the time, the key and a keyed step's key,
    /// without a map of the members (the check of every SQL table).
    fn schema_pass(&self, schema: &RecordSchema, raw: &[u8], capture: Option<&dyn KeyCapture>) -> Result<Extracted, Rejection> {
        let nf = schema.fields.len();
        // The names looked for, on the stack for a table of up to 24 of them.
        let all = schema.fields.keys().map(String::as_str).chain(self.wanted.iter().map(String::as_str)).chain(capture.map(|c| c.field()));
        let count = nf + self.wanted.len() + usize::from(capture.is_some());
        let (mut small_names, mut large_names) = ([""; 24], Vec::new());
        let wanted: &[&str] = if count <= small_names.len() {
            small_names.iter_mut().zip(all).for_each(|(w, n)| *w = n);
            &small_names[..count]
        } else {
            large_names.extend(all);
            &large_names
        };
        let mut small = [None; 24];
        let mut large = Vec::new();
        let found: &mut [Option<&RawValue>] = if wanted.len() <= small.len() {
            &mut small[..wanted.len()]
        } else {
            large.resize(wanted.len(), None);
            &mut large
        };
        let mut names = Vec::new();
        let names_out = capture.is_some_and(|c| c.wants_names()).then_some(&mut names);
        if let Err(e) = members_found(raw, wanted, found, names_out) {
            return Err(self.refusal(raw, e));
        }
        for ((name, f), v) in schema.fields.iter().zip(found.iter()) {
            check_field(name, f, v.map(RawValue::get))?;
        }
        let mut it = found[nf..].iter().copied();
        let ts = self.timestamp_field.as_ref().map(|tf| (tf, it.next().flatten()));
        let key = self.key_field.as_ref().map(|kf| (kf, it.next().flatten()));
        let mut out = extract(ts, key)?;
        if let Some(c) = capture {
            out.routed = Some(c.capture(it.next().flatten().map(RawValue::get), &names));
        }
        Ok(out)
    }

    /// Why `raw` failed to parse as an object: serde stops at the type of a
    /// non-object before reading on, so tell "well-formed but not an object"
    /// from "not JSON at all".
    fn refusal(&self, raw: &[u8], e: serde_json::Error) -> Rejection {
        if e.is_data() && e.to_string().starts_with("invalid type") {
            match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
                Ok(_) => Rejection("record is not a JSON object".into()),
                Err(e) => Rejection(format!("malformed JSON: {e}")),
            }
        } else {
            Rejection(format!("malformed JSON: {e}"))
        }
    }

    /// One pass for the time, the key field and a keyed step's key; `None`
    /// when the record is not a JSON object and the source names no field
    /// (then it is not refused here: the plain check decides).
    fn capture_pass(&self, raw: &[u8], capture: &dyn KeyCapture) -> Option<Result<Extracted, Rejection>> {
        let n = self.wanted.len();
        let mut wanted: [&str; 3] = ["", "", ""];
        for (w, name) in wanted.iter_mut().zip(self.wanted.iter().map(String::as_str).chain([capture.field()])) {
            *w = name;
        }
        let mut found = [None, None, None];
        let mut names = Vec::with_capacity(if capture.wants_names() { 32 } else { 0 });
        let names_out = capture.wants_names().then_some(&mut names);
        if let Err(e) = members_found(raw, &wanted[..=n], &mut found[..=n], names_out) {
            if n == 0 {
                return None;
            }
            // As the check without a capture says it.
            return Some(Err(self.check(raw).err().unwrap_or_else(|| Rejection(format!("malformed JSON: {e}")))));
        }
        let mut it = found[..n].iter().copied();
        let ts = self.timestamp_field.as_ref().map(|tf| (tf, it.next().flatten()));
        let key = self.key_field.as_ref().map(|kf| (kf, it.next().flatten()));
        let routed = capture.capture(found[n].map(RawValue::get), &names);
        Some(extract(ts, key).map(|x| Extracted { routed: Some(routed), ..x }))
    }
}

/// One declared field against its raw value in the record (`None`: absent).
fn check_field(name: &str, f: &FieldSchema, raw: Option<&str>) -> Result<(), Rejection> {
    let Some(raw) = raw else {
        return if f.required { Err(Rejection(format!("missing required field `{name}`"))) } else { Ok(()) };
    };
    match kind_of(raw) {
        Kind::Null if f.required => Err(Rejection(format!("required field `{name}` is null"))),
        Kind::Null => Ok(()),
        kind if !matches_type(kind, f.ty) => Err(Rejection(format!("field `{name}` should be {} but is {}", type_name(f.ty), kind.name()))),
        _ => Ok(()),
    }
}

/// The time and key of a record from the raw values of their fields, when the
/// source names such fields (`(field, value found)`).
fn extract(ts: Option<(&String, Option<&RawValue>)>, key: Option<(&String, Option<&RawValue>)>) -> Result<Extracted, Rejection> {
    let mut out = Extracted::default();
    if let Some((tf, v)) = ts {
        let v = v.ok_or_else(|| Rejection(format!("missing timestamp field `{tf}`")))?;
        out.timestamp = Some(parse_timestamp(v.get()).ok_or_else(|| {
            Rejection(format!("timestamp field `{tf}` is not a whole number of milliseconds: {}", v.get()))
        })?);
    }
    if let Some((kf, v)) = key {
        let v = v.ok_or_else(|| Rejection(format!("missing key field `{kf}`")))?;
        out.key = Some(key_bytes(v.get()));
    }
    Ok(out)
}

/// A string key's bytes without quotes; any other JSON value's text.
pub(crate) fn key_bytes(raw: &str) -> Vec<u8> {
    if raw.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<Cow<str>>(raw) {
            return s.as_bytes().to_vec();
        }
    }
    raw.as_bytes().to_vec()
}

/// Milliseconds from a JSON integer or a string holding one.
fn parse_timestamp(raw: &str) -> Option<i64> {
    let digits = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(raw);
    digits.trim().parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    String,
    Object,
    Array,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Int => "an integer",
            Kind::Float => "a number",
            Kind::String => "a string",
            Kind::Object => "an object",
            Kind::Array => "an array",
        }
    }
}

fn kind_of(raw: &str) -> Kind {
    match raw.as_bytes().first() {
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') => Kind::Null,
        _ if raw.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) => Kind::Float,
        _ => Kind::Int,
    }
}

fn matches_type(kind: Kind, ty: FieldType) -> bool {
    matches!(
        (kind, ty),
        (_, FieldType::Any)
            | (Kind::String, FieldType::String)
            | (Kind::Int, FieldType::Int | FieldType::Number)
            | (Kind::Float, FieldType::Number)
            | (Kind::Bool, FieldType::Bool)
            | (Kind::Object, FieldType::Object)
            | (Kind::Array, FieldType::Array)
    )
}

fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => "a string",
        FieldType::Int => "an integer",
        FieldType::Number => "a number",
        FieldType::Bool => "a boolean",
        FieldType::Object => "an object",
        FieldType::Array => "an array",
        FieldType::Any => "anything",
    }
}

/// Top-level members of an object: keys borrowed when unescaped, values raw.
pub(crate) struct TopLevel<'a>(pub(crate) HashMap<Cow<'a, str>, &'a RawValue>);


impl<'de: 'a, 'a> Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut fields = HashMap::with_capacity(m.size_hint().unwrap_or(16));
                while let Some(k) = m.next_key::<Key<'de>>()? {
                    fields.insert(k.0, m.next_value()?);
                }
                Ok(TopLevel(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// The members of a JSON object in their order, keys borrowed when
/// unescaped, values raw.
pub(crate) struct Members<'a>(pub(crate) Vec<(Cow<'a, str>, &'a RawValue)>);

/// The members of the JSON object `bytes`, in order; an error if it is not one.
pub(crate) fn members(bytes: &[u8]) -> Result<Members<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(m.size_hint().unwrap_or(16));
                while let Some(k) = m.next_key::<Key<'de>>()? {
                    fields.push((k.0, m.next_value()?));
                }
                Ok(Members(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// The members of the JSON object `bytes`, or why it is not one, for a
/// dead letter: malformed JSON, or well-formed but not an object (`step`
/// names who needs an object, e.g. "a project step").
pub(crate) fn object_members<'a>(bytes: &'a [u8], step: &str) -> Result<Members<'a>, String> {
    members(bytes).map_err(|e| {
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if object || !e.is_data() {
            format!("malformed JSON: {e}")
        } else {
            format!("{step} needs each event's value to be a JSON object")
        }
    })
}

/// The raw value of the top-level member `name` of the JSON object `bytes`
/// (the last one if the name repeats), checking the whole object is
/// well-formed but parsing no other value into anything: no map, no
/// allocation unless a key has escapes. Also appends every member's name
/// to `names` (in order) when given: one pass for the value and the names.
pub(crate) fn member_and_names<'a>(
    bytes: &'a [u8],
    name: &str,
    names: Option<&mut Vec<Cow<'a, str>>>,
) -> Result<Option<&'a RawValue>, serde_json::Error> {
    let mut found = [None];
    members_found(bytes, &[name], &mut found, names)?;
    Ok(found[0])
}

/// The raw values of the top-level members named in `names` of the JSON
/// object `bytes` (`found[i]` for `names[i]`, the last one if a name
/// repeats; `found` is cleared first), checking the whole object is
/// well-formed but parsing no other value into anything: one pass, however
/// many fields a condition reads.
pub(crate) fn members_named<'a>(
    bytes: &'a [u8],
    names: &[String],
    found: &mut [Option<&'a RawValue>],
) -> Result<(), serde_json::Error> {
    members_found(bytes, names, found, None)
}

/// The one pass over a JSON object's top level the functions above share:
/// the raw values of the members `wanted` (`found[i]` for `wanted[i]`, the
/// last one if a name repeats; cleared first), every member's name appended
/// to `names` when given, the whole object checked well-formed and no other
/// value parsed into anything.
pub(crate) fn members_found<'a, W: AsRef<str>>(
    bytes: &'a [u8],
    wanted: &[W],
    found: &mut [Option<&'a RawValue>],
    names: Option<&mut Vec<Cow<'a, str>>>,
) -> Result<(), serde_json::Error> {
    struct V<'n, 'f, 'v, 'a, W>(&'n [W], &'f mut [Option<&'a RawValue>], Option<&'v mut Vec<Cow<'a, str>>>);
    impl<'de, W: AsRef<str>> Visitor<'de> for V<'_, '_, '_, 'de, W> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut m: A) -> Result<(), A::Error> {
            while let Some(k) = m.next_key::<Key<'de>>()? {
                if self.0.iter().any(|w| short_eq(w.as_ref(), &k.0)) {
                    // One member may be wanted twice (the time and a key from one field).
                    let v = m.next_value::<&'de RawValue>()?;
                    self.1.iter_mut().zip(self.0).filter(|(_, w)| short_eq(w.as_ref(), &k.0)).for_each(|(f, _)| *f = Some(v));
                } else {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
                if let Some(names) = self.2.as_deref_mut() {
                    names.push(k.0);
                }
            }
            Ok(())
        }
    }
    found.iter_mut().for_each(|f| *f = None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(V(wanted, found, names))?;
    de.end()
}

/// `a == b` for the short strings member names are, without a call to
/// `memcmp` per comparison (every member of every record is compared).
#[inline]
pub(crate) fn short_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// Whether `bytes` is one well-formed JSON object.
pub(crate) fn is_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Appends the names of the top-level members of the JSON object `bytes`
/// to `names`, in order, checking the object is well-formed; values are
/// skipped, not kept.
pub(crate) fn member_names<'a>(bytes: &'a [u8], names: &mut Vec<Cow<'a, str>>) -> Result<(), serde_json::Error> {
    members_found::<&str>(bytes, &[], &mut [], Some(names))
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use crate::config::FieldSchema;

    fn check(schema: &str, ts: Option<&str>, key: Option<&str>) -> RecordCheck {
        RecordCheck::new(&SourceCommon {
            schema: Some(serde_json::from_str(schema).unwrap()),
            timestamp_field: ts.map(Into::into),
            key_field: key.map(Into::into),
            ..Default::default()
        })
    }

    #[test]
    fn without_a_schema_time_and_key_come_from_one_pass() {
        let c = RecordCheck::new(&SourceCommon { timestamp_field: Some("ts".into()), key_field: Some("k".into()), ..Default::default() });
        let got = c.check(br#"{"k":"a","nested":{"ts":1},"ts":42,"k":"b"}"#).unwrap();
        assert_eq!(got, Extracted { timestamp: Some(42), key: Some(b"b".to_vec()), routed: None }, "top level only; the last of a repeated name");
        assert_eq!(c.check(b"[1]").unwrap_err().0, "record is not a JSON object");
        assert!(c.check(br#"{"ts":1,"k":"a""#).unwrap_err().0.starts_with("malformed JSON"));
        assert_eq!(c.check(br#"{"k":"a"}"#).unwrap_err().0, "missing timestamp field `ts`");
        assert_eq!(c.check(br#"{"ts":1}"#).unwrap_err().0, "missing key field `k`");
        assert!(c.check(br#"{"ts":1.5,"k":"a"}"#).unwrap_err().0.contains("not a whole number"));
        let time_only = RecordCheck::new(&SourceCommon { timestamp_field: Some("ts".into()), ..Default::default() });
        assert_eq!(time_only.check(br#"{"ts":7}"#).unwrap(), Extracted { timestamp: Some(7), key: None, routed: None });
    }

    /// What a declared schema (other fields allowed) decides for `raw`,
    /// computed on a parsed `serde_json::Value`.
    fn reference(schema: &RecordSchema, raw: &[u8], ts: &str) -> Result<Option<i64>, String> {
        let v: serde_json::Value = serde_json::from_slice(raw).map_err(|e| format!("malformed JSON: {e}"))?;
        let obj = v.as_object().ok_or("record is not a JSON object")?;
        for (name, f) in &schema.fields {
            match obj.get(name) {
                None if f.required => return Err(format!("missing required field `{name}`")),
                Some(serde_json::Value::Null) if f.required => return Err(format!("required field `{name}` is null")),
                None | Some(serde_json::Value::Null) => {}
                Some(x) => {
                    let ok = match f.ty {
                        FieldType::Any => true,
                        FieldType::String => x.is_string(),
                        FieldType::Int => x.is_i64() || x.is_u64(),
                        FieldType::Number => x.is_number(),
                        FieldType::Bool => x.is_boolean(),
                        FieldType::Object => x.is_object(),
                        FieldType::Array => x.is_array(),
                    };
                    if !ok {
                        return Err(format!("field `{name}` is refused"));
                    }
                }
            }
        }
        match obj.get(ts) {
            None => Err(format!("missing timestamp field `{ts}`")),
            Some(t) => t.as_i64().map(Some).ok_or_else(|| format!("timestamp field `{ts}` is not a whole number of milliseconds")),
        }
    }

    proptest::proptest! {
        /// The one-pass check of a schema that allows other fields decides
        /// as the reference does, on random records (duplicate, missing and
        /// null members, every JSON type) and random schemas.
        #[test]
        fn one_pass_schema_check_matches_a_parsed_reference(
            members in proptest::collection::vec((0usize..5, 0usize..6), 0..8),
            fields in proptest::collection::btree_map(0usize..5, (0usize..7, proptest::bool::ANY), 0..5),
        ) {
            const NAMES: [&str; 5] = ["a", "b", "ts", "dup", "x"];
            const VALUES: [&str; 6] = ["\"s\"", "3", "2.5", "null", "{\"n\":[1]}", "true"];
            const TYPES: [FieldType; 7] = [FieldType::String, FieldType::Int, FieldType::Number, FieldType::Bool, FieldType::Object, FieldType::Array, FieldType::Any];
            let raw = format!("{{{}}}", members.iter().map(|(n, v)| format!("\"{}\":{}", NAMES[*n], VALUES[*v])).collect::<Vec<_>>().join(","));
            let schema = RecordSchema {
                fields: fields.iter().map(|(n, (t, r))| (NAMES[*n].to_string(), FieldSchema { ty: TYPES[*t], required: *r })).collect(),
                allow_extra_fields: true,
            };
            let c = RecordCheck::new(&SourceCommon { schema: Some(schema.clone()), timestamp_field: Some("ts".into()), ..Default::default() });
            let got = c.check(raw.as_bytes()).map(|e| e.timestamp).map_err(|e| e.0);
            let want = reference(&schema, raw.as_bytes(), "ts");
            match (&got, &want) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b, "{}", raw),
                (Err(a), Err(b)) if b.ends_with("is refused") => proptest::prop_assert!(a.starts_with(&b[..b.len() - "is refused".len()]), "{} vs {} on {}", a, b, raw),
                (Err(a), Err(b)) => proptest::prop_assert!(a.starts_with(b.as_str()), "{} vs {} on {}", a, b, raw),
                _ => proptest::prop_assert!(false, "{:?} vs {:?} on {}", got, want, raw),
            }
        }
    }

    /// A schema of more names than the one pass keeps on the stack.
    #[test]
    fn a_wide_schema_is_checked_in_one_pass_too() {
        let fields: serde_json::Map<String, serde_json::Value> = (0..30).map(|i| (format!("f{i:02}"), json!({"type": "int", "required": true}))).collect();
        let c = check(&json!({"fields": fields}).to_string(), Some("ts"), None);
        let record = |skip: Option<usize>| {
            let mut r: serde_json::Map<String, serde_json::Value> = (0..30).filter(|i| Some(*i) != skip).map(|i| (format!("f{i:02}"), json!(i))).collect();
            r.insert("ts".into(), json!(5));
            serde_json::Value::Object(r).to_string()
        };
        assert_eq!(c.check(record(None).as_bytes()).unwrap().timestamp, Some(5));
        assert_eq!(c.check(record(Some(29)).as_bytes()).unwrap_err().0, "missing required field `f29`");
    }

    #[test]
    fn accepts_and_extracts() {
        let c = check(r#"{"fields": {"u": {"type": "string", "required": true}, "n": {"type": "number"}}}"#, Some("ts"), Some("u"));
        let got = c.check(br#"{"u": "a\"b", "n": 1.5, "ts": "17", "x": [1]}"#).unwrap();
        assert_eq!(got, Extracted { timestamp: Some(17), key: Some(b"a\"b".to_vec()), routed: None });
    }

    #[test]
    fn refuses_with_reasons() {
        let c = check(r#"{"fields": {"u": {"type": "string", "required": true}, "n": {"type": "int"}}, "allow_extra_fields": false}"#, None, None);
        let reason = |raw: &[u8]| c.check(raw).unwrap_err().0;
        assert_eq!(reason(br#"{"n": 1}"#), "missing required field `u`");
        assert_eq!(reason(br#"{"u": null}"#), "required field `u` is null");
        assert_eq!(reason(br#"{"u": "x", "n": 1.5}"#), "field `n` should be an integer but is a number");
        assert_eq!(reason(br#"{"u": "x", "z": 1}"#), "unexpected field `z`");
        assert_eq!(reason(br#"[1]"#), "record is not a JSON object");
        assert!(reason(b"[not an object]").starts_with("malformed JSON"));
        assert!(reason(br#"{"u": "x""#).starts_with("malformed JSON"));
        assert!(reason(b"{\"u\": \"\xff\"}").starts_with("malformed JSON"));
    }

    #[test]
    fn member_finds_one_field_and_checks_the_rest() {
        let member = |raw, name| member_and_names(raw, name, None);
        let raw = br#"{"a": {"x": [1, "}"]}, "b\u0041": 2, "c": "v", "a": 3}"#;
        assert_eq!(member(raw, "c").unwrap().map(RawValue::get), Some(r#""v""#));
        assert_eq!(member(raw, "bA").unwrap().map(RawValue::get), Some("2"), "escaped keys compare unescaped");
        assert_eq!(member(raw, "a").unwrap().map(RawValue::get), Some("3"), "the last of a repeated name");
        assert!(member(raw, "z").unwrap().is_none());
        assert!(member(br#"{"c": "v", "d": }"#, "c").is_err(), "a malformed rest is an error");
        assert!(member(br#"{"c": 1} x"#, "c").is_err(), "trailing bytes are an error");
        assert!(member(b"[1]", "c").is_err());
        let mut names = Vec::new();
        member_names(raw, &mut names).unwrap();
        assert_eq!(names, ["a", "bA", "c", "a"]);
        let mut both = Vec::new();
        assert_eq!(member_and_names(raw, "c", Some(&mut both)).unwrap().map(RawValue::get), Some(r#""v""#));
        assert_eq!(both, names);
        assert!(member_names(br#"{"a": [}"#, &mut Vec::new()).is_err());
        assert!(is_object(br#" {"a": [1]} "#) && !is_object(b"[1]") && !is_object(br#"{"a": }"#) && !is_object(b""));
    }

    #[test]
    fn without_schema_only_wellformedness_is_checked() {
        let c = RecordCheck::default();
        assert!(c.check(b"[1, 2]").is_ok());
        assert!(c.check(b"{oops}").is_err());
        let _ = FieldSchema { ty: FieldType::Any, required: false };
    }
}
