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

/// The compiled job, or the exit code after its errors were printed.
pub fn load(path: &Path) -> Result<LoadedPipeline, ExitCode> {
    streamhost::sql::load_sql(path).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(super::INVALID)
    })
}

/// `sql --explain`: the compiled pipeline.json, or the exit code after its
/// errors were printed.
pub fn explain(path: &Path) -> Result<String, ExitCode> {
    streamhost::sql::compile_file(path).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(super::INVALID)
    })
}
