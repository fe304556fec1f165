//! Scale-out over a Kafka consumer group (`settings.scale_out`): several
//! processes run one pipeline and share its partitions as the group assigns
//! them. Each assignment is a *generation*: the pipeline is built for the
//! partitions given, restoring each one's state and offsets from the
//! checkpoint the shared index names for it (`checkpoint.rs`,
//! [`SharedIndex`]); when the group takes partitions back, the generation is
//! stopped as a SIGTERM stops a run (drain, final checkpoint that names
//! itself for its partitions, offsets committed) before the member lets them
//! go. The key group of an event is its input partition, so the state of a
//! partition is exactly that of one key group.
//!
//! Architecture Invariant: a partition's state and offsets are written by
//! one process at a time, the group's owner of it; a new owner reads them
//! only after the old one's final checkpoint (eager rebalance: every member
//! revokes before any is assigned) or, if the old one died, from its last.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::build::{build_pipeline, BuildOptions, Restore, RestorePart};
use super::checkpoint::{partition_of, Checkpoints, Found, Schedule, SharedIndex};
use super::stats::RunSummary;
use super::{CheckpointMeta, ResumePoint, RunError, SourceMark, StopHandle};
use crate::config::{LoadedPipeline, SourceConfig};
use crate::source::{Assignment, GroupMember, SourceError};
use crate::state::RemoteState;

/// This process's share of the group, for a build.
#[derive(Clone)]
pub struct GroupPlan {
    pub instance: String,
    /// The topics' partition count: the key groups.
    pub key_groups: usize,
    /// The partitions (key groups) this process owns.
    pub owned: Vec<u16>,
    pub member: Arc<GroupMember>,
}

/// Whether `name` can name an instance's folders.
pub fn valid_instance(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && name != "." && name != ".."
}

/// `path` with `-<instance>` before its extension (each process of a group
/// writes its own file).
pub(crate) fn instance_path(path: &Path, instance: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{instance}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{instance}"),
    };
    path.with_file_name(name)
}

/// What to do when a group's state in Redis cannot be resumed from.
const START_OVER: &str = "to start over, delete the prefix's keys in redis and the instances' checkpoint folders while no process of the group runs";

impl GroupPlan {
    /// This process's checkpoint schedule, and what it restores: for each
    /// partition owned, the checkpoint the shared index names for it.
    pub(crate) fn checkpoints(&self, p: &LoadedPipeline) -> Result<(Option<Schedule>, Option<Restore>), RunError> {
        let (root, cs) = checkpoint_root(p)?;
        let err = |e: String| RunError::State(format!("checkpoints: {e}"));
        let index = SharedIndex { root, instance: self.instance.clone(), groups: self.owned.clone() };
        let mut by_checkpoint: BTreeMap<PathBuf, Vec<u16>> = BTreeMap::new();
        for &kg in &self.owned {
            if let Some(dir) = index.named(kg).map_err(err)? {
                by_checkpoint.entry(dir).or_default().push(kg);
            }
        }
        let store = Checkpoints::shared(index, cs.keep);
        let latest = store.latest().map_err(err)?;
        let own = match super::build::commit_record(p, Some(&self.instance), latest.as_ref())? {
            Some(record) => store.resumable(record.as_ref()).map_err(err)?,
            None => latest,
        };
        store.remove_incomplete().map_err(err)?;
        let next_id = own.as_ref().map_or(1, |f| f.meta.id + 1);
        let schedule = Schedule::new(store, Duration::from_millis(cs.interval_ms), next_id);
        let mut parts = Vec::new();
        for (dir, groups) in by_checkpoint {
            let dir = committed_after(p, dir, &groups)?;
            let found = Checkpoints::read(&dir)
                .map_err(err)?
                .ok_or_else(|| err(format!("{} is named for partitions {groups:?} in the shared index but is not a complete checkpoint", dir.display())))?;
            parts.push(RestorePart { found, groups: Some(groups) });
        }
        Ok((Some(schedule), restore(own, parts)))
    }

