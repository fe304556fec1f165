//! UDF plugins: plain typed Rust functions, exported by name.
//!
//! The argument and result types of each function give its WIT
//! `function-signature` (see [`FromScalar`] / [`IntoScalar`]), so
//! `functions()` never drifts from the code.

pub use crate::bindings::types::{FunctionSignature, Scalar, ScalarType};
use crate::Error;

/// A Rust type a UDF argument can have.
pub trait FromScalar: Sized {
    /// The type declared in the function's signature.
    const TYPE: ScalarType;
    fn from_scalar(value: Scalar) -> Result<Self, Error>;
}

/// A Rust type a UDF can return.
pub trait IntoScalar {
    /// The type declared in the function's signature.
    const TYPE: ScalarType;
    fn into_scalar(self) -> Scalar;
}

/// The name of a scalar's type, for error messages.
pub fn type_name(value: &Scalar) -> &'static str {
    match value {
        Scalar::Null => "null",
        Scalar::Boolean(_) => "boolean",
        Scalar::Int(_) => "int",
        Scalar::Float(_) => "float",
        Scalar::Str(_) => "str",
        Scalar::Bytes(_) => "bytes",
    }
}

fn mismatch(expected: &str, got: &Scalar) -> Error {
    Error::new(format!("expected {expected}, got {}", type_name(got)))
}

macro_rules! scalar_impl {
    ($ty:ty, $variant:ident, $name:literal) => {
        impl FromScalar for $ty {
            const TYPE: ScalarType = ScalarType::$variant;
            fn from_scalar(value: Scalar) -> Result<Self, Error> {
                match value {
                    Scalar::$variant(v) => Ok(v),
                    other => Err(mismatch($name, &other)),
                }
            }
        }
        impl IntoScalar for $ty {
            const TYPE: ScalarType = ScalarType::$variant;
            fn into_scalar(self) -> Scalar {
                Scalar::$variant(self)
            }
        }
    };
}

scalar_impl!(bool, Boolean, "boolean");
scalar_impl!(i64, Int, "int");
scalar_impl!(String, Str, "str");
scalar_impl!(Vec<u8>, Bytes, "bytes");

impl FromScalar for f64 {
    const TYPE: ScalarType = ScalarType::Float;
    /// Ints are accepted too: a JSON number without a fraction is an int.
    fn from_scalar(value: Scalar) -> Result<Self, Error> {
        match value {
            Scalar::Float(v) => Ok(v),
            Scalar::Int(v) => Ok(v as f64),
            other => Err(mismatch("float", &other)),
        }
    }
}

impl IntoScalar for f64 {
    const TYPE: ScalarType = ScalarType::Float;
    fn into_scalar(self) -> Scalar {
        Scalar::Float(self)
    }
}

impl IntoScalar for &str {
    const TYPE: ScalarType = ScalarType::Str;
    fn into_scalar(self) -> Scalar {
        Scalar::Str(self.to_string())
    }
}

/// `Scalar` itself is the `any` type: the function checks at run time.
impl FromScalar for Scalar {
    const TYPE: ScalarType = ScalarType::Any;
    fn from_scalar(value: Scalar) -> Result<Self, Error> {
        Ok(value)
    }
}

impl IntoScalar for Scalar {
    const TYPE: ScalarType = ScalarType::Any;
    fn into_scalar(self) -> Scalar {
        self
    }
}

/// An optional argument accepts null; an optional result returns null.
impl<T: FromScalar> FromScalar for Option<T> {
    const TYPE: ScalarType = T::TYPE;
    fn from_scalar(value: Scalar) -> Result<Self, Error> {
        match value {
            Scalar::Null => Ok(None),
            v => T::from_scalar(v).map(Some),
        }
    }
}

impl<T: IntoScalar> IntoScalar for Option<T> {
    const TYPE: ScalarType = T::TYPE;
    fn into_scalar(self) -> Scalar {
        match self {
            Some(v) => v.into_scalar(),
            None => Scalar::Null,
        }
    }
}

/// What a UDF may return: a value, or `Result<value, Error>` (the error
/// fails that row alone).
pub trait UdfReturn {
    const TYPE: ScalarType;
    fn into_row_result(self) -> Result<Scalar, String>;
}

impl<T: IntoScalar> UdfReturn for T {
    const TYPE: ScalarType = T::TYPE;
    fn into_row_result(self) -> Result<Scalar, String> {
        Ok(self.into_scalar())
    }
}

impl<T: IntoScalar> UdfReturn for Result<T, Error> {
    const TYPE: ScalarType = T::TYPE;
    fn into_row_result(self) -> Result<Scalar, String> {
        self.map(IntoScalar::into_scalar).map_err(Error::into_message)
    }
}

