//! Logging through the host's `log` import.
//!
//! In a wasm plugin the line goes to the host, tagged with the plugin's name;
//! in a native build (unit tests) it goes to stderr, since there is no host.

pub use crate::bindings::host::Level;

/// Logs `message` with key/value `fields` at `level`.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        crate::bindings::host::log(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::fmt::Write;
        let mut line = format!("[{}] {message}", level_name(level));
        for (k, v) in fields {
            let _ = write!(line, " {k}={v}");
        }
        eprintln!("{line}");
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Logs at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message, &[]);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}
