//! The event a plugin function sees.
//!
//! The WIT moves a batch as columns (`event-batch`); the transform macro
//! cuts it into these plain structs, one per event, and packs the
//! function's results back (see `transform::process_columns`). Everything
//! here works natively, for unit tests.

use serde::{Deserialize, Serialize};

use crate::Error;

/// One event: an optional key, a payload, an event time and headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Optional partitioning / join key, raw bytes.
    pub key: Option<Vec<u8>>,
    /// The payload; JSON (UTF-8) by convention.
    pub value: Vec<u8>,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Free-form metadata carried along with the event.
    pub headers: Vec<Header>,
}

/// One header of an event: a name and a raw value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Header name (case-sensitive).
    pub name: String,
    /// Raw header value.
    pub value: Vec<u8>,
}

impl Event {
    /// An event with this payload, no key, no headers and timestamp 0.
    pub fn new(value: impl Into<Vec<u8>>) -> Event {
        Event { key: None, value: value.into(), timestamp: 0, headers: Vec::new() }
    }

    /// An event whose payload is `value` serialised as JSON.
    pub fn from_json<T: Serialize + ?Sized>(value: &T) -> Result<Event, Error> {
        Ok(Event::new(serde_json::to_vec(value)?))
    }

    /// Parses the payload as JSON. `T` may borrow from the event
    /// (`&str` / `Cow<str>` fields), which avoids copying strings.
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.value)?)
    }

    /// Replaces the payload with `value` serialised as JSON, keeping key,
    /// timestamp and headers.
    pub fn set_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.value);
        buf.clear();
        serde_json::to_writer(&mut buf, value)?;
        self.value = buf;
        Ok(())
    }

    /// This event with its payload replaced by `value` as JSON.
    pub fn with_json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Event, Error> {
        self.set_json(value)?;
        Ok(self)
    }

    /// This event with another payload.
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Event {
        self.value = value.into();
        self
    }

    /// This event with another key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Event {
        self.key = Some(key.into());
        self
    }

    /// This event with another timestamp (ms since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Event {
        self.timestamp = timestamp;
        self
    }

    /// The payload as UTF-8 text.
    pub fn value_str(&self) -> Result<&str, Error> {
        Ok(std::str::from_utf8(&self.value)?)
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name == name).map(|h| h.value.as_slice())
    }

    /// Sets header `name`, replacing an existing one.
    pub fn set_header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        match self.headers.iter_mut().find(|h| h.name == name) {
            Some(h) => h.value = value,
            None => self.headers.push(Header { name: name.to_string(), value }),
        }
    }
}
