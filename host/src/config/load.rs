//! Reading pipeline.json: syntax, shape and graph checks, every error with
//! its JSON path and line:column.
//!
//! serde stops at the first error, so each named entry (a source, a step, a
//! sink, a plugin) is deserialised on its own and all their errors are kept;
//! the graph is checked once the shapes are known.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::locate::{line_col, locate, JsonPath};
use super::{PipelineConfig, SourceConfig, StepConfig};

/// One problem in a pipeline.json, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending value, e.g. `$.steps.clean.inputs[0]`.
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem found in one pipeline.json.
#[derive(Clone, Debug, thiserror::Error)]
pub struct ConfigErrors {
    /// The file, when read from one.
    pub file: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "pipeline".into());
        let n = self.errors.len();
        writeln!(f, "{file}: {n} error{}", if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            writeln!(f, "  {file}:{}:{}: {}: {}", e.line, e.column, e.path, e.message)?;
        }
        Ok(())
    }
}

/// A parsed, shape- and graph-checked pipeline, with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedPipeline {
    pub config: PipelineConfig,
    /// Directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// The file, when read from one.
    pub file: Option<PathBuf>,
    /// The original text, to locate later errors (plugin checks).
    pub text: String,
}

impl LoadedPipeline {
    /// Resolves a path from pipeline.json against its directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// An error at `path` (e.g. `$.plugins.x.path`) located in this file.
    pub fn error_at(&self, path: &JsonPath, message: impl Into<String>) -> ConfigError {
        error_at(&self.text, path, message.into())
    }

    pub fn errors(&self, errors: Vec<ConfigError>) -> ConfigErrors {
        ConfigErrors { file: self.file.clone(), errors }
    }
}

/// Reads and checks `path`. Never panics, whatever the file holds.
pub fn load_pipeline(path: &Path) -> Result<LoadedPipeline, ConfigErrors> {
    let text = std::fs::read(path).map_err(|e| ConfigErrors {
        file: Some(path.to_path_buf()),
        errors: vec![ConfigError { path: "$".into(), line: 1, column: 1, message: format!("cannot read: {e}") }],
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        let (line, column) = line_col(&String::from_utf8_lossy(e.as_bytes()), e.utf8_error().valid_up_to());
        ConfigErrors {
            file: Some(path.to_path_buf()),
            errors: vec![ConfigError { path: "$".into(), line, column, message: "invalid UTF-8".into() }],
        }
    })?;
    let config = parse_pipeline(&text).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })?;
    let base_dir = path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok(LoadedPipeline { config, base_dir, file: Some(path.to_path_buf()), text })
}

/// Parses and checks pipeline text: syntax, shape, and graph.
pub fn parse_pipeline(text: &str) -> Result<PipelineConfig, ConfigErrors> {
    let fail = |errors| ConfigErrors { file: None, errors };
    let root: Value = serde_json::from_str(text).map_err(|e| {
        fail(vec![ConfigError {
            path: "$".into(),
            line: e.line().max(1),
            column: e.column().max(1),
            message: format!("invalid JSON: {}", strip_position(&e.to_string())),
        }])
    })?;
    let mut errors = Vec::new();
    let mut broken = BTreeSet::new();
    let config = check_shape(text, root, &mut errors, &mut broken);
    // Graph checks run on the entries that parsed, so one run reports
    // shape and graph errors together; names of broken entries count as known.
    if let Some(config) = &config {
        check_graph(text, config, &broken, &mut errors);
    }
    match config {
        Some(c) if errors.is_empty() => Ok(split_skewed(c)),
        _ => Err(fail(errors)),
    }
}

/// Each window aggregation with `skew` becomes its two steps (see
/// `WindowAggregateConfig::split`); what read it reads the final one.
fn split_skewed(mut c: PipelineConfig) -> PipelineConfig {
    let splits: Vec<_> = c
        .steps
        .iter()
        .filter_map(|(name, s)| match s {
            StepConfig::WindowAggregate(a) if a.phase == crate::step::window_aggregate::config::Phase::Whole => a.split(name).map(|parts| (name.clone(), parts)),
            _ => None,
        })
        .collect();
    for (name, (partial_name, partial, last)) in splits {
        c.steps.insert(partial_name, StepConfig::WindowAggregate(partial));
        c.steps.insert(name, StepConfig::WindowAggregate(last));
    }
    c
}

fn error_at(text: &str, path: &JsonPath, message: String) -> ConfigError {
    let (line, column) = locate(text, path);
    ConfigError { path: path.to_string(), line, column, message }
}

/// serde_json appends " at line L column C", which we report separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Deserialises `value` found at `path`, turning a failure into a located error.
fn typed<T: DeserializeOwned>(text: &str, path: &JsonPath, value: Value, errors: &mut Vec<ConfigError>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut at = path.extend_serde(e.path());
            let message = strip_position(&e.inner().to_string());
            // Point at the unknown key itself rather than at its object.
            if let Some(field) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
                at = at.key(field);
            }
            errors.push(error_at(text, &at, message));
            None
        }
    }
}

const SECTIONS: [&str; 4] = ["plugins", "sources", "steps", "sinks"];

