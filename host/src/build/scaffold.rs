//! `streamhost plugin new NAME --lang L --world W`: a plugin folder that
//! builds and tests anywhere. It holds `plugin.toml`, one plain function in
//! the language's usual layout, a native unit test run by the language's own
//! tool, a `sample.jsonl` for `streamhost plugin test`, a README with the
//! next steps, and the vendored SDK (`vendor`), so nothing points back at a
//! checkout of this repository.
//!
//! Every template computes the same thing in each language, so the docs and
//! the tests describe one behaviour per world:
//! - transform `tag`: drops a record with `"is_bot": true`, adds
//!   `"processed_by": NAME` to any other JSON object, refuses anything else
//!   (`expected a JSON object`);
//! - udf `ctr(clicks: int, impressions: int) -> float`: their ratio, null
//!   without impressions, an error for a negative count;
//! - joiner `join`: the main record with `"matches"`, the number of matched
//!   events of each other input (`{"clicks": 2}`);
//! - aggregator `Amounts`: counts a group's events and sums their
//!   `"amount"`, finishing to `{"count": N, "mean": M}` (mean null without
//!   events); an event whose amount is not a number fails alone (no Go SDK
//!   for this world yet: `--lang go` is refused).

use std::path::{Path, PathBuf};

use super::{vendor, Language};
use crate::config::WorldName;

/// Errors of `plugin new`.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("invalid plugin name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("{0}: exists and is not empty (choose another NAME or --dir; nothing was written)")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{language} plugins cannot implement the {world} world yet (its SDK lacks it): use --lang rust or --lang python")]
    Unsupported { language: &'static str, world: &'static str },
}

/// Names Rust, Go or Python would refuse or misread as a package name.
const RESERVED: &[&str] = &[
    // Rust keywords and the crates every program links.
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "static",
    "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do",
    "final", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield", "std", "core", "alloc",
    "proc_macro", "proc-macro", "test",
    // The SDK's own names (a Python module or crate of that name would hide it).
    "streamhost", "streamhost-sdk", "streamhost_sdk", "sdk",
    // Python's module of the app, and the Go package every plugin is.
    "app", "main",
];

/// Checks a plugin name: 1-64 characters, lowercase ASCII letters, digits,
/// `-` and `_`, starting with a letter and ending with a letter or digit; a
/// valid crate, Go module and pipeline.json plugin name at once.
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let bad = |reason: &str| Err(ScaffoldError::BadName { name: name.into(), reason: reason.into() });
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters long");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')) {
        return bad(&format!("{c:?} is not allowed: use lowercase letters, digits, `-` and `_`"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("must start with a lowercase letter");
    }
    if name.ends_with(['-', '_']) {
        return bad("must end with a letter or a digit");
    }
    if RESERVED.contains(&name) {
        return bad("is reserved (a keyword, a standard library, or a name the SDK uses)");
    }
    Ok(())
}

/// What `new_plugin` wrote.
#[derive(Debug)]
pub struct Scaffolded {
    pub dir: PathBuf,
    /// The files written, relative to `dir` (the vendored SDK included).
    pub files: Vec<PathBuf>,
    /// The command that runs the native unit test, from `dir`.
    pub test_command: &'static str,
}

/// Creates the plugin folder `dir` (which must not exist, or be empty).
pub fn new_plugin(dir: &Path, name: &str, language: Language, world: WorldName) -> Result<Scaffolded, ScaffoldError> {
    validate_name(name)?;
    if language == Language::Go && world == WorldName::Aggregator {
        return Err(ScaffoldError::Unsupported { language: "Go", world: world.as_str() });
    }
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
    }
    let files = template_files(name, language, world);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    vendor::vendor_sdk(dir, language).map_err(|e| match e {
        super::BuildError::Io { path, source } => ScaffoldError::Io { path, source },
        other => ScaffoldError::Io { path: dir.to_path_buf(), source: std::io::Error::other(other.to_string()) },
    })?;
    let mut written: Vec<PathBuf> = files.into_iter().map(|(rel, _)| rel).collect();
    written.extend(vendor::vendored_files(language).into_iter().map(|(rel, _)| rel));
    Ok(Scaffolded { dir: dir.to_path_buf(), files: written, test_command: test_command(language) })
}

