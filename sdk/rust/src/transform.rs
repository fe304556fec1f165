//! Transform plugins: one plain function per event, looped over the batch.

use serde::de::DeserializeOwned;

use crate::columns::TransformFn;
use crate::{Error, Event};

/// What a transform made of one input event: output events, or the error
/// that dead-letters that event alone (the WIT `event-outcome`).
pub type Outcome = Result<Vec<Event>, String>;

/// What a transform function may return on success: one event, an optional
/// event (`None` drops the input) or any number of events (fan-out).
pub trait IntoEvents {
    fn into_events(self) -> Vec<Event>;
}

impl IntoEvents for Event {
    fn into_events(self) -> Vec<Event> {
        vec![self]
    }
}

impl IntoEvents for Option<Event> {
    fn into_events(self) -> Vec<Event> {
        self.into_iter().collect()
    }
}

impl IntoEvents for Vec<Event> {
    fn into_events(self) -> Vec<Event> {
        self
    }
}

/// Runs `f` over every event of `batch`, one outcome per event in order,
/// through the same columnar path the component export takes. An error
/// fails its own event only. (A panic aborts the instance, which the host
/// contains; the batch is then retried or dead-lettered there.) This is the
/// way to unit-test a transform natively, in either shape.
pub fn process_batch<M, F: TransformFn<M>>(batch: Vec<Event>, f: F) -> Vec<Outcome> {
    let n = batch.len();
    crate::columns::unpack(crate::columns::process_columns(crate::columns::pack(batch), f), n)
}

/// Parses the `init` config (JSON text) into `C` and hands it to `f`.
/// `C` is anything deserialisable: `serde_json::Value` or a typed struct.
pub fn run_init<C, F>(config: &str, f: F) -> Result<(), String>
where
    C: DeserializeOwned,
    F: FnOnce(C) -> Result<(), Error>,
{
    report_panics();
    let config = if config.trim().is_empty() { "null" } else { config };
    let parsed: C = serde_json::from_str(config).map_err(|e| format!("invalid plugin config: {e}"))?;
    f(parsed).map_err(Error::into_message)
}

/// In a wasm plugin, makes a panic log its message and location through the
/// host before the instance aborts: the trap itself only says "unreachable".
/// Installed by `init`, which every world calls first.
fn report_panics() {
    #[cfg(target_arch = "wasm32")]
    std::panic::set_hook(Box::new(|info| crate::log::error(&format!("plugin {info}"))));
}

/// The `init` of a plugin that declares none: accepts any config.
pub fn no_init(_config: serde_json::Value) -> Result<(), Error> {
    Ok(())
}

/// Exports a function as the plugin's `transform` world.
///
/// The function takes an [`Event`] and returns `Result<R, Error>` where `R`
/// is an [`Event`], an `Option<Event>` (`None` drops the event) or a
/// `Vec<Event>` (fan-out). An optional `init` receives the plugin's config
/// from pipeline.json, deserialised into any `serde` type.
///
/// ```
/// use streamhost_sdk::{Event, Error};
///
/// fn upper(mut e: Event) -> Result<Option<Event>, Error> {
///     e.value.make_ascii_uppercase();
///     Ok(Some(e))
/// }
/// fn setup(_config: serde_json::Value) -> Result<(), Error> { Ok(()) }
///
/// streamhost_sdk::transform!(upper, init = setup);
/// # fn main() {}
/// ```
///
/// On a hot path the function can instead borrow its input from the batch
/// and write its output payload in place, saving two copies and two
/// allocations per event:
///
/// ```
/// use streamhost_sdk::{Emitter, Error, EventRef};
///
/// fn upper(e: EventRef<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
///     out.emit_with(e.key, |buf| {
///         buf.extend(e.value.iter().map(u8::to_ascii_uppercase));
///         Ok::<_, Error>(Some(e.timestamp))
///     })?;
///     Ok(())
/// }
///
/// streamhost_sdk::transform!(upper);
/// # fn main() {}
/// ```
///
/// The function stays an ordinary Rust function, so it is unit-testable
/// natively; only wasm builds emit the component exports.
#[macro_export]
macro_rules! transform {
    ($process:path $(,)?) => {
        $crate::transform!($process, init = $crate::transform::no_init);
    };
    ($process:path, init = $init:path $(,)?) => {
        const _: () = {
            #[allow(dead_code)]
            struct StreamhostTransform;

            impl $crate::bindings::transform::Guest for StreamhostTransform {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::transform::run_init(&config, $init)
                }

                fn process(batch: $crate::bindings::types::EventBatch) -> $crate::bindings::types::TransformOutput {
                    $crate::columns::process_columns(batch, $process)
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__export_transform_impl!(StreamhostTransform with_types_in $crate::bindings::transform);

            // Natively nothing calls the exports: mark the functions used.
            let _ = ($process, $init);
        };
    };
}
