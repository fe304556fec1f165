//! Synthetic events for tests and benchmarks: deterministic for a seed, at a
//! fixed rate or as fast as possible, with a share of dirty records.

use std::io::Write;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{admit, Emitter, Source, SourceError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{GeneratorShape, SourceCommon};
use crate::record_schema::RecordCheck;

/// `"type": "generator"`: synthetic events for tests and load, deterministic for a seed.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSourceConfig {
    /// Shape of the generated events.
    #[serde(default)]
    pub shape: GeneratorShape,
    /// Seed of the pseudo-random generator.
    #[serde(default)]
    pub seed: u64,
    /// Events per second; 0 means as fast as possible.
    #[serde(default)]
    pub rate: u64,
    /// Stop after this many events (default: never).
    #[serde(default)]
    pub count: Option<u64>,
    /// Fraction (0..1) of generated records that are dirty: fields the
    /// cleaner must normalise or reject (`impression` and `click` only).
    #[serde(default)]
    pub dirty_ratio: f64,
    /// Synthetic event time: event `i` is at `start_ms + i × step_ms`
    /// (the `ts` field, and the event time unless `timestamp_field` says
    /// otherwise). Default: 1 ms apart from 2023-11-14T22:13:20Z.
    #[serde(default)]
    pub event_time: Option<GeneratorEventTime>,
    /// `join-click` only: the `join-impression` stream the clicks refer
    /// to (its event-time grid and count). Default: the grid of
    /// `event_time` with a step 7.5 times smaller (20 clicks per 150
    /// impressions), no count limit.
    #[serde(default)]
    pub impressions: Option<JoinImpressions>,
    #[serde(flatten)]
    pub common: SourceCommon,
}

/// The synthetic event time of a generator: event `i` is at
/// `start_ms + floor(i × step_ms)`, so a run of a few million events can
/// cover hours of event time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorEventTime {
    /// Time of event 0, in ms since the Unix epoch (default
    /// 1700000000000, 2023-11-14T22:13:20Z).
    #[serde(default = "base_time_ms")]
    pub start_ms: i64,
    /// Event-time distance between two consecutive events, in ms (may be
    /// fractional; greater than 0).
    pub step_ms: f64,
}

fn base_time_ms() -> i64 {
    super::BASE_TIME_MS
}

/// For `join-click`: the `join-impression` stream whose `request_id`s the
/// clicks carry. Click `i` at time `tc` refers to impression `j`, picked
/// from the seed and `i` among the impressions at times
/// `tc - max_delay_ms ..= tc` (computed from indices alone: the two
/// generators share nothing).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinImpressions {
    /// Time of impression 0, in ms (default 1700000000000).
    #[serde(default = "base_time_ms")]
    pub start_ms: i64,
    /// Event-time step of the impressions, in ms (greater than 0).
    pub step_ms: f64,
    /// Number of impressions generated (clicks never refer past it).
    #[serde(default)]
    pub count: Option<u64>,
    /// How long after its impression a click may come, in ms (default
    /// 1800000, 30 minutes).
    #[serde(default = "thirty_minutes")]
    pub max_delay_ms: u64,
}

fn thirty_minutes() -> u64 {
    1_800_000
}


/// Event time of the first generated event (2023-11-14T22:13:20Z); events
/// are 1 ms apart (unless `event_time` says otherwise) so runs are
/// reproducible.
pub const BASE_TIME_MS: i64 = 1_700_000_000_000;

/// Clicks per impression of `join-click` when its impressions' grid is not
/// given: 20 per 150.
pub const CLICKS_PER_IMPRESSION: f64 = 20.0 / 150.0;

#[derive(Clone, Debug)]
pub struct GeneratorParams {
    pub shape: GeneratorShape,
    pub seed: u64,
    /// Events per second; 0 = unthrottled.
    pub rate: u64,
    pub count: Option<u64>,
    pub dirty_ratio: f64,
    /// Synthetic event time (default: `BASE_TIME_MS + i`).
    pub event_time: Option<GeneratorEventTime>,
    /// `join-click`: the impressions the clicks refer to.
    pub impressions: Option<JoinImpressions>,
}

/// Event time of event `i` on the grid `start_ms + floor(i × step_ms)`
/// (`None`: `BASE_TIME_MS + i`).
pub fn event_time_at(grid: Option<&GeneratorEventTime>, i: u64) -> i64 {
    match grid {
        None => BASE_TIME_MS.saturating_add(i as i64),
        Some(g) => grid_time(g.start_ms, g.step_ms, i),
    }
}

