//! (Part of the `streamhost` binary, not the library.) `streamhost plugin
//! new` (a plugin folder that builds and tests anywhere, `build::scaffold`)
//! and `streamhost plugin test` (a trial run on sample input, `trial`).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use streamhost::build::{scaffold, Language};
use streamhost::config::{PluginLimits, WorldName};
use streamhost::trial::{self, RecordOptions, TrialOptions};

/// Exit code for input the user must fix (as in main.rs).
const INVALID: u8 = 2;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LangArg {
    Rust,
    Python,
    Go,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum WorldArg {
    Transform,
    Udf,
    Joiner,
    Aggregator,
}

impl From<WorldArg> for WorldName {
    fn from(w: WorldArg) -> Self {
        match w {
            WorldArg::Transform => WorldName::Transform,
            WorldArg::Udf => WorldName::Udf,
            WorldArg::Joiner => WorldName::Joiner,
            WorldArg::Aggregator => WorldName::Aggregator,
        }
    }
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits, `-` and `_`, starting with a letter.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    lang: LangArg,
    /// The world of wit/plugin.wit it implements.
    #[arg(long, value_enum, default_value = "transform")]
    world: WorldArg,
    /// The folder to create (default: ./NAME); it must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct TestArgs {
    /// A plugin folder (built first when needed) or a component (.wasm).
    dir: PathBuf,
    /// The sample input, JSON lines (`-`: stdin). transform: a record per
    /// line; udf: a JSON array of arguments per line; joiner:
    /// {"main": RECORD, "matches": {"INPUT": [RECORD, ...]}} per line.
    #[arg(long)]
    sample: PathBuf,
    /// UDF: the function to call (default: the only one the plugin exports).
    #[arg(long)]
    function: Option<String>,
    /// Joiner: the window join's other inputs, in order (default: as they
    /// appear in the sample).
    #[arg(long, value_delimiter = ',')]
    inputs: Option<Vec<String>>,
    /// Top-level field holding each record's event time (ms), as for a source
    /// (default: the time of the run).
    #[arg(long)]
    timestamp_field: Option<String>,
    /// Top-level field whose value becomes each record's key, as for a source.
    #[arg(long)]
    key_field: Option<String>,
    /// The plugin's `init` config, as JSON.
    #[arg(long)]
    config: Option<String>,
    /// Inputs per call, as a pipeline's `settings.batch_size`.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// The instance's memory limit in MiB (`limits.memory_mb`).
    #[arg(long)]
    memory_mb: Option<u64>,
    /// The time budget of one call in ms (`limits.batch_timeout_ms`).
    #[arg(long)]
    batch_timeout_ms: Option<u64>,
    /// Also count the fuel each event uses (about one unit per wasm
    /// instruction: a cost independent of the machine; slows the calls).
    #[arg(long)]
    fuel: bool,
    /// Print JSON lines (one per input, then a summary) instead of text.
    #[arg(long)]
    json: bool,
    /// Rebuild the folder even when its component is up to date.
    #[arg(long)]
    force: bool,
}

pub fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let language = match args.lang {
        LangArg::Rust => Language::Rust,
        LangArg::Python => Language::Python,
        LangArg::Go => Language::Go,
    };
    let world = WorldName::from(args.world);
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    match scaffold::new_plugin(&dir, &args.name, language, world) {
        Ok(made) => {
            println!("created {:?} {} plugin `{}` in {}", language, world.as_str(), args.name, made.dir.display());
            println!("next steps:");
            println!("  cd {}", made.dir.display());
            println!("  {:<46} # the native unit test", made.test_command);
            println!("  {:<46} # the component, in target/streamhost/", "streamhost plugin build .");
            println!("  {:<46} # run it in the sandbox on sample input", "streamhost plugin test . --sample sample.jsonl");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(INVALID))
        }
    }
}

pub fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(c) => match serde_json::from_str(c) {
            Ok(v) => v,
            Err(e) => return invalid(format!("--config is not JSON: {e}")),
        },
        None => serde_json::Value::Null,
    };
    let sample = if args.sample.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the sample from stdin")?;
        s
    } else {
        match std::fs::read_to_string(&args.sample) {
            Ok(s) => s,
            Err(e) => return invalid(format!("{}: {e}", args.sample.display())),
        }
    };
    let records = RecordOptions { timestamp_field: args.timestamp_field.clone(), key_field: args.key_field.clone(), default_timestamp: 0 };
    // A folder's world is known before its build: check the sample first,
    // so a bad line is reported in a second, not after minutes of build.
    if args.dir.is_dir() {
        if let Ok(manifest) = streamhost::build::read_manifest(&args.dir) {
            if let Err(e) = trial::parse_sample(&sample, manifest.world, &records, args.inputs.as_deref()) {
                return invalid(e.to_string());
            }
        }
    }
    let (name, wasm, world) = if args.dir.is_dir() {
        match streamhost::build::build_plugin(&args.dir, None, args.force) {
            Ok(b) => (b.manifest.name, b.output, Some(b.manifest.world)),
            Err(e) => return invalid(e.to_string()),
        }
    } else {
        let name = args.dir.file_stem().map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
        (name, args.dir.clone(), None)
    };
    let defaults = PluginLimits::default();
    let opts = TrialOptions {
        batch_size: args.batch_size,
        config,
        limits: PluginLimits {
            memory_mb: args.memory_mb.unwrap_or(defaults.memory_mb),
            batch_timeout_ms: args.batch_timeout_ms.unwrap_or(defaults.batch_timeout_ms),
            ..defaults
        },
        records,
        function: args.function.clone(),
        inputs: args.inputs.clone(),
    };
    let options = streamhost::plugin::RuntimeOptions::default();
    let runtime = if args.fuel {
        streamhost::plugin::PluginRuntime::metering_fuel(options)
    } else {
        streamhost::plugin::PluginRuntime::new(options)
    }
    .context("starting the plugin runtime")?;
    let trial = match trial::run(&runtime, &name, &wasm, &sample, world, &opts) {
        Ok(t) => t,
        Err(e) => return invalid(e.to_string()),
    };
    print!("{}", if args.json { trial::render_json(&trial) } else { trial::render_text(&trial) });
    if trial.has_traps() {
        let failed: Vec<String> = trial
            .results
            .iter()
            .filter_map(|r| r.outcome.as_ref().err().filter(|f| f.kind != streamhost::plugin::FailureKind::Error).map(|f| (r.line, f)))
            .map(|(line, f)| format!("line {line}: {f}"))
            .collect();
        eprintln!("error: {} input(s) trapped or broke a limit; first: {}", failed.len(), failed[0]);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn invalid(message: String) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(INVALID))
}
