//! Example ETL plugin: cleans raw impression log lines.
//!
//! For each line it normalises `device` / `os` (trimmed, lowercase, `os`
//! split into name and version), parses `ts` (int, numeric string or
//! RFC 3339; seconds are scaled to ms) and clamps `position`; it drops bot
//! traffic and rejects records without `user_id` or `item_id`. The output is
//! a compact JSON line without the bulky `user_agent`.
//!
//! The cleaning itself ([`clean_impression`]) is plain Rust, usable natively
//! (the host's benchmark calls it directly); the plugin export wraps it.

mod clean;
mod json;
mod timestamp;

pub use clean::{clean_impression, clean_impression_into, CleanError, MAX_POSITION};
pub use timestamp::parse_timestamp_ms;

use streamhost_sdk::{Emitter, Error, EventRef};

/// The plugin's transform: one raw impression in, zero or one cleaned out.
/// The output event's timestamp is the record's parsed `ts`. The cleaned
/// line is written straight into the batch's output column.
pub fn clean(event: EventRef<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
    out.emit_with(event.key, |buf| clean_impression_into(event.value, buf))
        .map_err(|e| Error::new(e.to_string()))?;
    Ok(())
}

streamhost_sdk::transform!(clean);