/// The native unit test command of a language, run in the plugin folder.
pub fn test_command(language: Language) -> &'static str {
    match language {
        Language::Rust => "cargo test",
        Language::Python => "python3 -m unittest",
        Language::Go => "go test ./...",
    }
}

/// The files of a new plugin (the vendored SDK aside), relative to its folder.
pub fn template_files(name: &str, language: Language, world: WorldName) -> Vec<(PathBuf, String)> {
    let fill = |t: &str| t.replace("__NAME__", name).replace("__WORLD__", world.as_str());
    let mut files: Vec<(&str, String)> = vec![
        ("plugin.toml", fill(PLUGIN_TOML)),
        ("sample.jsonl", sample(world).to_string()),
        ("README.md", fill(&readme(language, world))),
        (".gitignore", GITIGNORE.to_string()),
    ];
    match (language, world) {
        (Language::Rust, _) => {
            files.push(("Cargo.toml", fill(RUST_CARGO_TOML)));
            let lib = match world {
                WorldName::Transform => RUST_TRANSFORM,
                WorldName::Udf => RUST_UDF,
                WorldName::Joiner => RUST_JOINER,
                WorldName::Aggregator => RUST_AGGREGATOR,
            };
            files.push(("src/lib.rs", fill(lib)));
        }
        (Language::Python, _) => {
            let (app, test) = match world {
                WorldName::Transform => (PY_TRANSFORM, PY_TRANSFORM_TEST),
                WorldName::Udf => (PY_UDF, PY_UDF_TEST),
                WorldName::Joiner => (PY_JOINER, PY_JOINER_TEST),
                WorldName::Aggregator => (PY_AGGREGATOR, PY_AGGREGATOR_TEST),
            };
            files.push(("app.py", fill(app)));
            files.push(("test_app.py", fill(&format!("{PY_TEST_PREAMBLE}{test}"))));
        }
        (Language::Go, _) => {
            files.push(("go.mod", fill(GO_MOD)));
            let (main, test) = match world {
                WorldName::Transform => (GO_TRANSFORM, GO_TRANSFORM_TEST),
                WorldName::Udf => (GO_UDF, GO_UDF_TEST),
                WorldName::Joiner => (GO_JOINER, GO_JOINER_TEST),
                // Refused by `new_plugin` (the Go SDK has no aggregator world).
                WorldName::Aggregator => ("", ""),
            };
            files.push(("main.go", fill(main)));
            files.push(("main_test.go", fill(test)));
        }
    }
    files.into_iter().map(|(rel, text)| (PathBuf::from(rel), text)).collect()
}

/// The sample input `streamhost plugin test DIR --sample sample.jsonl` reads
/// (see `crate::trial` for the shape per world).
fn sample(world: WorldName) -> &'static str {
    match world {
        WorldName::Transform => {
            "{\"user_id\":\"u1\",\"item_id\":\"i1\"}\n{\"user_id\":\"u2\",\"is_bot\":true}\n[\"not\",\"an\",\"object\"]\n"
        }
        WorldName::Udf => "[3, 100]\n[0, 0]\n[-1, 5]\n",
        WorldName::Joiner => concat!(
            "{\"main\": {\"request_id\":\"r1\"}, \"matches\": {\"clicks\": [{\"request_id\":\"r1\"}, {\"request_id\":\"r1\"}]}}\n",
            "{\"main\": {\"request_id\":\"r2\"}, \"matches\": {\"clicks\": []}}\n",
        ),
        WorldName::Aggregator => "{\"amount\": 3}\n{\"amount\": 4.5}\n{\"amount\": \"n/a\"}\n",
    }
}

const PLUGIN_TOML: &str = "\
# The plugin's name and the world of wit/plugin.wit it implements.
name = \"__NAME__\"
world = \"__WORLD__\"
";

const GITIGNORE: &str = "target/\n__pycache__/\n";

