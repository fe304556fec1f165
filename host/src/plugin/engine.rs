//! The process-wide wasmtime `Engine` and its epoch ticker.

use std::time::Duration;

use wasmtime::{Config, Engine, OptLevel};

/// How often the epoch advances. A call's time budget is counted in ticks,
/// so budgets are accurate to about one tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine every plugin of this process is compiled and run with.
///
/// Instances use the on-demand allocator: a runner instantiates once and
/// again only after a trap, so the pooling allocator's faster
/// instantiation would not pay for its fixed per-slot reservations (which
/// would also have to be sized for the largest `memory_mb` of any plugin).
/// Copy-on-write memory images keep instantiation cheap anyway.
///
/// `fuel`: count the instructions each call executes (`plugin test --fuel`;
/// it slows execution, so pipelines run without).
pub(crate) fn new_engine(fuel: bool) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(fuel)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        .memory_init_cow(true);
    Engine::new(&config)
}

/// Starts the thread that advances the engine's epoch every [`EPOCH_TICK`].
/// It holds only a weak reference and stops once the engine and every
/// plugin compiled with it are dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || loop {
        std::thread::sleep(EPOCH_TICK);
        match weak.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => break,
        }
    })?;
    Ok(())
}

/// The fuel a metered store gets before each call: never runs out (time is
/// bounded by epochs), so what is left tells what the call used.
pub(crate) const FUEL_PER_CALL: u64 = 1 << 62;

/// Epoch ticks that cover `budget_ms`: rounded up, plus one because the
/// next tick may come at any moment after the deadline is set.
pub(crate) fn deadline_ticks(budget_ms: u64) -> u64 {
    budget_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1) + 1
}