/// Deserialises each named entry separately so that all shape errors are
/// found. Returns the config made of the entries that parsed (None when the
/// top level itself is broken), and the names of those that did not.
fn check_shape(text: &str, root: Value, errors: &mut Vec<ConfigError>, broken: &mut BTreeSet<String>) -> Option<PipelineConfig> {
    let root_path = JsonPath::root();
    let Value::Object(mut top) = root else {
        errors.push(error_at(text, &root_path, "a pipeline must be a JSON object".into()));
        return None;
    };
    let mut sections = BTreeMap::new();
    for name in SECTIONS {
        let Some(section) = top.remove(name) else { continue };
        let path = root_path.key(name);
        match section {
            Value::Object(entries) => {
                let mut checked = serde_json::Map::new();
                for (entry, value) in entries {
                    let ok = match name {
                        "plugins" => typed::<super::PluginConfig>(text, &path.key(&entry), value.clone(), errors).is_some(),
                        "sources" => typed::<SourceConfig>(text, &path.key(&entry), value.clone(), errors).is_some(),
                        "steps" => typed::<StepConfig>(text, &path.key(&entry), value.clone(), errors).is_some(),
                        _ => typed::<super::SinkConfig>(text, &path.key(&entry), value.clone(), errors).is_some(),
                    };
                    if ok {
                        checked.insert(entry, value);
                    } else {
                        broken.insert(entry);
                    }
                }
                sections.insert(name, Value::Object(checked));
            }
            _ => errors.push(error_at(text, &path, format!("`{name}` must be an object of named entries"))),
        }
    }
    for required in ["sources", "sinks"] {
        if !sections.contains_key(required) && !errors.iter().any(|e| e.path == format!("$.{required}")) {
            errors.push(error_at(text, &root_path, format!("missing field `{required}`")));
        }
    }
    // The rest (name, dead_letter, settings, unknown keys) in one go.
    let rest: Option<PipelineConfig> = {
        let mut rest = top;
        for name in SECTIONS {
            rest.insert(name.into(), Value::Object(Default::default()));
        }
        typed(text, &root_path, Value::Object(rest), errors)
    };
    let mut full = serde_json::to_value(rest?).ok()?;
    for (name, value) in sections {
        full[name] = value;
    }
    typed(text, &root_path, full, errors)
}

/// The admin API's address and token, the rollback and canary rules.
fn check_hot_swap(s: &crate::config::Settings, err: &mut dyn FnMut(JsonPath, String)) {
    let at = JsonPath::root().key("settings");
    if let Some(admin) = &s.admin {
        let at = at.key("admin");
        match admin.bind.parse::<std::net::SocketAddr>() {
            Err(_) => err(at.key("bind"), format!("`{}` is not an IP:PORT address (e.g. 127.0.0.1:0)", admin.bind)),
            Ok(addr) if !addr.ip().is_loopback() && admin.token.is_none() => err(
                at.key("token"),
                format!("the admin API binds to {addr}, which is not a loopback address: a token is required"),
            ),
            Ok(_) => {}
        }
        if admin.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            err(at.key("token"), "must not be empty".into());
        }
    }
    let rate = |v: f64| (0.0..=1.0).contains(&v);
    let rollback = &s.hot_swap.rollback;
    let at = at.key("hot_swap");
    if !rate(rollback.max_failure_rate) {
        err(at.key("rollback").key("max_failure_rate"), "must be between 0 and 1".into());
    }
    if rollback.window_events == 0 {
        err(at.key("rollback").key("window_events"), "must be at least 1".into());
    }
    if rollback.min_events > rollback.window_events {
        err(at.key("rollback").key("min_events"), format!("must not exceed window_events ({})", rollback.window_events));
    }
    if !rate(s.hot_swap.canary.max_failure_rate) {
        err(at.key("canary").key("max_failure_rate"), "must be between 0 and 1".into());
    }
}

/// Scale-out over a consumer group: every source is Kafka, in one group,
/// unbounded; checkpoints are on; no sink is a file the processes would share.
fn check_scale_out(c: &PipelineConfig, err: &mut dyn FnMut(JsonPath, String)) {
    let Some(scale) = &c.settings.scale_out else { return };
    let at = JsonPath::root().key("settings").key("scale_out");
    if scale.instance.as_deref().is_some_and(|i| !crate::runtime::valid_instance(i)) {
        err(at.key("instance"), "must be 1-64 letters, digits, `-`, `_` or `.` (it names folders)".into());
    }
    if c.settings.checkpoint.is_none() {
        let how = match c.settings.state.backend {
            super::StateBackendKind::Redis => "a partition's state moves at checkpoints, through redis",
            _ => "with a `dir` every process reaches: a partition's state moves through it",
        };
        err(at.clone(), format!("needs `settings.checkpoint` {how}"));
    }
    let mut group: Option<(&str, &str)> = None;
    for (name, s) in &c.sources {
        let at = JsonPath::root().key("sources").key(name);
        let SourceConfig::Kafka(k) = s else {
            err(at.key("type"), "with `settings.scale_out` every source is `kafka` (the group shares the partitions)".into());
            continue;
        };
        if k.stop_at_end {
            err(at.key("stop_at_end"), "not with `settings.scale_out`: the end of a partition moves with the group's assignment".into());
        }
        match group {
            Some((first, g)) if g != k.group_id => {
                err(at.key("group_id"), format!("`{}`, but source `{first}` is in group `{g}`: with `settings.scale_out` the sources share one group", k.group_id))
            }
            None => group = Some((name, &k.group_id)),
            _ => {}
        }
    }
    for (name, s) in &c.sinks {
        if matches!(s, super::SinkConfig::File(_)) {
            err(
                JsonPath::root().key("sinks").key(name).key("type"),
                "a `file` sink cannot be shared by the processes of a group (`settings.scale_out`): use `kafka`".into(),
            );
        }
    }
}

/// The least `ttl_slack_ms` of the Redis state backend.
const MIN_TTL_SLACK_MS: u64 = 60_000;

