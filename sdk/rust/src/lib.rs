//! Write streamhost plugins as plain Rust functions.
//!
//! A transform plugin is one function over an [`Event`]:
//!
//! ```
//! use streamhost_sdk::{Event, Error};
//!
//! fn clean(e: Event) -> Result<Option<Event>, Error> {
//!     let v: serde_json::Value = e.json()?;
//!     if v.get("is_bot") == Some(&serde_json::Value::Bool(true)) {
//!         return Ok(None); // drop
//!     }
//!     Ok(Some(e))
//! }
//! streamhost_sdk::transform!(clean);
//! # fn main() {}
//! ```
//!
//! a UDF plugin is a list of typed functions ([`udf!`]), and a joiner (the
//! output of a window join) is one function over a main event and its
//! [`joiner::Matches`] ([`joiner!`]), and an aggregator (a user-defined
//! aggregate function) is a state type with `add`, `merge` and `finish`
//! ([`aggregator::Aggregate`], [`aggregator!`]). The macros hide
//! the wit-bindgen glue: bindings are generated once, in this crate, from
//! the repository's `wit/plugin.wit`. Everything except the component
//! exports also builds natively, so plugin functions are unit-testable with
//! `cargo test`; [`log`] writes to stderr there.
//!
//! Plugins build for `wasm32-unknown-unknown` with `panic = "abort"`: a panic
//! aborts the instance and the host contains it. Return an [`Error`] to
//! reject one event instead.

// The bindings are generated code; their docs come from the WIT.
// The joiner world's export lowers to many flat parameters.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod bindings;
pub mod aggregator;
pub mod columns;
mod error;
mod event;
pub mod joiner;
pub mod log;
pub mod transform;
pub mod udf;

pub use event::{Event, Header};
pub use error::Error;
pub use columns::{Emitter, EventRef};
pub use transform::{process_batch, IntoEvents, Outcome};
