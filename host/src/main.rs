//! The `streamhost` command: run, validate, schema, test (replays of samples),
//! plugin new|build|test, and the verbs that talk to a running pipeline's
//! admin API: hot swap (plugin list|swap|rollback), `top` and `sample`.

mod authoring_cli;
mod plugin_cli;
mod top_cli;
mod replay_cli;
mod sql_cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use streamhost::config::{load_pipeline, ConfigErrors, LoadedPipeline};
use streamhost::runtime::{build_pipeline, prepare_plugins, BuildOptions, RunError, StopHandle};

/// A stream processor whose per-business logic runs as sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "streamhost", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a pipeline until its sources are exhausted. SIGINT or SIGTERM
    /// stops it gracefully (sources stopped, what is in flight drained, a
    /// final checkpoint, sinks synced, exit 0); a second signal exits at once.
    Run {
        /// The pipeline.json file.
        pipeline: PathBuf,
        /// Start over: delete the pipeline's checkpoints and state instead of
        /// resuming from its last checkpoint.
        #[arg(long)]
        fresh: bool,
        /// Never show the live progress line (it is shown when stderr is a terminal).
        #[arg(long)]
        no_progress: bool,
        /// With `settings.scale_out`: this process's name in the group
        /// (default: STREAMHOST_INSTANCE, the pipeline's `instance`, or
        /// HOST-PID).
        #[arg(long)]
        instance: Option<String>,
    },
    /// Compiles a SQL job (docs/sql.md) and runs it as `run` runs a pipeline.
    Sql(sql_cli::SqlArgs),
    /// Checks a pipeline: shape, graph, and that every plugin loads as the world it is used as.
    Validate {
        /// The pipeline.json file (or a SQL job, `.sql`, compiled first).
        pipeline: PathBuf,
        /// Skip building and loading plugins (shape and graph only).
        #[arg(long)]
        no_plugins: bool,
    },
    /// Prints the JSON Schema of pipeline.json.
    Schema,
    /// Shows a running pipeline's metrics live: rates, lags, backpressure,
    /// plugins, joins, lookups, state and checkpoints (from its admin API's
    /// `/metrics`, refreshed every interval).
    Top {
        #[command(flatten)]
        admin: plugin_cli::AdminArgs,
        /// Print one snapshot (rates over one interval) and exit; also what
        /// happens when stdout is not a terminal.
        #[arg(long)]
        once: bool,
        /// Milliseconds between two scrapes.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Replays sample files through a pipeline, deterministically, and
    /// compares every sink and the dead letters with expected files
    /// (docs/replay-tests.md). Exit 0: as expected; 1: they differ (the
    /// difference is shown); 2: bad input.
    Test {
        /// The pipeline.json file.
        pipeline: PathBuf,
        /// The samples: NAME.jsonl (records) or NAME.events.jsonl (envelopes)
        /// per source, or per step whose output it replaces, and
        /// lookups/STEP.jsonl per lookup join. Default: file sources read
        /// their own files.
        #[arg(long, value_name = "DIR")]
        sample: Option<PathBuf>,
        /// The expected outputs: SINK.jsonl per sink and dead-letters.jsonl
        /// (absent: empty). Without it the outputs are shown.
        #[arg(long, value_name = "DIR")]
        expect: Option<PathBuf>,
        /// Write this run's outputs as the expected files.
        #[arg(long, requires = "expect")]
        update: bool,
        /// Show the events whose field at PATH equals VALUE as they enter and
        /// leave each step, e.g. `$.request_id=abc`.
        #[arg(long, value_name = "PATH=VALUE")]
        trace: Option<String>,
        /// Keep the run's outputs in DIR (default: a temporary folder).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Ask the lookup joins' real tables (not the recorded files) and
        /// add their answers to the sample's lookups/STEP.jsonl.
        #[arg(long, requires = "sample")]
        record_lookups: bool,
    },
    /// Takes a sample of a running pipeline's inputs (or of one step's
    /// output), with the answers of its lookup joins, through its admin API:
    /// a folder `streamhost test --sample` reads.
    Sample {
        #[command(flatten)]
        admin: plugin_cli::AdminArgs,
        /// The step whose output (or the source whose records) to take
        /// (default: every source).
        #[arg(long, value_name = "NAME")]
        step: Option<String>,
        /// Events to take, in all.
        #[arg(short = 'n', long, default_value_t = 1000)]
        events: usize,
        /// The sample folder (its files for the nodes sampled are replaced;
        /// lookup answers are added to those recorded before).
        #[arg(short = 'o', long, value_name = "DIR")]
        output: PathBuf,
        /// Stop waiting after this many seconds (what was taken is written).
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Keep recording lookup answers this many ms after the last event.
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
    },
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Creates a plugin folder (Rust, Python or Go) that builds and tests anywhere: plugin.toml, one function, a native unit test, a sample, the SDK.
    New(authoring_cli::NewArgs),
    /// Runs a plugin on sample input (JSON lines) in the sandbox: outputs, errors, cost per event; exit 1 on a trap.
    Test(authoring_cli::TestArgs),
    /// Builds a plugin source folder (Rust, Python or Go, with a plugin.toml) into a component.
    Build {
        /// The plugin folder.
        dir: PathBuf,
        /// Where to write the component (default: DIR/target/streamhost/NAME.wasm).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Rebuild even when the component is newer than the sources.
        #[arg(long)]
        force: bool,
    },
    /// Lists the plugins of a running pipeline: version, load time, calls, errors, traps, swaps.
    List {
        #[command(flatten)]
        admin: plugin_cli::AdminArgs,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Swaps a plugin of a running pipeline for a new version (no restart).
    Swap {
        /// The plugin's name in pipeline.json.
        name: String,
        /// A component (.wasm) or a plugin source folder (built first).
        file: PathBuf,
        /// The new version's `init` config, as JSON (default: the current version's).
        #[arg(long)]
        config: Option<String>,
        /// Try the new version on a sample of the plugin's recent input first.
        #[arg(long)]
        canary: bool,
        /// Keep running and swap again every time FILE changes.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        admin: plugin_cli::AdminArgs,
    },
    /// Puts a plugin's previous version back (a second rollback undoes the first).
    Rollback {
        /// The plugin's name in pipeline.json.
        name: String,
        #[command(flatten)]
        admin: plugin_cli::AdminArgs,
    },
}

#[global_allocator]
static ALLOCATOR: streamhost::Allocator = streamhost::Allocator;

/// Exit code for input the user must fix (invalid pipeline, bad plugin).
const INVALID: u8 = 2;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STREAMHOST_LOG").unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the signal thread acts on: the running pipeline, once it is built.
#[derive(Default)]
struct SignalTarget {
    stop: Option<StopHandle>,
    admin_file: Option<(PathBuf, std::net::SocketAddr)>,
    stop_requested: bool,
}

/// The first SIGINT or SIGTERM stops the pipeline gracefully; a second one
/// exits at once (128 + the signal; a restart resumes from the last
/// checkpoint). Installed before the pipeline is built, so a signal that
/// arrives while plugins compile or the admin API starts is never the
/// default (killing) action: the first one stops the run as soon as it
/// exists.
fn stop_on_signals() -> anyhow::Result<Arc<Mutex<SignalTarget>>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing the signal handlers")?;
    let target = Arc::new(Mutex::new(SignalTarget::default()));
    let shared = target.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            let mut t = shared.lock().unwrap_or_else(|e| e.into_inner());
            if !t.stop_requested {
                t.stop_requested = true;
                eprintln!("streamhost: stopping: draining and checkpointing (signal again to exit at once)");
                if let Some(stop) = &t.stop {
                    stop.stop();
                }
            } else {
                eprintln!("streamhost: exiting at once; a restart resumes from the last checkpoint");
                if let Some((file, addr)) = &t.admin_file {
                    streamhost::swap::remove_addr_file(file, *addr);
                }
                std::process::exit(128 + signal);
            }
        }
    })?;
    Ok(target)
}

