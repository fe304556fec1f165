//! Builds a python plugin folder into a component.

use std::path::Path;

use super::{BuildError, PluginManifest};

pub fn build(_dir: &Path, _manifest: &PluginManifest, _output: &Path) -> Result<(), BuildError> {
    Err(BuildError::MissingTool { tool: "python plugin build".into(), hint: "not implemented yet".into() })
}