fn readme(language: Language, world: WorldName) -> String {
    let source = match language {
        Language::Rust => "src/lib.rs",
        Language::Python => "app.py",
        Language::Go => "main.go",
    };
    let what = match world {
        WorldName::Transform => {
            "a `transform` plugin: `tag` is called once per event; it drops a record with `\"is_bot\": true`, adds \
             `\"processed_by\": \"__NAME__\"` to any other JSON object, and refuses anything else (that event alone is \
             dead-lettered)."
        }
        WorldName::Udf => {
            "a `udf` plugin: the scalar function `ctr(clicks: int, impressions: int) -> float` returns their ratio, \
             null without impressions, and an error (that row alone fails) for a negative count."
        }
        WorldName::Joiner => {
            "a `joiner` plugin (the output of a `window-join` step): `join` gets a main event and the events of each \
             other input that matched it, and returns the main record with `\"matches\"`, how many events of each \
             input matched (`{\"clicks\": 2}`)."
        }
        WorldName::Aggregator => {
            "an `aggregator` plugin (a user-defined aggregate of a `window-aggregate` step): its accumulator counts \
             the events of a group and sums their `\"amount\"`; `finish` gives `{\"count\": N, \"mean\": M}` (mean \
             null without events). An event whose amount is not a number fails alone (and changes nothing)."
        }
    };
    let step = match world {
        WorldName::Transform => {
            r#""steps": { "tagged": { "type": "transform", "plugin": "__NAME__", "inputs": ["raw"] } }"#
        }
        WorldName::Udf => {
            r#""steps": { "with_ctr": { "type": "udf", "plugin": "__NAME__", "function": "ctr", "args": ["$.clicks", "$.impressions"], "output": "ctr", "inputs": ["raw"] } }"#
        }
        WorldName::Joiner => {
            r#""steps": { "joined": { "type": "window-join", "inputs": ["impressions", "clicks"], ..., "joiner": { "type": "plugin", "plugin": "__NAME__" } } }"#
        }
        WorldName::Aggregator => {
            r#""steps": { "per_user": { "type": "window-aggregate", "inputs": ["raw"], ..., "aggregates": [{ "name": "amounts", "type": "plugin", "plugin": "__NAME__" }] } }"#
        }
    };
    let sample_shape = match world {
        WorldName::Transform => "one JSON record per line (the event's payload, as a `file` source reads it)",
        WorldName::Udf => "one JSON array of arguments per line (`[3, 100]`); `--function` picks the function",
        WorldName::Joiner => {
            "one `{\"main\": RECORD, \"matches\": {\"INPUT\": [RECORD, ...], ...}}` per line"
        }
        WorldName::Aggregator => {
            "one JSON record per line, folded per key (`--key-field`; one group without it); each line shows its \
             group's final value"
        }
    };
    format!(
        "# __NAME__

A streamhost plugin in {lang}: {what}

The code is in `{source}`; change it, keep the test next to it in step.

## Next steps

```sh
{test:<46} # the native unit test (no WebAssembly involved)
streamhost plugin build .                      # the component: target/streamhost/__NAME__.wasm
streamhost plugin test . --sample sample.jsonl # runs it in the sandbox: outputs, errors, cost per event
```

`sample.jsonl` holds {sample_shape}. `plugin test` builds first when needed, and exits non-zero if an input
traps (a panic, a timeout, running out of memory), printing the trap's message.

Use it in a pipeline.json:

```json
\"plugins\": {{ \"__NAME__\": {{ \"path\": \"path/to/__NAME__\", \"world\": \"__WORLD__\" }} }},
{step}
```

`.streamhost/` holds the SDK and the contract (`wit/plugin.wit`) of the streamhost binary that created this
folder; every `streamhost plugin build` refreshes it from the binary that runs it. Do not edit it.
",
        lang = match language {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Go => "Go",
        },
        test = test_command(language),
    )
}

