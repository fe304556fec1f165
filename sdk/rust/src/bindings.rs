//! The wit-bindgen bindings of every world, generated once here so plugin
//! crates carry no WIT of their own.
//!
//! With `pub_export_macro`, wit-bindgen puts only the world's *imports* in
//! this crate's custom section; the exports are described by the section the
//! `export!` macro emits in the plugin crate. So a transform plugin linking
//! this crate does not also claim the `udf` exports.

/// Bindings of the `transform` world (also owns the shared `types` and
/// `host` interfaces).
pub mod transform {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "streamhost:plugin/transform",
        pub_export_macro: true,
        export_macro_name: "export",
        additional_derives: [PartialEq],
    });
}

/// Bindings of the `udf` world, reusing the `transform` world's types.
pub mod udf {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "streamhost:plugin/udf",
        pub_export_macro: true,
        export_macro_name: "export",
        with: {
            "streamhost:plugin/types@0.2.0": crate::bindings::transform::streamhost::plugin::types,
            "streamhost:plugin/host@0.2.0": crate::bindings::transform::streamhost::plugin::host,
        },
    });
}

/// Bindings of the `joiner` world, reusing the `transform` world's types.
pub mod joiner {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "streamhost:plugin/joiner",
        pub_export_macro: true,
        export_macro_name: "export",
        with: {
            "streamhost:plugin/types@0.2.0": crate::bindings::transform::streamhost::plugin::types,
            "streamhost:plugin/host@0.2.0": crate::bindings::transform::streamhost::plugin::host,
        },
    });
}

/// Bindings of the `aggregator` world, reusing the `transform` world's types.
pub mod aggregator {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "streamhost:plugin/aggregator",
        pub_export_macro: true,
        export_macro_name: "export",
        with: {
            "streamhost:plugin/types@0.2.0": crate::bindings::transform::streamhost::plugin::types,
            "streamhost:plugin/host@0.2.0": crate::bindings::transform::streamhost::plugin::host,
        },
    });
}

pub use transform::streamhost::plugin::host;
pub use transform::streamhost::plugin::types;
