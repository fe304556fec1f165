//! Helpers on the WIT `event` record.
//!
//! [`Event`] is the type wit-bindgen generates for the contract, so a batch
//! reaches the plugin function without any conversion; these methods only
//! make it pleasant to use (and work natively, for unit tests).

use serde::{Deserialize, Serialize};

use crate::bindings::types::{Event, Header};
use crate::Error;

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