/// The Redis state backend: its settings only with it, a usable URL and
/// prefix, and nothing whose recovery it cannot make exact: an exactly-once
/// Kafka sink (its transaction commits a checkpoint in two phases around a
/// local record), alone or in a group.
fn check_state(c: &PipelineConfig, err: &mut dyn FnMut(JsonPath, String)) {
    let at = JsonPath::root().key("settings").key("state");
    let state = &c.settings.state;
    if state.backend != super::StateBackendKind::Redis {
        if state.redis.is_some() {
            err(at.key("redis"), "only with `\"backend\": \"redis\"`".into());
        }
        return;
    }
    if let Some(r) = &state.redis {
        if let Err(e) = crate::state::check_redis_url(&r.url) {
            err(at.key("redis").key("url"), e);
        }
        if r.prefix.as_deref().is_some_and(|p| p.is_empty()) {
            err(at.key("redis").key("prefix"), "must not be empty".into());
        }
        // Keys must outlive the time between two renewals (checkpoints) by far.
        let interval = c.settings.checkpoint.as_ref().map_or(0, |cs| cs.interval_ms);
        match r.ttl_slack_ms {
            Some(slack) if slack < MIN_TTL_SLACK_MS.max(interval.saturating_mul(3)) => err(
                at.key("redis").key("ttl_slack_ms"),
                format!("{slack} ms: at least {} ms (one minute, and three checkpoint intervals): each checkpoint renews the keys' time-to-live", MIN_TTL_SLACK_MS.max(interval.saturating_mul(3))),
            ),
            _ => {}
        }
    }
    for (name, s) in &c.sinks {
        if let super::SinkConfig::Kafka(k) = s {
            if k.delivery == crate::sink::Delivery::ExactlyOnce {
                err(
                    JsonPath::root().key("sinks").key(name).key("delivery"),
                    "`exactly-once` is not supported with the redis state backend (its transaction commits a checkpoint in two phases around a local record); use `at-least-once` or `rocksdb`".into(),
                );
            }
        }
    }
}

/// Kafka sinks: `exactly-once` has a transactional id, checkpoints that
/// come before the broker times a transaction out, and no second such sink
/// (a checkpoint has one commit record).
fn check_kafka_sinks(c: &PipelineConfig, err: &mut dyn FnMut(JsonPath, String)) {
    let mut first: Option<&str> = None;
    for (name, s) in &c.sinks {
        let super::SinkConfig::Kafka(k) = s else { continue };
        let at = JsonPath::root().key("sinks").key(name);
        if k.delivery != crate::sink::Delivery::ExactlyOnce {
            if k.transactional_id.is_some() {
                err(at.key("transactional_id"), "only with `\"delivery\": \"exactly-once\"`".into());
            }
            continue;
        }
        if let Some(other) = first {
            err(at.key("delivery"), format!("sink `{other}` is exactly once already: a pipeline has one exactly-once sink (its transaction commits the checkpoint)"));
        }
        first = Some(name);
        if k.transactional_id.as_deref().is_none_or(|id| id.trim().is_empty()) {
            err(
                at.clone(),
                "`\"delivery\": \"exactly-once\"` needs `transactional_id`: unique to this pipeline on the cluster, the same at every restart".into(),
            );
        }
        if k.properties.contains_key("transactional.id") {
            err(at.key("properties").key("transactional.id"), "set `transactional_id` instead".into());
        }
        let timeout = match k.properties.get("transaction.timeout.ms") {
            None => Some(crate::sink::DEFAULT_TRANSACTION_TIMEOUT_MS),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) => Some(ms),
                Err(_) => {
                    err(at.key("properties").key("transaction.timeout.ms"), format!("`{v}` is not a number of milliseconds"));
                    None
                }
            },
        };
        match (&c.settings.checkpoint, timeout) {
            (None, _) => err(at.key("delivery"), "`exactly-once` needs `settings.checkpoint`: each checkpoint commits a transaction".into()),
            (Some(cs), Some(timeout)) if cs.interval_ms.saturating_mul(2) > timeout => err(
                JsonPath::root().key("settings").key("checkpoint").key("interval_ms"),
                format!(
                    "{} ms: with the exactly-once sink `{name}` checkpoints must come well within the broker's transaction timeout \
                     ({timeout} ms, `transaction.timeout.ms`): at most half of it",
                    cs.interval_ms
                ),
            ),
            _ => {}
        }
    }
}

/// A source's `retry`: only with `on_error: "retry"`, and a sane backoff.
fn check_retry(c: &super::SourceCommon, at: &JsonPath, err: &mut dyn FnMut(JsonPath, String)) {
    let Some(r) = &c.retry else { return };
    if c.on_error != super::OnSourceError::Retry {
        err(at.key("retry"), "only used with `\"on_error\": \"retry\"`".into());
    }
    if r.initial_ms == 0 {
        err(at.key("retry").key("initial_ms"), "must be at least 1".into());
    }
    if r.max_ms < r.initial_ms {
        err(at.key("retry").key("max_ms"), format!("must be at least initial_ms ({})", r.initial_ms));
    }
}