/// Hands the built pipeline to the signal thread (stopping it at once if a
/// signal came during the build).
fn attach_signals(target: &Mutex<SignalTarget>, stop: StopHandle, admin_file: Option<(PathBuf, std::net::SocketAddr)>) {
    let mut t = target.lock().unwrap_or_else(|e| e.into_inner());
    if t.stop_requested {
        stop.stop();
    }
    t.stop = Some(stop);
    t.admin_file = admin_file;
}

/// HOST-PID: unique among the processes of a group.
fn default_instance() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(40).collect();
    format!("{}-{}", if host.is_empty() { "streamhost" } else { &host }, std::process::id())
}

fn invalid(e: &ConfigErrors) -> ExitCode {
    eprint!("{e}");
    ExitCode::from(INVALID)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Schema => {
            let schema = schemars::schema_for!(streamhost::config::PipelineConfig);
            print_out(&serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { pipeline, no_plugins } => {
            let p = if sql_cli::is_sql(&pipeline) {
                match sql_cli::load(&pipeline, !no_plugins) {
                    Ok(p) => p,
                    Err(code) => return Ok(code),
                }
            } else {
                match load_pipeline(&pipeline) {
                    Ok(p) => p,
                    Err(e) => return Ok(invalid(&e)),
                }
            };
            if !no_plugins {
                let runtime = streamhost::plugin::PluginRuntime::new(streamhost::plugin::RuntimeOptions {
                    artifact_cache: p.config.settings.artifact_cache.as_ref().map(|d| p.resolve(d)),
                })
                .context("starting the plugin runtime")?;
                if let Err(e) = prepare_plugins(&p, &runtime) {
                    return Ok(invalid(&e));
                }
            }
            println!("{}: ok", pipeline.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { pipeline, fresh, no_progress, instance } => {
            let p = match load_pipeline(&pipeline) {
                Ok(p) => p,
                Err(e) => return Ok(invalid(&e)),
            };
            run_pipeline(p, fresh, no_progress, instance)
        }
        Command::Sql(args) => {
            if args.explain {
                return Ok(match sql_cli::explain(&args.job) {
                    Ok(json) => {
                        print_out(&json);
                        ExitCode::SUCCESS
                    }
                    Err(code) => code,
                });
            }
            let p = match sql_cli::load(&args.job, true) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            run_pipeline(p, args.fresh, args.no_progress, args.instance)
        }
        Command::Top { admin, once, interval_ms } => top_cli::run(&admin.client()?, once, std::time::Duration::from_millis(interval_ms)),
        Command::Test { pipeline, sample, expect, update, trace, out, record_lookups } => {
            replay_cli::test(replay_cli::TestArgs { pipeline, sample, expect, update, trace, out, record_lookups })
        }
        Command::Sample { admin, step, events, output, timeout_s, settle_ms } => {
            replay_cli::sample(&admin, replay_cli::SampleArgs { node: step, events, output, timeout_s, settle_ms })
        }
        Command::Plugin { command: PluginCommand::New(args) } => authoring_cli::new(&args),
        Command::Plugin { command: PluginCommand::Test(args) } => authoring_cli::test(&args),
        Command::Plugin { command: PluginCommand::List { admin, json } } => plugin_cli::list(&admin, json),
        Command::Plugin { command: PluginCommand::Swap { name, file, config, canary, watch, admin } } => {
            plugin_cli::swap(&admin, &name, &file, config.as_deref(), canary, watch)
        }
        Command::Plugin { command: PluginCommand::Rollback { name, admin } } => plugin_cli::rollback(&admin, &name),
        Command::Plugin { command: PluginCommand::Build { dir, output, force } } => {
            match streamhost::build::build_plugin(&dir, output.as_deref(), force) {
                Ok(b) => {
                    let verb = if b.rebuilt { "built" } else { "up to date" };
                    println!("{} ({:?}, world {}): {verb}: {}", b.manifest.name, b.language, b.manifest.world.as_str(), b.output.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(INVALID))
                }
            }
        }
    }
}

/// `run` (and `sql`): runs a loaded pipeline until its sources are exhausted or a signal stops it.
fn run_pipeline(p: LoadedPipeline, fresh: bool, no_progress: bool, instance: Option<String>) -> anyhow::Result<ExitCode> {
    let signals = stop_on_signals()?;
    let opts = BuildOptions { progress: !no_progress && std::io::stderr().is_terminal(), fresh, ..Default::default() };
    if let Some(scale) = &p.config.settings.scale_out {
        if fresh {
            eprintln!("error: --fresh is not for a scaled-out pipeline (other processes may be using its checkpoints); remove its checkpoint directory (with redis state, the prefix's keys) while none runs");
            return Ok(ExitCode::from(INVALID));
        }
        let instance = instance
            .or_else(|| std::env::var("STREAMHOST_INSTANCE").ok())
            .or_else(|| scale.instance.clone())
            .unwrap_or_else(default_instance);
        if !streamhost::runtime::valid_instance(&instance) {
            eprintln!("error: instance `{instance}`: must be 1-64 letters, digits, `-`, `_` or `.`");
            return Ok(ExitCode::from(INVALID));
        }
        let stop = StopHandle::new();
        attach_signals(&signals, stop.clone(), None);
        return match streamhost::runtime::run_in_group(&p, BuildOptions { progress: false, ..opts }, &instance, stop) {
            Ok(_) => Ok(ExitCode::SUCCESS),
            Err(RunError::Config(e)) => Ok(invalid(&e)),
            Err(e) => Err(e.into()),
        };
    }
    let built = match build_pipeline(&p, opts) {
        Ok(b) => b,
        Err(RunError::Config(e)) => return Ok(invalid(&e)),
        Err(e) => return Err(e.into()),
    };
    attach_signals(&signals, built.stop_handle(), built.admin_addr_file());
    let summary = built.run()?;
    eprint!("{summary}");
    Ok(if summary.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A long output to stdout, a line at its end; a reader that stopped early
/// (`| head`) ends it quietly rather than with a panic.
fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush());
}
