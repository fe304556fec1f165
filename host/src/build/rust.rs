//! Builds a rust plugin folder into a component.

use std::path::Path;

use super::{BuildError, PluginManifest};

pub fn build(_dir: &Path, _manifest: &PluginManifest, _output: &Path) -> Result<(), BuildError> {
    Err(BuildError::MissingTool { tool: "rust plugin build".into(), hint: "not implemented yet".into() })
}