/// Names resolve, the DAG has no cycle, plugins are used as their world.
fn check_graph(text: &str, c: &PipelineConfig, broken: &BTreeSet<String>, errors: &mut Vec<ConfigError>) {
    let root = JsonPath::root();
    let mut err = |path: JsonPath, msg: String| errors.push(error_at(text, &path, msg));

    if c.sources.is_empty() && broken.is_empty() {
        err(root.key("sources"), "a pipeline needs at least one source".into());
    }
    if c.sinks.is_empty() && broken.is_empty() {
        err(root.key("sinks"), "a pipeline needs at least one sink".into());
    }
    if c.settings.batch_size == 0 {
        err(root.key("settings").key("batch_size"), "must be at least 1".into());
    }
    if c.settings.channel_batches == 0 {
        err(root.key("settings").key("channel_batches"), "must be at least 1".into());
    }
    if c.settings.max_parallelism == 0 || c.settings.max_parallelism > crate::runtime::MAX_KEY_GROUPS {
        err(root.key("settings").key("max_parallelism"), format!("must be within 1..={}", crate::runtime::MAX_KEY_GROUPS));
    }
    match c.settings.parallelism {
        Some(0) => err(root.key("settings").key("parallelism"), "must be at least 1".into()),
        Some(n) if n > c.settings.max_parallelism => {
            err(root.key("settings").key("parallelism"), format!("{n} workers need at least as many key groups (settings.max_parallelism is {})", c.settings.max_parallelism))
        }
        _ => {}
    }
    if c.settings.channel_bytes == 0 {
        err(root.key("settings").key("channel_bytes"), "must be at least 1".into());
    }
    check_hot_swap(&c.settings, &mut err);
    crate::alerts::check_alerts(c, &mut err);
    check_scale_out(c, &mut err);
    check_kafka_sinks(c, &mut err);
    check_lookup_tables(c, &mut err);
    check_state(c, &mut err);
    for (name, s) in &c.sources {
        check_retry(s.common(), &root.key("sources").key(name), &mut err);
        if let SourceConfig::Generator(crate::source::GeneratorSourceConfig { dirty_ratio, event_time, impressions, .. }) = s {
            if !(0.0..=1.0).contains(dirty_ratio) {
                err(root.key("sources").key(name).key("dirty_ratio"), "must be between 0 and 1".into());
            }
            let step = |v: f64| v.is_finite() && v > 0.0;
            if event_time.is_some_and(|t| !step(t.step_ms)) {
                err(root.key("sources").key(name).key("event_time").key("step_ms"), "must be a number greater than 0".into());
            }
            if impressions.is_some_and(|t| !step(t.step_ms)) {
                err(root.key("sources").key(name).key("impressions").key("step_ms"), "must be a number greater than 0".into());
            }
        }
    }
    for name in c.steps.keys() {
        if c.sources.contains_key(name) {
            err(root.key("steps").key(name), format!("`{name}` names both a source and a step"));
        }
    }
    let known = |n: &str| c.sources.contains_key(n) || c.steps.contains_key(n) || broken.contains(n);
    let list = || {
        let names: Vec<&str> = c.sources.keys().chain(c.steps.keys()).map(String::as_str).collect();
        names.join(", ")
    };
    let check_inputs = |section: &str, name: &str, inputs: &[String], err: &mut dyn FnMut(JsonPath, String)| {
        let at = root.key(section).key(name).key("inputs");
        if inputs.is_empty() {
            err(at.clone(), "needs at least one input".into());
        }
        let mut seen = BTreeSet::new();
        for (i, input) in inputs.iter().enumerate() {
            if !known(input) {
                err(at.index(i), format!("unknown input `{input}` (known: {})", list()));
            } else if !seen.insert(input) {
                err(at.index(i), format!("input `{input}` is listed twice"));
            }
        }
    };
    for (name, step) in &c.steps {
        check_inputs("steps", name, step.inputs(), &mut err);
        if let Some(plugin) = step.plugin() {
            let want = step.plugin_world();
            let at = match step {
                StepConfig::WindowJoin(_) => root.key("steps").key(name).key("joiner").key("plugin"),
                _ => root.key("steps").key(name).key("plugin"),
            };
            match c.plugins.get(plugin) {
                None if broken.contains(plugin) => {}
                None => {
                    let known: Vec<&str> = c.plugins.keys().map(String::as_str).collect();
                    err(at, format!("unknown plugin `{plugin}` (known: {})", known.join(", ")))
                }
                Some(p) if p.world.is_some_and(|w| w != want) => err(
                    at,
                    format!("plugin `{plugin}` is declared as world `{}` but this step needs `{}`", p.world.unwrap().as_str(), want.as_str()),
                ),
                Some(_) => {}
            }
        }
        match step {
            StepConfig::Filter(f) => f.check(&root.key("steps").key(name), &mut err),
            StepConfig::Project(pc) => pc.check(&root.key("steps").key(name), &mut err),
            StepConfig::Select(sc) => sc.check(&root.key("steps").key(name), &mut err),
            StepConfig::WindowAggregate(a) => {
                let at = root.key("steps").key(name);
                a.check(&at, &mut err);
                for (i, agg) in a.aggregates.iter().enumerate() {
                    let Some(plugin) = &agg.plugin else { continue };
                    let at = at.key("aggregates").index(i).key("plugin");
                    match c.plugins.get(plugin) {
                        None if broken.contains(plugin) => {}
                        None => {
                            let known: Vec<&str> = c.plugins.keys().map(String::as_str).collect();
                            err(at, format!("unknown plugin `{plugin}` (known: {})", known.join(", ")))
                        }
                        Some(p) if p.world.is_some_and(|w| w != crate::config::WorldName::Aggregator) => {
                            err(at, format!("plugin `{plugin}` is declared as world `{}` but an aggregate needs `aggregator`", p.world.unwrap().as_str()))
                        }
                        Some(_) => {}
                    }
                }
                if a.skew.is_some() && c.steps.contains_key(&format!("{name}/partial")) {
                    err(at.key("skew"), format!("splits this step into `{name}/partial` and `{name}`, but a step is already named `{name}/partial`"));
                }
                for (i, key) in a.keys.iter().enumerate() {
                    for input in &a.inputs {
                        if let Some(k) = key.of_input(input) {
                            check_key(c, broken, &at.key("keys").index(i), &k, "a grouping key", &mut err);
                        }
                    }
                }
            }
            StepConfig::LookupJoin(l) => {
                let at = root.key("steps").key(name);
                l.check(&at, &mut err);
                check_key(c, broken, &at.key("key"), &l.key, "a lookup key", &mut err);
            }
            _ => {}
        }
        if let StepConfig::Udf { output, .. } = step {
            if output.is_empty() {
                err(root.key("steps").key(name).key("output"), "must name a field".into());
            }
        }
        if let StepConfig::WindowJoin(j) = step {
            let at = root.key("steps").key(name);
            if j.inputs.len() < 2 {
                err(at.key("inputs"), "a join needs a main input and at least one other".into());
            }
            for (input, key) in &j.keys {
                let at = at.key("keys").key(input);
                if !j.inputs.contains(input) {
                    err(at, format!("`{input}` is not one of this step's inputs"));
                    continue;
                }
                check_key(c, broken, &at, key, "a join key", &mut err);
            }
            if j.window.end_ms < j.window.start_ms {
                err(at.key("window"), format!("end_ms ({}) is before start_ms ({})", j.window.end_ms, j.window.start_ms));
            }
            if let Some(problem) = j.window.end_ms.checked_sub(j.window.start_ms).and_then(|len| bucket_problem(len, j.bucket_ms)) {
                err(at.key("bucket_ms"), problem);
            }
            if j.max_matches == 0 {
                err(at.key("max_matches"), "must be at least 1".into());
            }
            let prefixes = match &j.joiner {
                crate::config::JoinerConfig::Merge { prefixes } => Some(prefixes),
                crate::config::JoinerConfig::Plugin { .. } => None,
            };
            for input in prefixes.into_iter().flat_map(|p| p.keys()) {
                if !j.inputs[1..].contains(input) {
                    err(at.key("joiner").key("prefixes").key(input), format!("`{input}` is not one of this join's other inputs"));
                }
            }
        }
    }
    for (name, sink) in &c.sinks {
        check_inputs("sinks", name, sink.inputs(), &mut err);
    }
    if let Some(cycle) = find_cycle(c) {
        let first = cycle[0].clone();
        err(root.key("steps").key(&first).key("inputs"), format!("cycle: {}", cycle.join(" -> ")));
    }
}

