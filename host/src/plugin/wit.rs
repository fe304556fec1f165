//! Host bindings generated from `wit/plugin.wit`.
//!
//! Every world shares the `types` and `host` interfaces; the `udf`,
//! `joiner` and `aggregator` bindings reuse the ones generated for `transform`.

mod transform_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        // Tests and steps compare events and scalars.
        additional_derives: [PartialEq],
    });
}

mod udf_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "udf",
        with: {
            "streamhost:plugin/types": super::transform_world::streamhost::plugin::types,
            "streamhost:plugin/host": super::transform_world::streamhost::plugin::host,
        },
    });
}

mod joiner_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "joiner",
        with: {
            "streamhost:plugin/types": super::transform_world::streamhost::plugin::types,
            "streamhost:plugin/host": super::transform_world::streamhost::plugin::host,
        },
    });
}

mod aggregator_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "aggregator",
        with: {
            "streamhost:plugin/types": super::transform_world::streamhost::plugin::types,
            "streamhost:plugin/host": super::transform_world::streamhost::plugin::host,
        },
    });
}

pub use transform_world::streamhost::plugin::host::{self as host_api, Level};
pub use transform_world::streamhost::plugin::types::{
    self as types_api, AddOutput, BatchHeader, ByteColumn, EventBatch, EventError, FunctionSignature, Scalar, ScalarType,
    TransformOutput,
};
pub use transform_world::{Transform, TransformPre};
pub use aggregator_world::{Aggregator, AggregatorPre};
pub use joiner_world::{Joiner, JoinerPre};
pub use udf_world::{Udf, UdfPre};