    /// The same with the state in Redis, which alone carries it (no shared
    /// folder): this process's checkpoints are its instance's record there
    /// (its local folders, under `instances/NAME/`, only follow it), and each
    /// partition owned goes on from the generation and checkpoint its index
    /// entry names (`state/redis/group.rs`), read after this build claimed it.
    pub(crate) fn redis_checkpoints(&self, p: &LoadedPipeline, remote: &mut RemoteState) -> Result<(Option<Schedule>, Option<Restore>), RunError> {
        let (root, cs) = checkpoint_root(p)?;
        let store = Checkpoints::new(SharedIndex::instance_dir(&root, &self.instance), cs.keep);
        let (own, local) = super::build::redis_record(&store, remote, START_OVER)?;
        // The partitions whose entries name one generation are taken from it together.
        let mut by_generation: BTreeMap<String, (CheckpointMeta, Vec<u16>)> = BTreeMap::new();
        for (kg, entry) in remote.partition_entries()? {
            let mut meta: CheckpointMeta = serde_json::from_slice(&entry.record)
                .map_err(|e| RunError::State(format!("the index entry of partition {kg} in redis (prefix `{}`) is not a checkpoint record: {e}; {START_OVER}", remote.prefix())))?;
            if entry.state_at != Some(meta.id) {
                let at = entry.state_at.map_or_else(|| "gone".to_string(), |id| format!("at checkpoint {id}"));
                return Err(RunError::State(format!(
                    "partition {kg}: its index entry in redis names checkpoint {} of generation {}, whose state is {at} (its keys expired or were deleted, or a checkpoint was applied in part); {START_OVER}",
                    meta.id, entry.generation
                )));
            }
            meta.redis_generation = Some(entry.generation.clone());
            match by_generation.entry(entry.generation) {
                std::collections::btree_map::Entry::Vacant(v) => drop(v.insert((meta, vec![kg]))),
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    // One transaction wrote them: the same checkpoint, other partitions.
                    let (merged, groups) = o.get_mut();
                    for (name, mark) in meta.sources {
                        match merged.sources.get_mut(&name) {
                            Some(m) => m.resume.partitions.extend(mark.resume.partitions),
                            None => drop(merged.sources.insert(name, mark)),
                        }
                    }
                    groups.push(kg);
                }
            }
        }
        let parts: Vec<RestorePart> = by_generation
            .into_iter()
            .map(|(generation, (meta, groups))| {
                let dir = PathBuf::from(format!("redis {}:{generation} (checkpoint {})", remote.prefix(), meta.id));
                RestorePart { found: Found { dir, meta }, groups: Some(groups) }
            })
            .collect();
        let next_id = own.iter().chain(&local).map(|f| f.meta.id).max().unwrap_or(0) + 1;
        let schedule = Schedule::new(store, Duration::from_millis(cs.interval_ms), next_id).with_early(remote.checkpoint_wanted());
        Ok((Some(schedule), restore(own, parts)))
    }
}

/// The checkpoint directory of a group, and its settings.
fn checkpoint_root(p: &LoadedPipeline) -> Result<(PathBuf, &crate::config::CheckpointSettings), RunError> {
    let cs = p.config.settings.checkpoint.as_ref().ok_or_else(|| RunError::State("settings.scale_out needs settings.checkpoint".into()))?;
    Ok((cs.dir.as_ref().map_or_else(|| p.base_dir.join("checkpoints"), |d| p.resolve(d)), cs))
}

/// What a build restores: each part's partitions at their positions, and this
/// process's own outputs (dead letters) from its own last checkpoint (`own`).
fn restore(own: Option<Found>, parts: Vec<RestorePart>) -> Option<Restore> {
    let mut meta = own.map(|f| CheckpointMeta { sources: Default::default(), ..f.meta }).unwrap_or_default();
    meta.sources = merged_sources(&parts);
    (meta.id > 0 || !parts.is_empty()).then_some(Restore { meta, parts })
}

/// The checkpoint of `groups` as their last owner left it: the one the
/// shared index names (`dir`), or, with a transactional sink, a newer one of
/// the same owner that its commit record names and that covers them (the
/// owner died after its transaction committed, before it named that
/// checkpoint).
fn committed_after(p: &LoadedPipeline, dir: PathBuf, groups: &[u16]) -> Result<PathBuf, RunError> {
    let Some(owner) = dir.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()) else { return Ok(dir) };
    let Some((name, k, id)) = super::build::transactional_sink(p, Some(owner)) else { return Ok(dir) };
    let Some(named) = Checkpoints::read(&dir).map_err(RunError::State)? else { return Ok(dir) };
    let Some(lineage) = named.meta.lineage.as_deref() else { return Ok(dir) };
    let record = crate::sink::read_commit_record(k, &id, lineage)
        .map_err(|error| crate::sink::SinkError::Kafka { sink: name.into(), topic: k.topic.clone(), error })?;
    let Some(record) = record else { return Ok(dir) };
    if record.id <= named.meta.id {
        return Ok(dir);
    }
    let newer = dir.with_file_name(format!("chk-{}", record.id));
    let Some(found) = Checkpoints::read(&newer).map_err(RunError::State)? else { return Ok(dir) };
    let covered: std::collections::BTreeSet<u16> = found
        .meta
        .sources
        .values()
        .flat_map(|m| m.resume.partitions.keys())
        .filter_map(|key| partition_of(key))
        .collect();
    if found.meta.lineage.as_ref() == Some(&record.lineage) && groups.iter().all(|g| covered.contains(g)) {
        tracing::info!(named = %dir.display(), committed = %newer.display(), "the partitions' last owner committed a newer checkpoint than it named");
        return Ok(newer);
    }
    Ok(dir)
}

