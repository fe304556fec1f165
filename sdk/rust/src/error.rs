//! The error a plugin function returns for one event or one row.

use std::fmt;

/// Why one event (or one UDF row) was rejected. The message travels to the
/// host, which dead-letters that event alone with it.
///
/// Like `anyhow::Error`, any `std::error::Error` converts into it, so `?`
/// works on serde_json, number parsing and the like.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error { message: message.into() }
    }

    /// The message the host records.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message, owned.
    pub fn into_message(self) -> String {
        self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.message)
    }
}

/// Not implementing `std::error::Error` for `Error` is what allows this
/// blanket conversion (as in anyhow).
impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error { message: e.to_string() }
    }
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.message
    }
}

/// Returns early with an [`Error`] built like `format!`.
///
/// ```
/// fn check(n: i64) -> Result<i64, streamhost_sdk::Error> {
///     if n < 0 {
///         streamhost_sdk::bail!("negative: {n}");
///     }
///     Ok(n)
/// }
/// assert_eq!(check(-1).unwrap_err().message(), "negative: -1");
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::new(::std::format!($($arg)*)))
    };
}
