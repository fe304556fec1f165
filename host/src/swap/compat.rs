//! Is a new version a drop-in replacement? The world is checked when the
//! component is loaded (`PluginRuntime::load` with the slot's world links
//! it against that world's exports); for a UDF, every function the pipeline
//! calls must still be there with the same signature.

use std::collections::BTreeSet;

use crate::plugin::{FunctionSignature, ScalarType};

/// Why a new UDF version cannot replace the old one, or `Ok`.
pub(crate) fn check_functions(used: &BTreeSet<String>, old: &[FunctionSignature], new: &[FunctionSignature]) -> Result<(), String> {
    let mut problems = Vec::new();
    for name in used {
        let find = |list: &[FunctionSignature]| list.iter().find(|f| &f.name == name).cloned();
        match (find(old), find(new)) {
            (_, None) => {
                let has: Vec<&str> = new.iter().map(|f| f.name.as_str()).collect();
                problems.push(format!("function `{name}` is used by the pipeline but the new version does not export it (it exports: {})", list(&has)));
            }
            (Some(old), Some(new)) if old != new => {
                problems.push(format!("function `{name}` changed signature: {} became {}", signature(&old), signature(&new)));
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

/// `(string, int) -> float`
fn signature(f: &FunctionSignature) -> String {
    let params: Vec<&str> = f.params.iter().map(|t| type_name(*t)).collect();
    format!("({}) -> {}", params.join(", "), type_name(f.result))
}

fn type_name(t: ScalarType) -> &'static str {
    match t {
        ScalarType::Null => "null",
        ScalarType::Boolean => "boolean",
        ScalarType::Int => "int",
        ScalarType::Float => "float",
        ScalarType::Str => "string",
        ScalarType::Bytes => "bytes",
        ScalarType::Any => "any",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, params: &[ScalarType], result: ScalarType) -> FunctionSignature {
        FunctionSignature { name: name.into(), params: params.to_vec(), result }
    }

    #[test]
    fn swap_udf_functions_must_keep_used_signatures() {
        let used: BTreeSet<String> = ["domain".to_string()].into();
        let old = vec![f("domain", &[ScalarType::Str], ScalarType::Str), f("path", &[ScalarType::Str], ScalarType::Str)];
        // Unused functions may go; new ones may come.
        let new = vec![f("domain", &[ScalarType::Str], ScalarType::Str), f("extra", &[], ScalarType::Int)];
        assert_eq!(check_functions(&used, &old, &new), Ok(()));

        let missing = check_functions(&used, &old, &[f("path", &[ScalarType::Str], ScalarType::Str)]).unwrap_err();
        assert!(missing.contains("`domain` is used by the pipeline but the new version does not export it (it exports: path)"), "{missing}");

        let changed = check_functions(&used, &old, &[f("domain", &[ScalarType::Str, ScalarType::Int], ScalarType::Str)]).unwrap_err();
        assert_eq!(changed, "function `domain` changed signature: (string) -> string became (string, int) -> string");
    }
}