/// Lookup joins reading one table share its connections and, per worker,
/// its cache: they must agree on how it is read.
fn check_lookup_tables(c: &PipelineConfig, err: &mut dyn FnMut(JsonPath, String)) {
    let mut first: BTreeMap<String, (&str, &crate::step::LookupJoinConfig)> = BTreeMap::new();
    for (name, step) in &c.steps {
        let StepConfig::LookupJoin(l) = step else { continue };
        let Some((other, o)) = first.get(&l.table_identity()).copied() else {
            first.insert(l.table_identity(), (name, l));
            continue;
        };
        for ((setting, mine), (_, theirs)) in l.table_settings().into_iter().zip(o.table_settings()) {
            if mine != theirs {
                err(
                    JsonPath::root().key("steps").key(name).key(setting),
                    format!("step `{other}` reads the same table with another `{setting}` ({theirs}); steps on one table share its connections and cache: give them the same"),
                );
            }
        }
    }
}

/// Checks a step's key: a field path such as `$.request_id`, or a UDF of a
/// known `udf` plugin (`what` names the key in messages).
fn check_key(c: &PipelineConfig, broken: &BTreeSet<String>, at: &JsonPath, key: &crate::config::JoinKey, what: &str, err: &mut dyn FnMut(JsonPath, String)) {
    match key {
        crate::config::JoinKey::Field(path) => {
            if !path.starts_with("$.") || path.len() < 3 || path[2..].split('.').any(str::is_empty) {
                err(at.clone(), format!("`{path}` is not a field path such as `$.request_id`"));
            }
        }
        crate::config::JoinKey::Udf(udf) => match c.plugins.get(&udf.plugin) {
            None if broken.contains(&udf.plugin) => {}
            None => {
                let known: Vec<&str> = c.plugins.keys().map(String::as_str).collect();
                err(at.key("plugin"), format!("unknown plugin `{}` (known: {})", udf.plugin, known.join(", ")))
            }
            Some(p) if p.world.is_some_and(|w| w != crate::config::WorldName::Udf) => err(
                at.key("plugin"),
                format!("plugin `{}` is declared as world `{}` but {what} needs `udf`", udf.plugin, p.world.unwrap().as_str()),
            ),
            Some(_) => {}
        },
    }
}

/// Why `bucket_ms` does not fit a window `len` ms long, if it does not:
/// a main event scans one range per bucket its window covers, and an other
/// event stays up to a bucket longer than its windows need it.
fn bucket_problem(len: i64, bucket_ms: Option<u64>) -> Option<String> {
    let bucket = bucket_ms?;
    let len = u64::try_from(len).unwrap_or(0);
    let max_buckets = crate::config::MAX_BUCKETS_PER_WINDOW;
    if bucket == 0 {
        return Some("must be at least 1".into());
    }
    let least = len.div_ceil(max_buckets);
    if bucket < least {
        return Some(format!(
            "{bucket} ms cuts the {len} ms window into {} buckets: each main event would scan that many ranges; \
             use at least {least} (the window / {max_buckets}), or leave it out (default: the window's length)",
            len.div_ceil(bucket)
        ));
    }
    let most = len.max(1000).saturating_mul(max_buckets);
    if bucket > most {
        return Some(format!(
            "{bucket} ms is more than {max_buckets} times the window ({len} ms): other events would be kept up to a bucket \
             longer than any window needs them; use at most {most}, or leave it out (default: the window's length)"
        ));
    }
    None
}

