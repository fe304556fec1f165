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
//!   events of each other input (`{"clicks": 2}`).

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
    #[error("{0}")]
    Unsupported(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
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
    if language == Language::Go && world == WorldName::Joiner {
        return Err(ScaffoldError::Unsupported(
            "the Go SDK has no joiner world yet (sdk/go implements transform and udf): write a joiner in Rust or Python"
                .into(),
        ));
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
            };
            files.push(("src/lib.rs", fill(lib)));
        }
        (Language::Python, _) => {
            let (app, test) = match world {
                WorldName::Transform => (PY_TRANSFORM, PY_TRANSFORM_TEST),
                WorldName::Udf => (PY_UDF, PY_UDF_TEST),
                WorldName::Joiner => (PY_JOINER, PY_JOINER_TEST),
            };
            files.push(("app.py", fill(app)));
            files.push(("test_app.py", fill(&format!("{PY_TEST_PREAMBLE}{test}"))));
        }
        (Language::Go, _) => {
            files.push(("go.mod", fill(GO_MOD)));
            let (main, test) = match world {
                WorldName::Udf => (GO_UDF, GO_UDF_TEST),
                _ => (GO_TRANSFORM, GO_TRANSFORM_TEST),
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
    };
    let sample_shape = match world {
        WorldName::Transform => "one JSON record per line (the event's payload, as a `file` source reads it)",
        WorldName::Udf => "one JSON array of arguments per line (`[3, 100]`); `--function` picks the function",
        WorldName::Joiner => {
            "one `{\"main\": RECORD, \"matches\": {\"INPUT\": [RECORD, ...], ...}}` per line"
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

// ---------------------------------------------------------------- Rust ----

const RUST_CARGO_TOML: &str = r##"[package]
name = "__NAME__"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the WebAssembly component; rlib: native unit tests call the functions.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The SDK of the streamhost binary that created (and builds) this folder.
streamhost-sdk = { path = ".streamhost/sdk/rust" }
serde_json = "1"

# A crate of its own, even inside another workspace's folder.
[workspace]
"##;

const RUST_TRANSFORM: &str = r##"//! __NAME__: a streamhost `transform` plugin.
//!
//! `tag` is an ordinary function, called once per input event: it returns the
//! event to pass on, `None` to drop it, or an error that dead-letters that
//! event alone.

use serde_json::Value;
use streamhost_sdk::{Error, Event};

/// Drops bot traffic (`"is_bot": true`) and tags every other record with
/// `"processed_by": "__NAME__"`. A record that is not a JSON object is refused.
pub fn tag(mut event: Event) -> Result<Option<Event>, Error> {
    let Value::Object(mut record) = event.json::<Value>()? else {
        return Err(Error::new("expected a JSON object"));
    };
    if record.get("is_bot") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    record.insert("processed_by".into(), Value::from("__NAME__"));
    event.set_json(&record)?;
    Ok(Some(event))
}

streamhost_sdk::transform!(tag);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_drops_and_refuses() {
        let out = tag(Event::new(r#"{"user_id":"u1"}"#).with_timestamp(7)).unwrap().unwrap();
        assert_eq!(out.json::<Value>().unwrap(), json!({"user_id": "u1", "processed_by": "__NAME__"}));
        assert_eq!(out.timestamp, 7);
        assert!(tag(Event::new(r#"{"is_bot":true}"#)).unwrap().is_none());
        assert_eq!(tag(Event::new("[1]")).unwrap_err().message(), "expected a JSON object");
    }

    /// The same through the columnar path the component takes.
    #[test]
    fn a_batch_fails_only_its_bad_event() {
        let out = streamhost_sdk::process_batch(vec![Event::new("{}"), Event::new("nope"), Event::new("{}")], tag);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap().len(), 1);
        assert!(out[1].is_err());
        assert_eq!(out[2].as_ref().unwrap().len(), 1);
    }
}
"##;

const RUST_UDF: &str = r##"//! __NAME__: a streamhost `udf` plugin: scalar functions a pipeline step
//! calls by name. Their signatures come from the Rust types (`i64` is int,
//! `f64` float, `String` str, `Option<T>` nullable).

use streamhost_sdk::Error;

/// The click-through rate `clicks / impressions`: null without impressions,
/// an error (that row alone fails) for a negative count.
pub fn ctr(clicks: i64, impressions: i64) -> Result<Option<f64>, Error> {
    if clicks < 0 || impressions < 0 {
        return Err(Error::new(format!("negative count: clicks {clicks}, impressions {impressions}")));
    }
    if impressions == 0 {
        return Ok(None);
    }
    Ok(Some(clicks as f64 / impressions as f64))
}

streamhost_sdk::udf!(ctr);

#[cfg(test)]
mod tests {
    use super::*;
    use streamhost_sdk::udf::{call_rows, Scalar};

    #[test]
    fn ratios_nulls_and_errors() {
        assert_eq!(ctr(3, 100).unwrap(), Some(0.03));
        assert_eq!(ctr(0, 0).unwrap(), None);
        assert_eq!(ctr(-1, 5).unwrap_err().message(), "negative count: clicks -1, impressions 5");
    }

    /// The same through the path the component takes: one result per row.
    #[test]
    fn rows_fail_alone() {
        let out = call_rows(&ctr, vec![vec![Scalar::Int(1), Scalar::Int(4)], vec![Scalar::Int(-1), Scalar::Int(4)]]);
        assert_eq!(out[0], Ok(Scalar::Float(0.25)));
        assert!(out[1].is_err());
    }
}
"##;

const RUST_JOINER: &str = r##"//! __NAME__: a streamhost `joiner` plugin, the output of a `window-join`
//! step: called with a main event and the events of each other input that
//! matched it within the window.

use serde_json::{Map, Value};
use streamhost_sdk::joiner::Matches;
use streamhost_sdk::{Error, Event};

/// The main record with `"matches"`: how many events of each other input
/// matched it (`{"clicks": 2}`). Keeps the main event's key and time.
pub fn join(main: Event, matches: &Matches) -> Result<Event, Error> {
    let Value::Object(mut record) = main.json::<Value>()? else {
        return Err(Error::new("expected a JSON object"));
    };
    let counts: Map<String, Value> =
        matches.iter().map(|(input, events)| (input.to_string(), Value::from(events.len()))).collect();
    record.insert("matches".into(), Value::Object(counts));
    main.with_json(&record)
}

streamhost_sdk::joiner!(join);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use streamhost_sdk::joiner::join_batch;

    #[test]
    fn counts_matches_per_input() {
        let out = join_batch(
            &["clicks"],
            vec![
                (Event::new(r#"{"request_id":"r1"}"#), vec![("clicks", Event::new("{}")), ("clicks", Event::new("{}"))]),
                (Event::new(r#"{"request_id":"r2"}"#), vec![]),
                (Event::new("[]"), vec![]),
            ],
            join,
        );
        let first: Value = out[0].as_ref().unwrap()[0].json().unwrap();
        assert_eq!(first, json!({"request_id": "r1", "matches": {"clicks": 2}}));
        let second: Value = out[1].as_ref().unwrap()[0].json().unwrap();
        assert_eq!(second, json!({"request_id": "r2", "matches": {"clicks": 0}}));
        assert_eq!(out[2].as_ref().unwrap_err(), "expected a JSON object");
    }
}
"##;

// -------------------------------------------------------------- Python ----

const PY_TRANSFORM: &str = r##""""__NAME__: a streamhost ``transform`` plugin.

``tag`` is an ordinary function; ``Plugin.process_event`` is called once per
input event and returns the event to pass on, None to drop it, or raises to
dead-letter that event alone.
"""

import streamhost


def tag(record):
    """The record tagged with ``processed_by``, or None for bot traffic."""
    if not isinstance(record, dict):
        raise streamhost.PluginError("expected a JSON object")
    if record.get("is_bot") is True:
        return None
    record["processed_by"] = "__NAME__"
    return record


class Plugin(streamhost.Transform):
    def process_event(self, event):
        record = tag(event.json)
        if record is None:
            return None
        return event.set_json(record)
"##;

const PY_TEST_PREAMBLE: &str = r##""""Native unit test: ``python3 -m unittest`` in this folder."""

import os
import sys
import unittest

# The SDK of the streamhost binary that created this folder (see .streamhost/README.md).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".streamhost", "sdk", "python"))

import streamhost  # noqa: E402

"##;

const PY_TRANSFORM_TEST: &str = r##"from app import Plugin, tag  # noqa: E402


class TagTest(unittest.TestCase):
    def test_tags_drops_and_refuses(self):
        self.assertEqual(tag({"user_id": "u1"}), {"user_id": "u1", "processed_by": "__NAME__"})
        self.assertIsNone(tag({"is_bot": True}))
        with self.assertRaises(streamhost.PluginError) as cm:
            tag([1])
        self.assertEqual(str(cm.exception), "expected a JSON object")

    def test_plugin_keeps_the_event_time(self):
        out = Plugin().process_event(streamhost.Event(value=b'{"user_id":"u1"}', timestamp=7))
        self.assertEqual(out.json, {"user_id": "u1", "processed_by": "__NAME__"})
        self.assertEqual(out.timestamp, 7)


if __name__ == "__main__":
    unittest.main()
"##;

const PY_UDF: &str = r##""""__NAME__: a streamhost ``udf`` plugin: scalar functions a pipeline step
calls by name. Their signatures come from the type hints (``int``,
``float``, ``str``, ``bytes``, ``bool``, ``Optional[...]`` for nullable).
"""

from typing import Optional

import streamhost


class Plugin(streamhost.Udf):
    @streamhost.function
    def ctr(self, clicks: int, impressions: int) -> Optional[float]:
        """The click-through rate: None without impressions; raising fails
        that row alone."""
        if clicks < 0 or impressions < 0:
            raise streamhost.PluginError(f"negative count: clicks {clicks}, impressions {impressions}")
        if impressions == 0:
            return None
        return clicks / impressions
"##;

const PY_UDF_TEST: &str = r##"from app import Plugin  # noqa: E402


class CtrTest(unittest.TestCase):
    def test_ratios_nulls_and_errors(self):
        plugin = Plugin()
        self.assertEqual(plugin.ctr(3, 100), 0.03)
        self.assertIsNone(plugin.ctr(0, 0))
        with self.assertRaises(streamhost.PluginError) as cm:
            plugin.ctr(-1, 5)
        self.assertEqual(str(cm.exception), "negative count: clicks -1, impressions 5")


if __name__ == "__main__":
    unittest.main()
"##;

const PY_JOINER: &str = r##""""__NAME__: a streamhost ``joiner`` plugin, the output of a ``window-join``
step: called with a main event and the events of each other input that
matched it within the window.
"""

import streamhost


class Plugin(streamhost.Joiner):
    def join(self, main, matches):
        """The main record with ``matches``: how many events of each other
        input matched it. Keeps the main event's key and time."""
        record = main.json
        if not isinstance(record, dict):
            raise streamhost.PluginError("expected a JSON object")
        record["matches"] = {name: len(events) for name, events in matches.items()}
        return main.with_json(record)
"##;

const PY_JOINER_TEST: &str = r##"from app import Plugin  # noqa: E402


class JoinTest(unittest.TestCase):
    def test_counts_matches_per_input(self):
        main = streamhost.Event(value=b'{"request_id":"r1"}', timestamp=7)
        clicks = [streamhost.Event(value=b"{}"), streamhost.Event(value=b"{}")]
        out = Plugin().join(main, {"clicks": clicks})
        self.assertEqual(out.json, {"request_id": "r1", "matches": {"clicks": 2}})
        self.assertEqual(out.timestamp, 7)
        with self.assertRaises(streamhost.PluginError):
            Plugin().join(streamhost.Event(value=b"[]"), {"clicks": []})


if __name__ == "__main__":
    unittest.main()
"##;

// ------------------------------------------------------------------ Go ----

const GO_MOD: &str = r##"module __NAME__

go 1.24

require streamhost.dev/sdk v0.0.0

// The SDK of the streamhost binary that created (and builds) this folder.
replace streamhost.dev/sdk => ./.streamhost/sdk/go
"##;

const GO_TRANSFORM: &str = r##"// __NAME__: a streamhost transform plugin. tag is called once per input
// event: it returns the events to pass on (none drops it), or an error that
// dead-letters that event alone.
package main

import (
	"bytes"
	"encoding/json"
	"errors"

	sdk "streamhost.dev/sdk"
)

// Register from init(): the host never calls main.
func init() {
	sdk.RegisterTransform(tag)
}

func main() {}

var errNotObject = errors.New("expected a JSON object")

// tag drops bot traffic ("is_bot": true) and tags every other record with
// "processed_by": "__NAME__". A record that is not a JSON object is refused.
func tag(e sdk.Event) ([]sdk.Event, error) {
	var record map[string]any
	dec := json.NewDecoder(bytes.NewReader(e.Value))
	dec.UseNumber() // keep numbers as written
	if err := dec.Decode(&record); err != nil || record == nil {
		return nil, errNotObject
	}
	if record["is_bot"] == true {
		return nil, nil
	}
	record["processed_by"] = "__NAME__"
	value, err := json.Marshal(record)
	if err != nil {
		return nil, err
	}
	e.Value = value
	return []sdk.Event{e}, nil
}
"##;

const GO_TRANSFORM_TEST: &str = r##"package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	sdk "streamhost.dev/sdk"
)

func TestTag(t *testing.T) {
	out, err := tag(sdk.Event{Value: []byte(`{"user_id":"u1","n":12345678901234567}`), Timestamp: 7})
	if err != nil || len(out) != 1 {
		t.Fatalf("tag: %v %v", out, err)
	}
	var got, want map[string]any
	json.Unmarshal(out[0].Value, &got)
	json.Unmarshal([]byte(`{"user_id":"u1","n":12345678901234567,"processed_by":"__NAME__"}`), &want)
	if !reflect.DeepEqual(got, want) || !strings.Contains(string(out[0].Value), "12345678901234567") || out[0].Timestamp != 7 {
		t.Fatalf("got %s at %d", out[0].Value, out[0].Timestamp)
	}
	if out, err := tag(sdk.Event{Value: []byte(`{"is_bot":true}`)}); err != nil || len(out) != 0 {
		t.Fatalf("a bot is dropped: %v %v", out, err)
	}
	if _, err := tag(sdk.Event{Value: []byte(`[1]`)}); err == nil || err.Error() != "expected a JSON object" {
		t.Fatalf("not an object: %v", err)
	}
}
"##;

const GO_UDF: &str = r##"// __NAME__: a streamhost udf plugin: scalar functions a pipeline step calls
// by name, registered with their parameter and result types.
package main

import (
	"fmt"

	sdk "streamhost.dev/sdk"
)

// Register from init(): the host never calls main.
func init() {
	sdk.RegisterUDF("ctr", []sdk.Type{sdk.Int, sdk.Int}, sdk.Float, ctr)
}

func main() {}

// ctr is the click-through rate clicks/impressions: null without
// impressions (or with a null argument), an error (that row alone fails)
// for a negative count.
func ctr(args []sdk.Scalar) (sdk.Scalar, error) {
	if args[0].IsNull() || args[1].IsNull() {
		return sdk.NullValue(), nil
	}
	clicks, _ := args[0].Int()
	impressions, _ := args[1].Int()
	if clicks < 0 || impressions < 0 {
		return sdk.Scalar{}, fmt.Errorf("negative count: clicks %d, impressions %d", clicks, impressions)
	}
	if impressions == 0 {
		return sdk.NullValue(), nil
	}
	return sdk.FloatValue(float64(clicks) / float64(impressions)), nil
}
"##;

const GO_UDF_TEST: &str = r##"package main

import (
	"testing"

	sdk "streamhost.dev/sdk"
)

func TestCtr(t *testing.T) {
	v, err := ctr([]sdk.Scalar{sdk.IntValue(3), sdk.IntValue(100)})
	if f, _ := v.Float(); err != nil || f != 0.03 {
		t.Fatalf("ctr(3, 100) = %v, %v", v, err)
	}
	if v, err := ctr([]sdk.Scalar{sdk.IntValue(0), sdk.IntValue(0)}); err != nil || !v.IsNull() {
		t.Fatalf("ctr(0, 0) = %v, %v", v, err)
	}
	if _, err := ctr([]sdk.Scalar{sdk.IntValue(-1), sdk.IntValue(5)}); err == nil || err.Error() != "negative count: clicks -1, impressions 5" {
		t.Fatalf("ctr(-1, 5): %v", err)
	}
}
"##;

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

    #[test]
    fn go_has_no_joiner() {
        let dir = tempfile::tempdir().unwrap();
        let e = new_plugin(&dir.path().join("j"), "j", Language::Go, WorldName::Joiner).unwrap_err();
        assert!(e.to_string().contains("no joiner"), "{e}");
        assert!(!dir.path().join("j").exists());
    }

    /// Every combination writes a folder the builder recognises (manifest
    /// and language), with no placeholder left and nothing pointing at a
    /// checkout of this repository.
    #[test]
    fn every_combination_is_a_plugin_folder() {
        let worlds = [WorldName::Transform, WorldName::Udf, WorldName::Joiner];
        for language in [Language::Rust, Language::Python, Language::Go] {
            for world in worlds {
                if language == Language::Go && world == WorldName::Joiner {
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
