//! The in-process componentize step (wit-component), shared by all languages.

use super::BuildError;

/// The plugin contract, embedded so a built binary can build plugins anywhere.
pub const WIT_SOURCE: &str = include_str!("../../../wit/plugin.wit");

/// Wraps a core wasm module into a component.
///
/// `embed_world`: when the module carries no `component-type` section (Go,
/// whose toolchain knows nothing of WIT), the world's metadata is embedded
/// first. `wasi_adapter`: for modules importing `wasi_snapshot_preview1`,
/// the reactor adapter from wasmtime's release is linked in.
pub fn componentize_core_module(
    core: &[u8],
    embed_world: Option<&str>,
    wasi_adapter: bool,
) -> Result<Vec<u8>, BuildError> {
    let err = |e: anyhow::Error| BuildError::Componentize(format!("{e:#}"));
    let mut module = core.to_vec();
    if let Some(world) = embed_world {
        let mut resolve = wit_parser::Resolve::default();
        let pkg = resolve.push_str("plugin.wit", WIT_SOURCE).map_err(err)?;
        let world = resolve.select_world(&[pkg], Some(world)).map_err(err)?;
        wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8, false)
            .map_err(err)?;
    }
    let mut encoder = wit_component::ComponentEncoder::default();
    encoder.validate(true).module(&module).map_err(err)?;
    if wasi_adapter {
        encoder
            .adapter(
                "wasi_snapshot_preview1",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(err)?;
    }
    encoder.encode().map_err(err)
}