/// A Rust function usable as a UDF: `Fn(A, B, ...) -> R` with arguments
/// implementing [`FromScalar`] and `R` implementing [`UdfReturn`]. `Args`
/// is the tuple of argument types (it only guides inference).
pub trait UdfFn<Args> {
    /// Argument types, in order.
    fn params() -> Vec<ScalarType>;
    /// Result type.
    fn result() -> ScalarType;
    /// Calls the function on one row.
    fn call_row(&self, row: Vec<Scalar>) -> Result<Scalar, String>;
}

macro_rules! udf_fn_impl {
    ($($arg:ident),*) => {
        impl<Func, Ret, $($arg,)*> UdfFn<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Ret,
            Ret: UdfReturn,
            $($arg: FromScalar,)*
        {
            fn params() -> Vec<ScalarType> {
                vec![$($arg::TYPE),*]
            }

            fn result() -> ScalarType {
                Ret::TYPE
            }

            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call_row(&self, row: Vec<Scalar>) -> Result<Scalar, String> {
                let expected = Self::params().len();
                if row.len() != expected {
                    return Err(format!("expected {expected} argument(s), got {}", row.len()));
                }
                let mut values = row.into_iter();
                let mut position = 0usize;
                $(
                    position += 1;
                    let $arg = match values.next() {
                        Some(v) => $arg::from_scalar(v).map_err(|e| format!("argument {position}: {e}"))?,
                        None => return Err(format!("argument {position} missing")),
                    };
                )*
                (self)($($arg),*).into_row_result()
            }
        }
    };
}

udf_fn_impl!();
udf_fn_impl!(A);
udf_fn_impl!(A, B);
udf_fn_impl!(A, B, C);
udf_fn_impl!(A, B, C, D);
udf_fn_impl!(A, B, C, D, E);
udf_fn_impl!(A, B, C, D, E, F);

/// The signature `functions()` reports for `f` under `name`.
pub fn signature<Args, Func: UdfFn<Args>>(name: &str, _f: &Func) -> FunctionSignature {
    FunctionSignature { name: name.to_string(), params: Func::params(), result: Func::result() }
}

/// Calls `f` once per row; one row's error fails that row alone.
pub fn call_rows<Args, Func: UdfFn<Args>>(f: &Func, rows: Vec<Vec<Scalar>>) -> Vec<Result<Scalar, String>> {
    rows.into_iter().map(|row| f.call_row(row)).collect()
}

/// The answer to a call of a function the plugin does not export.
pub fn unknown_function(name: &str, rows: usize) -> Vec<Result<Scalar, String>> {
    vec![Err(format!("unknown function {name:?}")); rows]
}

/// Exports plain Rust functions as the plugin's `udf` world, under their
/// own names. Signatures come from the argument and result types.
///
/// ```
/// fn domain(url: String) -> Option<String> {
///     url.split("://").nth(1).map(|rest| rest.split('/').next().unwrap_or("").to_string())
/// }
/// fn twice(n: i64) -> Result<i64, streamhost_sdk::Error> {
///     n.checked_mul(2).ok_or_else(|| streamhost_sdk::Error::new("overflow"))
/// }
/// streamhost_sdk::udf!(domain, twice);
/// # fn main() {}
/// ```
///
/// With an `init`: `streamhost_sdk::udf!(domain, twice; init = setup);`.
#[macro_export]
macro_rules! udf {
    ($($func:ident),+ $(,)?) => {
        $crate::udf!($($func),+ ; init = $crate::transform::no_init);
    };
    ($($func:ident),+ ; init = $init:path $(,)?) => {
        const _: () = {
            #[allow(dead_code)]
            struct StreamhostUdf;

            impl $crate::bindings::udf::Guest for StreamhostUdf {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::transform::run_init(&config, $init)
                }

                fn functions() -> ::std::vec::Vec<$crate::udf::FunctionSignature> {
                    ::std::vec![$($crate::udf::signature(::core::stringify!($func), &$func)),+]
                }

                fn call(
                    name: ::std::string::String,
                    rows: ::std::vec::Vec<::std::vec::Vec<$crate::udf::Scalar>>,
                ) -> ::std::vec::Vec<::core::result::Result<$crate::udf::Scalar, ::std::string::String>> {
                    match name.as_str() {
                        $(::core::stringify!($func) => $crate::udf::call_rows(&$func, rows),)+
                        _ => $crate::udf::unknown_function(&name, rows.len()),
                    }
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__export_udf_impl!(StreamhostUdf with_types_in $crate::bindings::udf);

            // Natively nothing calls the exports: mark the functions used.
            let _ = ($($func,)+ $init);
        };
    };
}