/// Where each source goes on: each partition at the offset of the
/// checkpoint named for it; the watermark the lowest of them (a partition's
/// late events stay accepted rather than lost).
fn merged_sources(parts: &[RestorePart]) -> BTreeMap<String, SourceMark> {
    let mut sources: BTreeMap<String, SourceMark> = BTreeMap::new();
    for part in parts {
        let groups = part.groups.as_deref().unwrap_or_default();
        for (name, mark) in &part.found.meta.sources {
            let merged = sources
                .entry(name.clone())
                .or_insert_with(|| SourceMark { resume: ResumePoint::default(), watermark: i64::MAX, ended: false });
            merged.watermark = merged.watermark.min(mark.watermark);
            for (key, next) in &mark.resume.partitions {
                if partition_of(key).is_some_and(|p| groups.contains(&p)) {
                    merged.resume.partitions.insert(key.clone(), *next);
                }
            }
        }
    }
    sources
}

/// The running generation: the pipeline's thread and how to stop it.
struct Generation {
    stop: StopHandle,
    thread: std::thread::JoinHandle<Result<RunSummary, RunError>>,
}

/// What the generations left: the last summary, the first error.
#[derive(Default)]
struct Outcome {
    last: Option<RunSummary>,
    error: Option<RunError>,
    generations: u64,
}

/// Stops a generation, if one runs, and waits for its final checkpoint.
fn stop_generation(running: &Mutex<Option<Generation>>, outcome: &Mutex<Outcome>) {
    let Some(g) = running.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    let started = std::time::Instant::now();
    g.stop.stop();
    let result = g.thread.join().unwrap_or_else(|_| Err(RunError::Thread("the pipeline thread panicked".into())));
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "the pipeline stopped (final checkpoint taken)");
    let mut o = outcome.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(summary) => {
            eprint!("{summary}");
            o.last = Some(summary);
        }
        // Fenced: a newer build claimed its partitions (it was slow to stop,
        // or was given them from a stale assignment); the group assigns again.
        Err(RunError::TakenOver(e)) => tracing::warn!(error = %e, "the pipeline stopped: its partitions were taken over; waiting for the group's next assignment"),
        Err(e) => {
            o.error.get_or_insert(e);
        }
    }
}

/// Runs `p` as one process of its sources' consumer group until `stop` is
/// asked for or a generation fails; returns the last generation's summary
/// (none if the group never gave this process a partition).
pub fn run_in_group(p: &LoadedPipeline, opts: BuildOptions, instance: &str, stop: StopHandle) -> Result<Option<RunSummary>, RunError> {
    let kafka: Vec<(&String, &crate::source::KafkaSourceConfig)> = p
        .config
        .sources
        .iter()
        .filter_map(|(n, s)| match s {
            SourceConfig::Kafka(k) => Some((n, k)),
            _ => None,
        })
        .collect();
    let Some(&(first, first_config)) = kafka.first() else { return Err(RunError::Step("settings.scale_out needs kafka sources".into())) };
    let topics: Vec<String> = kafka.iter().flat_map(|(_, k)| k.topics.iter().cloned()).collect();
    let running: Arc<Mutex<Option<Generation>>> = Arc::default();
    let outcome: Arc<Mutex<Outcome>> = Arc::default();
    let (r, o) = (running.clone(), outcome.clone());
    let member = Arc::new(GroupMember::join(first, first_config, topics.clone(), Box::new(move || stop_generation(&r, &o)))?);
    let key_groups = check_partition_counts(first, &member)?;
    tracing::info!(instance, group = %first_config.group_id, partitions = key_groups, "joined the consumer group");
    while !stop.is_requested() && outcome.lock().unwrap_or_else(|e| e.into_inner()).error.is_none() {
        member.poll(Duration::from_millis(100));
        if let Some(assignment) = member.take_assignment() {
            stop_generation(&running, &outcome);
            let owned = co_partitioned(first, &assignment, &topics)?;
            if owned.is_empty() {
                tracing::info!(instance, "no partitions for this process now; waiting");
                continue;
            }
            if check_partition_counts(first, &member)? != key_groups {
                return Err(SourceError::Kafka { source_name: first.clone(), error: "the topics' partition count changed while running: a scaled-out job keeps its partition count".into() }.into());
            }
            let plan = GroupPlan { instance: instance.into(), key_groups, owned: owned.clone(), member: member.clone() };
            let mut mine = p.clone();
            for s in mine.config.sources.values_mut() {
                if let SourceConfig::Kafka(k) = s {
                    k.assigned = Some(owned.iter().map(|&kg| i32::from(kg)).collect());
                }
            }
            let built = match build_pipeline(&mine, BuildOptions { group: Some(plan), ..opts.clone() }) {
                Err(RunError::TakenOver(e)) => {
                    tracing::warn!(error = %e, "a newer build holds these partitions: waiting for the group's next assignment");
                    continue;
                }
                built => built?,
            };
            let handle = built.stop_handle();
            let thread = std::thread::Builder::new().name("generation".into()).spawn(move || built.run()).map_err(|e| RunError::Thread(e.to_string()))?;
            let mut o = outcome.lock().unwrap_or_else(|e| e.into_inner());
            o.generations += 1;
            tracing::info!(instance, generation = o.generations, partitions = ?owned, "running the pipeline for these partitions");
            *running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Generation { stop: handle, thread });
        }
        // A generation that ended on its own failed (its sources never end).
        let ended = running.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|g| g.thread.is_finished());
        if ended {
            stop_generation(&running, &outcome);
            let mut o = outcome.lock().unwrap_or_else(|e| e.into_inner());
            if o.error.is_none() && o.last.as_ref().is_some_and(|s| !s.errors.is_empty()) {
                o.error = Some(RunError::Step("the pipeline failed (see its summary)".into()));
            }
        }
    }
    stop_generation(&running, &outcome);
    member.leave();
    let mut o = outcome.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = o.error.take() {
        return Err(e);
    }
    Ok(o.last.take())
}

