//! The ETL filter/projection of the SQL bench (tests/benches/sql.rs) written
//! by hand as a transform plugin: what a user writes without SQL.
//!
//! Per impression (a JSON object, as the `impression` generator writes it), it
//! does what this SQL does:
//!
//! ```sql
//! SELECT request_id, user_id, item_id, LOWER(TRIM(device)) AS device, position + 1 AS pos
//! FROM imps WHERE position <= 20 AND page = 'feed'
//! ```
//!
//! A missing or null `position` or `page` drops the record (SQL's NULL in
//! WHERE); a missing `user_id`, `item_id` or `device` is written as `null`;
//! a record without a string `request_id` or whose fields have another JSON
//! type is rejected (dead-lettered), as the SQL table's schema does. TRIM
//! removes spaces only, as SQL's `TRIM` does. The input is parsed by serde
//! into a struct borrowing from the batch, and the output written straight
//! into the batch's output column.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use streamhost_sdk::{Emitter, Error, EventRef};

/// The fields the projection reads; others are skipped.
#[derive(Deserialize)]
struct Impression<'a> {
    #[serde(borrow)]
    request_id: Cow<'a, str>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    device: Option<Cow<'a, str>>,
    #[serde(default)]
    position: Option<i64>,
    #[serde(borrow, default)]
    page: Option<Cow<'a, str>>,
}

/// The output row, in the SQL's column order.
#[derive(Serialize)]
struct Row<'a> {
    request_id: &'a str,
    user_id: Option<&'a str>,
    item_id: Option<&'a str>,
    device: Option<String>,
    pos: i64,
}

fn project(event: EventRef<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
    let imp: Impression<'_> = serde_json::from_slice(event.value)?;
    let (Some(position), Some(page)) = (imp.position, imp.page.as_deref()) else {
        return Ok(());
    };
    if position > 20 || page != "feed" {
        return Ok(());
    }
    let row = Row {
        request_id: &imp.request_id,
        user_id: imp.user_id.as_deref(),
        item_id: imp.item_id.as_deref(),
        device: imp.device.as_deref().map(|d| d.trim_matches(' ').to_lowercase()),
        pos: position + 1,
    };
    out.emit_with(event.key, |buf| serde_json::to_writer(&mut *buf, &row).map(|()| Some(event.timestamp)))?;
    Ok(())
}

streamhost_sdk::transform!(project);