/// A cycle among steps, as the list of names walked (first repeated at the end).
fn find_cycle(c: &PipelineConfig) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit<'a>(c: &'a PipelineConfig, n: &'a str, marks: &mut BTreeMap<&'a str, Mark>, stack: &mut Vec<&'a str>) -> Option<Vec<String>> {
        match marks.get(n).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Open => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(n, Mark::Open);
        stack.push(n);
        if let Some(step) = c.steps.get(n) {
            for input in step.inputs() {
                if c.steps.contains_key(input.as_str()) {
                    if let Some(cycle) = visit(c, input, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in c.steps.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(c, name, &mut marks, &mut stack) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<ConfigError> {
        parse_pipeline(text).expect_err("should be refused").errors
    }

    const OK: &str = r#"{
  "sources": {"in": {"type": "file", "path": "in.jsonl"}},
  "steps": {"a": {"type": "native", "name": "x", "inputs": ["in"]}},
  "sinks": {"out": {"type": "stdout", "inputs": ["a"]}}
}"#;

    #[test]
    fn accepts_a_valid_pipeline() {
        let c = parse_pipeline(OK).unwrap();
        assert_eq!(c.steps["a"].inputs(), ["in"]);
    }

    #[test]
    fn swap_admin_api_off_loopback_needs_a_token() {
        let with = |settings: &str| format!(r#"{{"sources": {{"in": {{"type": "stdin"}}}}, "sinks": {{"o": {{"type": "stdout", "inputs": ["in"]}}}}, "settings": {settings}}}"#);
        let c = parse_pipeline(&with(r#"{"admin": {}}"#)).unwrap();
        assert_eq!(c.settings.admin.map(|a| a.bind).as_deref(), Some("127.0.0.1:0"), "loopback and a free port by default");
        assert!(parse_pipeline(&with(r#"{"admin": {"bind": "0.0.0.0:7000", "token": "t"}}"#)).is_ok());
        let paths = |e: Vec<ConfigError>| e.into_iter().map(|e| e.path).collect::<Vec<_>>();
        assert_eq!(paths(errors(&with(r#"{"admin": {"bind": "0.0.0.0:7000"}}"#))), ["$.settings.admin.token"]);
        assert_eq!(paths(errors(&with(r#"{"admin": {"bind": "localhost"}}"#))), ["$.settings.admin.bind"]);
        let rule = r#"{"hot_swap": {"rollback": {"window_events": 10, "min_events": 20, "max_failure_rate": 1.5}}}"#;
        let mut found = paths(errors(&with(rule)));
        found.sort();
        assert_eq!(found, ["$.settings.hot_swap.rollback.max_failure_rate", "$.settings.hot_swap.rollback.min_events"]);
    }

    #[test]
    fn built_in_steps_are_checked_with_located_errors() {
        let text = r#"{
  "sources": {"in": {"type": "stdin"}},
  "steps": {
    "f": {"type": "filter", "inputs": ["in"], "where": {"any": [{"path": "status", "op": "eq", "value": 1}]}},
    "p": {"type": "project", "inputs": ["f"], "fields": ["a"],
          "rename": {"b": "c"}},
    "g": {"type": "filter", "inputs": ["in"], "where": {"path": "$.a", "op": "like"}}
  },
  "sinks": {"out": {"type": "null", "inputs": ["p", "g"]}}
}"#;
        let e = errors(text);
        let got: Vec<(String, usize)> = e.iter().map(|e| (e.path.clone(), e.line)).collect();
        assert_eq!(got, [("$.steps.g".into(), 7), ("$.steps.f.where.any[0].path".into(), 4), ("$.steps.p.rename.b".into(), 6)], "{e:#?}");
        assert!(e[0].message.starts_with("a condition: "), "{}", e[0].message);
        assert!(e[1].message.contains("not a field path"), "{}", e[1].message);
        assert!(e[2].message.contains("not one of the `fields` kept"), "{}", e[2].message);
    }

    #[test]
    fn an_exactly_once_kafka_sink_needs_its_id_checkpoints_in_time_and_no_second() {
        let with = |sinks: &str, settings: &str| {
            format!(r#"{{"sources": {{"in": {{"type": "stdin"}}}}, "sinks": {sinks}, "settings": {settings}}}"#)
        };
        let kafka = |extra: &str| format!(r#"{{"type": "kafka", "inputs": ["in"], "brokers": "b:9092", "topic": "t"{extra}}}"#);
        let eos = kafka(r#", "delivery": "exactly-once", "transactional_id": "job-1""#);
        let paths = |e: Vec<ConfigError>| e.into_iter().map(|e| e.path).collect::<Vec<_>>();
        let checkpoints = r#"{"checkpoint": {"interval_ms": 1000}}"#;
        assert!(parse_pipeline(&with(&format!(r#"{{"k": {eos}}}"#), checkpoints)).is_ok());
        assert_eq!(paths(errors(&with(&format!(r#"{{"k": {eos}}}"#), "{}"))), ["$.sinks.k.delivery"], "no checkpoints");
        let no_id = kafka(r#", "delivery": "exactly-once""#);
        let e = errors(&with(&format!(r#"{{"k": {no_id}}}"#), checkpoints));
        assert_eq!(paths(e.clone()), ["$.sinks.k"]);
        assert!(e[0].message.contains("needs `transactional_id`"), "{}", e[0].message);
        let slow = r#"{"checkpoint": {"interval_ms": 40000}}"#;
        let e = errors(&with(&format!(r#"{{"k": {eos}}}"#), slow));
        assert_eq!(paths(e.clone()), ["$.settings.checkpoint.interval_ms"]);
        assert!(e[0].message.contains("60000 ms"), "{}", e[0].message);
        let longer = kafka(r#", "delivery": "exactly-once", "transactional_id": "j", "properties": {"transaction.timeout.ms": "90000"}"#);
        assert!(parse_pipeline(&with(&format!(r#"{{"k": {longer}}}"#), slow)).is_ok(), "a longer transaction timeout allows it");
        let two = format!(r#"{{"a": {eos}, "b": {eos}}}"#);
        assert_eq!(paths(errors(&with(&two, checkpoints))), ["$.sinks.b.delivery"]);
        let stray = kafka(r#", "transactional_id": "j""#);
        assert_eq!(paths(errors(&with(&format!(r#"{{"k": {stray}}}"#), checkpoints))), ["$.sinks.k.transactional_id"]);
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = errors("{\n  \"sources\": {,\n}");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (2, 15));
        assert!(e[0].message.starts_with("invalid JSON"), "{}", e[0].message);
    }

    #[test]
    fn reports_every_shape_error_with_its_path() {
        let text = r#"{
  "sources": {
    "in": {"type": "file", "path": "a", "pth": "in.jsonl"},
    "gen": {"type": "teleport"}
  },
  "sinks": {"out": {"type": "stdout", "inputs": "a"}}
}"#;
        let e = errors(text);
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        // Inside a tagged entry serde loses the field of a type error: the
        // entry is reported, with the field named in the message.
        assert_eq!(paths, ["$.sources.gen.type", "$.sources.in.pth", "$.sinks.out"], "{e:#?}");
        assert_eq!((e[1].line, e[1].column), (3, 48));
        assert!(e[0].message.contains("teleport"), "{}", e[0].message);
        assert!(e[2].message.contains("expected a sequence"), "{}", e[2].message);
    }

    #[test]
    fn reports_dangling_inputs_unknown_plugins_and_cycles() {
        let text = r#"{
  "sources": {"in": {"type": "stdin"}},
  "steps": {
    "a": {"type": "native", "name": "x", "inputs": ["in", "b"]},
    "b": {"type": "native", "name": "x", "inputs": ["a"]},
    "c": {"type": "transform", "plugin": "nope", "inputs": ["ghost"]}
  },
  "sinks": {"out": {"type": "null", "inputs": ["c"]}}
}"#;
        let e = errors(text);
        let msgs: Vec<String> = e.iter().map(|e| format!("{} {}", e.path, e.message)).collect();
        assert!(msgs.iter().any(|m| m.starts_with("$.steps.c.inputs[0] unknown input `ghost`")), "{msgs:#?}");
        assert!(msgs.iter().any(|m| m.starts_with("$.steps.c.plugin unknown plugin `nope`")), "{msgs:#?}");
        assert!(msgs.iter().any(|m| m.contains("cycle: a -> b -> a")), "{msgs:#?}");
        let cyc = e.iter().find(|e| e.message.starts_with("cycle")).unwrap();
        assert_eq!(cyc.line, 4);
    }

    #[test]
    fn a_plugin_joiner_must_name_a_known_joiner_plugin() {
        let text = r#"{
  "plugins": {"t": {"path": "t.wasm", "world": "transform"}, "j": {"path": "j.wasm", "world": "joiner"}},
  "sources": {"a": {"type": "stdin"}, "b": {"type": "stdin"}},
  "steps": {
    "ghost": {"type": "window-join", "inputs": ["a", "b"], "window": {"start_ms": 0, "end_ms": 1},
              "joiner": {"type": "plugin", "plugin": "nope"}},
    "wrong": {"type": "window-join", "inputs": ["a", "b"], "window": {"start_ms": 0, "end_ms": 1},
              "joiner": {"type": "plugin", "plugin": "t"}},
    "right": {"type": "window-join", "inputs": ["a", "b"], "window": {"start_ms": 0, "end_ms": 1},
              "joiner": {"type": "plugin", "plugin": "j"}},
    "misuse": {"type": "transform", "plugin": "j", "inputs": ["a"]}
  },
  "sinks": {"out": {"type": "null", "inputs": ["ghost", "wrong", "right", "misuse"]}}
}"#;
        let msgs: Vec<String> = errors(text).iter().map(|e| format!("{} {}", e.path, e.message)).collect();
        assert!(msgs.iter().any(|m| m.starts_with("$.steps.ghost.joiner.plugin unknown plugin `nope`")), "{msgs:#?}");
        assert!(msgs.iter().any(|m| m.starts_with("$.steps.wrong.joiner.plugin plugin `t` is declared as world `transform` but this step needs `joiner`")), "{msgs:#?}");
        assert!(msgs.iter().any(|m| m.starts_with("$.steps.misuse.plugin plugin `j` is declared as world `joiner` but this step needs `transform`")), "{msgs:#?}");
        assert!(!msgs.iter().any(|m| m.contains("steps.right")), "{msgs:#?}");
        assert_eq!(msgs.len(), 3, "{msgs:#?}");
    }

    #[test]
    fn redis_state_refuses_what_it_cannot_recover_exactly() {
        let with = |sinks: &str, settings: &str| {
            format!(r#"{{"sources": {{"in": {{"type": "stdin"}}}}, "sinks": {sinks}, "settings": {settings}}}"#)
        };
        let paths = |e: Vec<ConfigError>| e.into_iter().map(|e| e.path).collect::<Vec<_>>();
        let stdout = r#"{"o": {"type": "stdout", "inputs": ["in"]}}"#;
        let c = parse_pipeline(&with(stdout, r#"{"state": {"backend": "redis"}}"#)).unwrap();
        assert_eq!(c.settings.state.redis, None, "the defaults apply");
        let full = r#"{"state": {"backend": "redis", "redis": {"url": "redis://10.0.0.5:6380/2", "prefix": "job", "ttl_slack_ms": null, "max_overlay_mb": 64}}}"#;
        let c = parse_pipeline(&with(stdout, full)).unwrap();
        assert_eq!(c.settings.state.redis.as_ref().map(|r| (r.ttl_slack_ms, r.max_overlay_mb)), Some((None, 64)));
        assert_eq!(paths(errors(&with(stdout, r#"{"state": {"redis": {}}}"#))), ["$.settings.state.redis"], "redis settings without the backend");
        assert_eq!(paths(errors(&with(stdout, r#"{"state": {"backend": "redis", "redis": {"url": "http://x"}}}"#))), ["$.settings.state.redis.url"]);
        assert_eq!(paths(errors(&with(stdout, r#"{"state": {"backend": "redis", "redis": {"prefix": ""}}}"#))), ["$.settings.state.redis.prefix"]);
        let short = r#"{"state": {"backend": "redis", "redis": {"ttl_slack_ms": 100000}}, "checkpoint": {"interval_ms": 60000}}"#;
        assert_eq!(paths(errors(&with(stdout, short))), ["$.settings.state.redis.ttl_slack_ms"], "keys would expire between checkpoints");
        let e = paths(errors(&with(stdout, r#"{"state": {"backend": "redis", "redis": {"ttl": 5}}}"#)));
        assert!(e.len() == 1 && e[0].starts_with("$.settings.state.redis.ttl"), "unknown fields: {e:?}");
        let eos = r#"{"k": {"type": "kafka", "inputs": ["in"], "brokers": "b:9092", "topic": "t", "delivery": "exactly-once", "transactional_id": "j"}}"#;
        let e = errors(&with(eos, r#"{"state": {"backend": "redis"}, "checkpoint": {"interval_ms": 1000}}"#));
        assert_eq!(paths(e.clone()), ["$.sinks.k.delivery"]);
        assert!(e[0].message.contains("not supported with the redis state backend"), "{}", e[0].message);
        // A group shares its state through redis; an exactly-once sink is refused there too.
        let group = r#"{"sources": {"in": {"type": "kafka", "brokers": "b:9092", "topics": ["t"], "group_id": "g"}}, "sinks": {"o": {"type": "null", "inputs": ["in"]}},
            "settings": {"state": {"backend": "redis"}, "checkpoint": {"interval_ms": 1000}, "scale_out": {}}}"#;
        assert!(parse_pipeline(group).is_ok(), "{:?}", parse_pipeline(group).err());
        let with_eos = group.replace(r#"{"o": {"type": "null", "inputs": ["in"]}}"#, eos);
        let e = errors(&with_eos);
        assert_eq!(paths(e.clone()), ["$.sinks.k.delivery"], "{e:?}");
        let unchecked = group.replace(r#", "checkpoint": {"interval_ms": 1000}"#, "");
        let e = errors(&unchecked);
        assert_eq!(paths(e.clone()), ["$.settings.scale_out"], "{e:?}");
        assert!(e[0].message.contains("through redis"), "{}", e[0].message);
    }

    #[test]
    fn a_join_bucket_must_fit_its_window() {
        let with = |bucket: &str| {
            format!(
                r#"{{
  "sources": {{"a": {{"type": "stdin"}}, "b": {{"type": "stdin"}}}},
  "steps": {{"j": {{"type": "window-join", "inputs": ["a", "b"], "window": {{"start_ms": 0, "end_ms": 3600000}},
                  "bucket_ms": {bucket}}}}},
  "sinks": {{"out": {{"type": "null", "inputs": ["j"]}}}}
}}"#
            )
        };
        for ok in ["56250", "3600000", "230400000"] {
            assert!(parse_pipeline(&with(ok)).is_ok(), "bucket_ms {ok}");
        }
        for (bad, says) in [("0", "at least 1"), ("1000", "3600 buckets"), ("56249", "at least 56250"), ("230400001", "at most 230400000")] {
            let e = errors(&with(bad));
            assert_eq!(e.len(), 1, "{e:#?}");
            assert_eq!((e[0].path.as_str(), e[0].line), ("$.steps.j.bucket_ms", 4), "{e:#?}");
            assert!(e[0].message.contains(says), "bucket_ms {bad}: {}", e[0].message);
        }
    }

    #[test]
    fn shape_and_graph_errors_are_reported_together() {
        let text = r#"{
  "sources": {"in": {"type": "file", "path": "x", "scheme": {}}},
  "steps": {"s": {"type": "transform", "plugin": "ghost", "inputs": ["in", "nowhere"]}},
  "sinks": {"out": {"type": "stdout", "inputs": ["s"]}},
  "settings": {"batch_size": 0}
}"#;
        let paths: Vec<String> = errors(text).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            ["$.sources.in.scheme", "$.settings.batch_size", "$.steps.s.inputs[1]", "$.steps.s.plugin"],
        );
    }

    #[test]
    fn unknown_top_level_key_and_missing_sections() {
        let e = errors(r#"{"source": {}}"#);
        let msgs: Vec<String> = e.iter().map(|e| format!("{} {}", e.path, e.message)).collect();
        assert!(msgs.iter().any(|m| m.contains("missing field `sources`")), "{msgs:#?}");
    }

    #[test]
    fn non_object_pipeline_is_refused() {
        assert_eq!(errors("[1,2]")[0].message, "a pipeline must be a JSON object");
    }
}
