//! `streamhost sql [--explain] job.sql`, and `validate` of a `.sql` file:
//! the job is compiled to a pipeline, which then runs (or is checked) by the
//! very code `run` (or `validate`) uses on a pipeline.json.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use streamhost::config::LoadedPipeline;

#[derive(clap::Args)]
pub struct SqlArgs {
    /// The SQL job file.
    pub job: PathBuf,
    /// Print the pipeline.json the job compiles to (which `streamhost run`
    /// accepts as is, beside the .sql file) instead of running it.
    #[arg(long)]
    pub explain: bool,
    /// Start over: delete the pipeline's checkpoints and state.
    #[arg(long)]
    pub fresh: bool,
    /// Never show the live progress line.
    #[arg(long)]
    pub no_progress: bool,
    /// With `settings.scale_out`: this process's name in the group.
    #[arg(long)]
    pub instance: Option<String>,
}

/// Whether `path` is a SQL job (by its extension).
pub fn is_sql(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql"))
}

/// The compiled job, or the exit code after its errors were printed. With
/// `plugins`, its UDF plugins are built and loaded first, so that calls are
/// type-checked against their declared signatures (`--explain` and
/// `validate --no-plugins` skip that: a UDF call there takes anything).
pub fn load(path: &Path, plugins: bool) -> Result<LoadedPipeline, ExitCode> {
    let printed = |e: &dyn std::fmt::Display| {
        eprint!("{e}");
        ExitCode::from(super::INVALID)
    };
    let none = streamhost::sql::UdfFunctions::new();
    let p = streamhost::sql::load_sql(path, &none).map_err(|e| printed(&e))?;
    if !plugins || !p.config.plugins.values().any(|c| c.world == Some(streamhost::config::WorldName::Udf)) {
        return Ok(p);
    }
    let runtime = streamhost::plugin::PluginRuntime::new(streamhost::plugin::RuntimeOptions {
        artifact_cache: p.config.settings.artifact_cache.as_ref().map(|d| p.resolve(d)),
    })
    .map_err(|e| printed(&format!("streamhost: starting the plugin runtime: {e}\n")))?;
    let loaded = streamhost::runtime::prepare_plugins(&p, &runtime).map_err(|e| printed(&e))?;
    let udfs = loaded.iter().filter(|(_, l)| l.world() == streamhost::config::WorldName::Udf).map(|(n, l)| (n.clone(), l.functions().to_vec())).collect();
    streamhost::sql::load_sql(path, &udfs).map_err(|e| printed(&e))
}

/// `sql --explain`: the compiled pipeline.json, checked by the pipeline
/// loader as `run` would check it, or the exit code after its errors were
/// printed.
pub fn explain(path: &Path) -> Result<String, ExitCode> {
    load(path, false).map(|p| p.text)
}
