//! TODO
pub struct ConfigError; pub struct ConfigErrors; pub struct LoadedPipeline;
pub fn load_pipeline() {} pub fn parse_pipeline() {}