fn grid_time(start: i64, step: f64, i: u64) -> i64 {
    start.saturating_add((i as f64 * step).floor() as i64)
}

/// Which impression each `join-click` refers to: a pure function of the
/// seed and the click's index and time, so the click generator needs no
/// state shared with the impression generator, and a test or bench can
/// compute the expected join.
#[derive(Clone, Copy, Debug)]
pub struct ClickTargets {
    start: i64,
    step: f64,
    count: Option<u64>,
    max_delay: i64,
}

impl ClickTargets {
    /// The targets of a `join-click` generator with these settings.
    pub fn new(event_time: Option<&GeneratorEventTime>, impressions: Option<&JoinImpressions>) -> Self {
        match impressions {
            Some(j) => ClickTargets {
                start: j.start_ms,
                step: j.step_ms,
                count: j.count,
                max_delay: j.max_delay_ms.min(i64::MAX as u64) as i64,
            },
            None => {
                let (start, step) = event_time.map_or((BASE_TIME_MS, 1.0), |g| (g.start_ms, g.step_ms));
                ClickTargets { start, step: step * 20.0 / 150.0, count: None, max_delay: 1_800_000 }
            }
        }
    }

    /// The index of the impression click `i` (at time `tc`) refers to: one
    /// at a time in `tc - max_delay ..= tc`, picked from `seed` and `i`;
    /// `None` if there is no impression in that range.
    pub fn target(&self, seed: u64, i: u64, tc: i64) -> Option<u64> {
        if !(self.step.is_finite() && self.step > 0.0) || tc < self.start {
            return None;
        }
        let at = |j: u64| grid_time(self.start, self.step, j);
        // Largest j with at(j) <= tc, smallest with at(j) >= tc - max_delay
        // (estimated in floating point, then corrected on the exact grid).
        let estimate = |t: i64| (((t.saturating_sub(self.start)) as f64 / self.step).floor().max(0.0)) as u64;
        let mut hi = estimate(tc);
        while hi > 0 && at(hi) > tc {
            hi -= 1;
        }
        while at(hi + 1) <= tc {
            hi += 1;
        }
        let from = tc.saturating_sub(self.max_delay);
        let mut lo = estimate(from);
        while lo > 0 && at(lo - 1) >= from {
            lo -= 1;
        }
        while at(lo) < from {
            lo += 1;
        }
        if let Some(n) = self.count {
            hi = hi.min(n.checked_sub(1)?);
        }
        if lo > hi {
            return None;
        }
        Some(lo + mix(seed ^ mix(i.wrapping_add(0x9E37_79B9_7F4A_7C15))) % (hi - lo + 1))
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub struct Generator {
    params: GeneratorParams,
    check: RecordCheck,
    max_bytes: usize,
    /// Records already handed over before a checkpoint (regenerated and
    /// skipped, so the sequence is the same as without the interruption).
    resume: u64,
}

impl Generator {
    pub fn new(_name: &str, params: GeneratorParams, common: &SourceCommon) -> Self {
        Generator { params, check: RecordCheck::new(common), max_bytes: common.max_record_bytes(), resume: 0 }
    }

    /// Starts after the first `records` records (a checkpoint's position).
    pub fn resuming(mut self, records: u64) -> Self {
        self.resume = records;
        self
    }
}

impl Source for Generator {
    fn run(self: Box<Self>, out: &mut Emitter) -> Result<(), SourceError> {
        let mut rng = Pcg64Mcg::seed_from_u64(self.params.seed);
        let targets = ClickTargets::new(self.params.event_time.as_ref(), self.params.impressions.as_ref());
        let start = Instant::now();
        let mut seq = 0u64;
        while self.params.count.is_none_or(|c| seq < c) && !out.closed {
            if self.params.rate > 0 && seq >= self.resume {
                let due = self.resume + (start.elapsed().as_secs_f64() * self.params.rate as f64) as u64;
                if seq >= due {
                    out.maybe_flush();
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
            }
            let ts = event_time_at(self.params.event_time.as_ref(), seq);
            let mut raw = Vec::with_capacity(384);
            match self.params.shape {
                GeneratorShape::Impression | GeneratorShape::Click => {
                    write_record_at(&mut raw, self.params.shape, &mut rng, seq, ts, self.params.dirty_ratio)
                }
                GeneratorShape::JoinImpression | GeneratorShape::JoinClick => {
                    write_join_record(&mut raw, self.params.shape, &mut rng, self.params.seed, seq, ts, &targets)
                }
            }
            seq += 1;
            // The random stream must advance exactly as in the first run,
            // so skipped records are generated, then dropped.
            if seq <= self.resume {
                continue;
            }
            out.consumed(crate::runtime::ResumePoint { offset: seq, line: seq, ..Default::default() });
            admit(out, &self.check, self.max_bytes, raw, seq, ts);
        }
        Ok(())
    }
}

const DEVICES: [&str; 4] = ["android", "ios", "web", "harmony"];
const PAGES: [&str; 4] = ["feed", "search", "detail", "profile"];
const NETS: [&str; 3] = ["wifi", "4g", "5g"];
const LANGS: [&str; 4] = ["en-US", "zh-CN", "es-ES", "pt-BR"];

/// Appends one generated record (no newline) to `buf`, at the default event
/// time `BASE_TIME_MS + seq` (join shapes: with the default click targets
/// and seed 0).
pub fn write_record(buf: &mut Vec<u8>, shape: GeneratorShape, rng: &mut Pcg64Mcg, seq: u64, dirty_ratio: f64) {
    let ts = BASE_TIME_MS + seq as i64;
    match shape {
        GeneratorShape::Impression | GeneratorShape::Click => write_record_at(buf, shape, rng, seq, ts, dirty_ratio),
        GeneratorShape::JoinImpression | GeneratorShape::JoinClick => {
            write_join_record(buf, shape, rng, 0, seq, ts, &ClickTargets::new(None, None))
        }
    }
}

/// Appends one `impression` or `click` record at event time `ts`.
fn write_record_at(buf: &mut Vec<u8>, shape: GeneratorShape, rng: &mut Pcg64Mcg, seq: u64, ts: i64, dirty_ratio: f64) {
    // Appended piece by piece, numbers by `itoa`: the formatting machinery
    // of `write!` was a third of a generator thread that feeds a cheap step.
    let user = rng.random_range(0..1_000_000u32);
    let item = rng.random_range(0..100_000u32);
    let dev = DEVICES[rng.random_range(0..DEVICES.len())];
    let dirty = dirty_ratio > 0.0 && rng.random_bool(dirty_ratio);
    let flaw = if dirty { rng.random_range(0..5u8) } else { u8::MAX };
    let agent = if flaw == 3 { "Googlebot/2.1 (+http://www.google.com/bot.html)" } else { "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36" };
    let mut num = itoa::Buffer::new();
    let mut out = |parts: &[&[u8]]| parts.iter().for_each(|p| buf.extend_from_slice(p));
    let event = match shape {
        GeneratorShape::Impression => "impression",
        GeneratorShape::Click => "click",
        GeneratorShape::JoinImpression | GeneratorShape::JoinClick => unreachable!("write_join_record writes these"),
    };
    out(&[b"{\"event\":\"", event.as_bytes(), b"\",\"ts\":"]);
    // Dirty variants the cleaners must normalise or refuse: a quoted time,
    // no user, a padded upper-case device, a bot, a negative position or dwell.
    if flaw == 1 {
        out(&[b"\"", num.format(ts).as_bytes(), b"\""]);
    } else {
        out(&[num.format(ts).as_bytes()]);
    }
    out(&[b",\"request_id\":\"r-", &hex08(seq), b"\","]);
    if flaw != 2 {
        out(&[b"\"user_id\":\"u-", num.format(user).as_bytes(), b"\","]);
    }
    out(&[b"\"item_id\":\"i-", num.format(item).as_bytes(), b"\",\"device\":\""]);
    if flaw == 0 {
        out(&[b"  ", dev.to_uppercase().as_bytes(), b"  "]);
    } else {
        out(&[dev.as_bytes()]);
    }
    match shape {
        GeneratorShape::Impression => {
            let position: i32 = if flaw == 4 { -rng.random_range(1..10) } else { rng.random_range(0..50) };
            let os: i32 = rng.random_range(10..15);
            out(&[b"\",\"os\":\"", dev.as_bytes(), b" ", num.format(os).as_bytes()]);
            let (major, minor): (i32, i32) = (rng.random_range(0..10), rng.random_range(0..10));
            out(&[b"\",\"app_version\":\"8.", num.format(major).as_bytes(), b"."]);
            out(&[num.format(minor).as_bytes()]);
            out(&[b"\",\"position\":", num.format(position).as_bytes()]);
            out(&[b",\"page\":\"", PAGES[rng.random_range(0..PAGES.len())].as_bytes()]);
            let exp: i32 = rng.random_range(0..100);
            out(&[b"\",\"ab\":\"exp_", num.format(exp).as_bytes(), b":", if rng.random_bool(0.5) { b"A" } else { b"B" }]);
            out(&[b"\",\"user_agent\":\"", agent.as_bytes()]);
            let duration: i32 = rng.random_range(0..60_000);
            out(&[b"\",\"duration_ms\":", num.format(duration).as_bytes()]);
            out(&[b",\"extra\":{\"net\":\"", NETS[rng.random_range(0..NETS.len())].as_bytes()]);
            out(&[b"\",\"lang\":\"", LANGS[rng.random_range(0..LANGS.len())].as_bytes(), b"\"}}"]);
        }
        _ => {
            let dwell: i64 = if flaw == 4 { -rng.random_range(1..1000) } else { rng.random_range(0..120_000) };
            let click_type: &[u8] = if rng.random_bool(0.8) { b"tap" } else { b"long_press" };
            out(&[b"\",\"click_type\":\"", click_type, b"\",\"dwell_ms\":", num.format(dwell).as_bytes()]);
            out(&[b",\"user_agent\":\"", agent.as_bytes(), b"\"}"]);
        }
    }
}

/// `{seq:08x}`: at least 8 lower-case hex digits.
fn hex08(seq: u64) -> Vec<u8> {
    let digits = (16 - seq.leading_zeros() as usize / 4).max(8);
    (0..digits).rev().map(|i| b"0123456789abcdef"[((seq >> (4 * i)) & 0xF) as usize]).collect()
}

const CATEGORIES: [&str; 8] = ["news", "sports", "music", "games", "food", "travel", "tech", "fashion"];
const CITIES: [&str; 6] = ["shanghai", "beijing", "shenzhen", "hangzhou", "chengdu", "wuhan"];

/// The `request_id` of impression `j`.
pub fn request_id(j: u64) -> String {
    format!("q{j:012}")
}

/// User and item of impression `j` (from the index, so clicks agree).
fn user_item(j: u64) -> (u64, u64) {
    let h = mix(j ^ 0x5EED_CAFE);
    (h % 1_000_000, (h >> 32) % 200_000)
}

/// Appends one `join-impression` or `join-click` record (no newline) for
/// event `seq` at time `ts`; clicks refer to an impression of `targets`.
pub fn write_join_record(buf: &mut Vec<u8>, shape: GeneratorShape, rng: &mut Pcg64Mcg, seed: u64, seq: u64, ts: i64, targets: &ClickTargets) {
    let dev = DEVICES[rng.random_range(0..DEVICES.len())];
    let page = PAGES[rng.random_range(0..PAGES.len())];
    match shape {
        GeneratorShape::JoinImpression => {
            let (user, item) = user_item(seq);
            let _ = write!(
                buf,
                "{{\"event\":\"impression\",\"ts\":{ts},\"request_id\":\"q{seq:012}\",\"user_id\":\"u-{user}\",\"item_id\":\"i-{item}\",\
                 \"device\":\"{dev}\",\"app_version\":\"8.{}.{}\",\"page\":\"{page}\",\"position\":{},\"features\":{{\"u_age\":{},\
                 \"u_city\":\"{}\",\"u_active_days\":{},\"i_category\":\"{}\",\"i_price\":{}.{:02},\"i_ctr_7d\":0.{:04},\
                 \"ui_affinity\":0.{:03},\"emb\":[0.{:03},-0.{:03},0.{:03},-0.{:03}]}}}}",
                rng.random_range(0..10u32),
                rng.random_range(0..10u32),
                rng.random_range(0..50u32),
                rng.random_range(16..70u32),
                CITIES[rng.random_range(0..CITIES.len())],
                rng.random_range(0..31u32),
                CATEGORIES[rng.random_range(0..CATEGORIES.len())],
                rng.random_range(0..1000u32),
                rng.random_range(0..100u32),
                rng.random_range(0..1000u32),
                rng.random_range(0..1000u32),
                rng.random_range(0..1000u32),
                rng.random_range(0..1000u32),
                rng.random_range(0..1000u32),
                rng.random_range(0..1000u32),
            );
        }
        GeneratorShape::JoinClick => {
            let (request, (user, item)) = match targets.target(seed, seq, ts) {
                Some(j) => (request_id(j), user_item(j)),
                // No impression before this click: it joins nothing.
                None => (format!("none-{seq}"), (0, 0)),
            };
            let _ = write!(
                buf,
                "{{\"event\":\"click\",\"ts\":{ts},\"request_id\":\"{request}\",\"user_id\":\"u-{user}\",\"item_id\":\"i-{item}\",\
                 \"device\":\"{dev}\",\"page\":\"{page}\",\"click_type\":\"{}\",\"dwell_ms\":{},\"session_id\":\"s-{:016x}\",\
                 \"x\":{},\"y\":{},\"user_agent\":\"Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36\"}}",
                if rng.random_bool(0.8) { "tap" } else { "long_press" },
                rng.random_range(0..120_000u32),
                rng.random::<u64>(),
                rng.random_range(0..1080u32),
                rng.random_range(0..2400u32),
            );
        }
        GeneratorShape::Impression | GeneratorShape::Click => unreachable!("write_record_at writes these"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_valid_json_of_about_300_bytes_and_reproducible() {
        let gen = |seed| {
            let mut rng = Pcg64Mcg::seed_from_u64(seed);
            (0..200)
                .map(|i| {
                    let mut b = Vec::new();
                    write_record(&mut b, GeneratorShape::Impression, &mut rng, i, 0.3);
                    b
                })
                .collect::<Vec<_>>()
        };
        let a = gen(7);
        assert_eq!(a, gen(7));
        assert_ne!(a, gen(8));
        let total: usize = a.iter().map(Vec::len).sum();
        let avg = total / a.len();
        assert!((250..=380).contains(&avg), "average size {avg}");
        for r in &a {
            let v: serde_json::Value = serde_json::from_slice(r).unwrap();
            assert_eq!(v["event"], "impression");
        }
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        let mut b = Vec::new();
        write_record(&mut b, GeneratorShape::Click, &mut rng, 0, 0.0);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&b).unwrap()["event"], "click");
    }

    fn join_records(shape: GeneratorShape, seed: u64, n: u64, grid: &GeneratorEventTime, targets: &ClickTargets) -> Vec<serde_json::Value> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let mut b = Vec::new();
                write_join_record(&mut b, shape, &mut rng, seed, i, event_time_at(Some(grid), i), targets);
                assert!((250..=380).contains(&b.len()), "{shape:?} record of {} bytes: {}", b.len(), String::from_utf8_lossy(&b));
                serde_json::from_slice(&b).unwrap()
            })
            .collect()
    }