/// Every topic has the same partition count (the inputs of a join are
/// partitioned by its key alike); that count.
fn check_partition_counts(source: &str, member: &GroupMember) -> Result<usize, RunError> {
    let counts = member.partition_counts()?;
    let distinct: std::collections::BTreeSet<usize> = counts.values().copied().collect();
    let fail = |why: String| -> RunError { SourceError::Kafka { source_name: source.into(), error: why }.into() };
    match distinct.into_iter().collect::<Vec<_>>()[..] {
        [n] if n > 0 && n <= super::MAX_KEY_GROUPS => Ok(n),
        [0] => Err(fail(format!("the topics have no partitions (do they exist?): {}", counts.keys().cloned().collect::<Vec<_>>().join(", ")))),
        _ => {
            let list: Vec<String> = counts.iter().map(|(t, n)| format!("`{t}` has {n}")).collect();
            Err(fail(format!(
                "settings.scale_out needs every topic partitioned alike (by the join key, with the same partition count): {}",
                list.join(", ")
            )))
        }
    }
}

/// The partition numbers assigned, which must be the same for every topic.
fn co_partitioned(source: &str, assignment: &Assignment, topics: &[String]) -> Result<Vec<u16>, RunError> {
    let of = |t: &String| {
        let mut ps: Vec<u16> = assignment.get(t).map(|ps| ps.iter().map(|&p| p as u16).collect()).unwrap_or_default();
        ps.sort_unstable();
        ps
    };
    let first = topics.first().map(of).unwrap_or_default();
    if let Some(other) = topics.iter().find(|t| of(t) != first) {
        return Err(SourceError::Kafka {
            source_name: source.into(),
            error: format!(
                "the group assigned partitions {first:?} of `{}` but {:?} of `{other}`: every member must use partition.assignment.strategy=range",
                topics[0],
                of(other)
            ),
        }
        .into());
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_writes_its_own_file() {
        assert_eq!(instance_path(Path::new("/x/dead-letter.jsonl"), "a"), Path::new("/x/dead-letter-a.jsonl"));
        assert_eq!(instance_path(Path::new("out"), "b-2"), Path::new("out-b-2"));
        assert!(valid_instance("host-1.a_b") && !valid_instance("") && !valid_instance("a/b") && !valid_instance(".."));
    }

    #[test]
    fn each_partition_goes_on_from_the_checkpoint_named_for_it() {
        let found = |id: u64, watermark: i64, offsets: &[(&str, i64)]| {
            let mut meta = CheckpointMeta { id, ..Default::default() };
            let partitions = offsets.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            meta.sources.insert("imp".into(), SourceMark { resume: ResumePoint { partitions, ..Default::default() }, watermark, ended: false });
            super::super::checkpoint::Found { dir: PathBuf::from(format!("chk-{id}")), meta }
        };
        let parts = vec![
            RestorePart { found: found(3, 500, &[("feed/0", 10), ("feed/1", 11)]), groups: Some(vec![0]) },
            RestorePart { found: found(9, 200, &[("feed/1", 40), ("feed/2", 42)]), groups: Some(vec![1]) },
        ];
        let merged = merged_sources(&parts);
        let imp = &merged["imp"];
        assert_eq!(imp.resume.partitions, [("feed/0".to_string(), 10), ("feed/1".to_string(), 40)].into_iter().collect());
        assert_eq!(imp.watermark, 200, "the lowest watermark of the checkpoints");
    }
}