// The templates (`__NAME__` and `__WORLD__` are filled in), one file each
// in `templates/`, so they read as the code they become.
const RUST_CARGO_TOML: &str = include_str!("templates/rust/Cargo.toml.tmpl");
const RUST_TRANSFORM: &str = include_str!("templates/rust/transform.rs.tmpl");
const RUST_UDF: &str = include_str!("templates/rust/udf.rs.tmpl");
const RUST_JOINER: &str = include_str!("templates/rust/joiner.rs.tmpl");
const RUST_AGGREGATOR: &str = include_str!("templates/rust/aggregator.rs.tmpl");
const PY_TRANSFORM: &str = include_str!("templates/python/transform.py.tmpl");
const PY_TEST_PREAMBLE: &str = include_str!("templates/python/test_preamble.py.tmpl");
const PY_TRANSFORM_TEST: &str = include_str!("templates/python/test_transform.py.tmpl");
const PY_UDF: &str = include_str!("templates/python/udf.py.tmpl");
const PY_UDF_TEST: &str = include_str!("templates/python/test_udf.py.tmpl");
const PY_JOINER: &str = include_str!("templates/python/joiner.py.tmpl");
const PY_JOINER_TEST: &str = include_str!("templates/python/test_joiner.py.tmpl");
const PY_AGGREGATOR: &str = include_str!("templates/python/aggregator.py.tmpl");
const PY_AGGREGATOR_TEST: &str = include_str!("templates/python/test_aggregator.py.tmpl");
const GO_MOD: &str = include_str!("templates/go/go.mod.tmpl");
const GO_TRANSFORM: &str = include_str!("templates/go/transform.go.tmpl");
const GO_TRANSFORM_TEST: &str = include_str!("templates/go/transform_test.go.tmpl");
const GO_UDF: &str = include_str!("templates/go/udf.go.tmpl");
const GO_UDF_TEST: &str = include_str!("templates/go/udf_test.go.tmpl");
const GO_JOINER: &str = include_str!("templates/go/joiner.go.tmpl");
const GO_JOINER_TEST: &str = include_str!("templates/go/joiner_test.go.tmpl");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "my-plugin", "clean_v2", "x1"] {
            validate_name(good).unwrap();
        }
        for (bad, why) in [
            ("", "1 to 64"),
            ("My", "'M' is not allowed"),
            ("9lives", "start with a lowercase letter"),
            ("a b", "' ' is not allowed"),
            ("a/../b", "'/' is not allowed"),
            ("trailing-", "end with a letter or a digit"),
            ("fn", "reserved"),
            ("streamhost", "reserved"),
        ] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(validate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn refuses_a_folder_that_is_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let e = new_plugin(dir.path(), "p", Language::Rust, WorldName::Transform).unwrap_err();
        assert!(matches!(e, ScaffoldError::NotEmpty(_)), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing written");
        // An empty folder is fine.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        new_plugin(&empty, "p", Language::Rust, WorldName::Transform).unwrap();
    }

    /// Every combination writes a folder the builder recognises (manifest
    /// and language), with no placeholder left and nothing pointing at a
    /// checkout of this repository.
    #[test]
    fn every_combination_is_a_plugin_folder() {
        let worlds = [WorldName::Transform, WorldName::Udf, WorldName::Joiner, WorldName::Aggregator];
        for language in [Language::Rust, Language::Python, Language::Go] {
            for world in worlds {
                if language == Language::Go && world == WorldName::Aggregator {
                    let tmp = tempfile::tempdir().unwrap();
                    let e = new_plugin(&tmp.path().join("p"), "p", language, world).unwrap_err().to_string();
                    assert!(e.contains("Go plugins cannot implement the aggregator world"), "{e}");
                    assert!(!tmp.path().join("p").exists(), "nothing written");
                    continue;
                }
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().join("my-plugin");
                let made = new_plugin(&dir, "my-plugin", language, world).unwrap();
                let manifest = crate::build::read_manifest(&dir).unwrap();
                assert_eq!((manifest.name.as_str(), manifest.world), ("my-plugin", world));
                assert_eq!(crate::build::detect_language(&dir).unwrap(), language);
                assert!(vendor::has_vendored_sdk(&dir));
                for rel in &made.files {
                    let text = std::fs::read_to_string(dir.join(rel)).unwrap();
                    assert!(!text.contains("__NAME__") && !text.contains("__WORLD__"), "{rel:?}");
                    if !rel.starts_with(vendor::VENDOR_DIR) {
                        assert!(!text.contains("../sdk") && !text.contains("../../sdk"), "{rel:?} points at a checkout");
                    }
                }
            }
        }
    }
}