    #[test]
    fn join_clicks_refer_to_an_impression_0_to_30_minutes_before_them() {
        // Impressions 10 ms apart, clicks 7.5 times further apart: both
        // streams cover the same event time.
        let imp = GeneratorEventTime { start_ms: 1_000, step_ms: 10.0 };
        let clk = GeneratorEventTime { start_ms: 1_000, step_ms: 75.0 };
        let n_imp = 600_000u64;
        let targets = ClickTargets::new(Some(&clk), Some(&JoinImpressions { start_ms: 1_000, step_ms: 10.0, count: Some(n_imp), max_delay_ms: 1_800_000 }));
        assert_eq!(format!("{targets:?}"), format!("{:?}", ClickTargets::new(Some(&clk), None)).replace("None", "Some(600000)"), "the default is 7.5 times the step");
        let impressions = join_records(GeneratorShape::JoinImpression, 3, 2_000, &imp, &targets);
        assert_eq!(impressions, join_records(GeneratorShape::JoinImpression, 3, 2_000, &imp, &targets), "reproducible");
        assert_eq!(impressions[7]["request_id"], "q000000000007");
        assert_eq!(impressions[7]["ts"], 1_070);
        let n_clk = n_imp * 20 / 150;
        let mut rng = Pcg64Mcg::seed_from_u64(9);
        let mut delays = Vec::new();
        for i in (0..n_clk).step_by(997) {
            let tc = event_time_at(Some(&clk), i);
            let j = targets.target(9, i, tc).expect("every click has an impression before it");
            assert!(j < n_imp);
            let ti = event_time_at(Some(&imp), j);
            assert!((0..=1_800_000).contains(&(tc - ti)), "click {i} at {tc}, impression {j} at {ti}");
            delays.push(tc - ti);
            let mut b = Vec::new();
            write_join_record(&mut b, GeneratorShape::JoinClick, &mut rng, 9, i, tc, &targets);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["request_id"], request_id(j).as_str());
            assert_eq!(v["user_id"], impressions.get(j as usize).map_or(v["user_id"].clone(), |m| m["user_id"].clone()));
        }
        // Spread over the whole 30 minutes once past the first half hour.
        let late: Vec<i64> = delays[delays.len() / 2..].to_vec();
        assert!(late.iter().any(|d| *d < 300_000) && late.iter().any(|d| *d > 1_500_000), "{late:?}");
        assert_eq!(targets.target(9, 5, 999), None, "before the first impression");
        assert_ne!(targets.target(1, 40_000, event_time_at(Some(&clk), 40_000)), targets.target(2, 40_000, event_time_at(Some(&clk), 40_000)));
        join_records(GeneratorShape::JoinClick, 9, 2_000, &clk, &targets);
    }
}
