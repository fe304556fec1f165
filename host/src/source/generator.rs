//! Synthetic events for tests and benchmarks: deterministic for a seed, at a
//! fixed rate or as fast as possible, with a share of dirty records.

use std::io::Write;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{admit, Emitter, Source, SourceError};
use crate::config::{GeneratorShape, SourceCommon};
use crate::record_schema::RecordCheck;

/// Event time of the first generated event (2023-11-14T22:13:20Z); events
/// are 1 ms apart so runs are reproducible.
pub const BASE_TIME_MS: i64 = 1_700_000_000_000;

#[derive(Clone, Debug)]
pub struct GeneratorParams {
    pub shape: GeneratorShape,
    pub seed: u64,
    /// Events per second; 0 = unthrottled.
    pub rate: u64,
    pub count: Option<u64>,
    pub dirty_ratio: f64,
}

pub struct Generator {
    params: GeneratorParams,
    check: RecordCheck,
    max_bytes: usize,
}

impl Generator {
    pub fn new(_name: &str, params: GeneratorParams, common: &SourceCommon) -> Self {
        Generator { params, check: RecordCheck::new(common), max_bytes: common.max_record_bytes() }
    }
}

impl Source for Generator {
    fn run(self: Box<Self>, out: &mut Emitter) -> Result<(), SourceError> {
        let mut rng = Pcg64Mcg::seed_from_u64(self.params.seed);
        let start = Instant::now();
        let mut seq = 0u64;
        while self.params.count.is_none_or(|c| seq < c) && !out.closed {
            if self.params.rate > 0 {
                let due = (start.elapsed().as_secs_f64() * self.params.rate as f64) as u64;
                if seq >= due {
                    out.maybe_flush();
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
            }
            let mut raw = Vec::with_capacity(384);
            write_record(&mut raw, self.params.shape, &mut rng, seq, self.params.dirty_ratio);
            admit(out, &self.check, self.max_bytes, raw, seq + 1, BASE_TIME_MS + seq as i64);
            seq += 1;
        }
        Ok(())
    }
}

const DEVICES: [&str; 4] = ["android", "ios", "web", "harmony"];
const PAGES: [&str; 4] = ["feed", "search", "detail", "profile"];
const NETS: [&str; 3] = ["wifi", "4g", "5g"];
const LANGS: [&str; 4] = ["en-US", "zh-CN", "es-ES", "pt-BR"];

/// Appends one generated record (no newline) to `buf`.
pub fn write_record(buf: &mut Vec<u8>, shape: GeneratorShape, rng: &mut Pcg64Mcg, seq: u64, dirty_ratio: f64) {
    let ts = BASE_TIME_MS + seq as i64;
    let user = rng.random_range(0..1_000_000u32);
    let item = rng.random_range(0..100_000u32);
    let dev = DEVICES[rng.random_range(0..DEVICES.len())];
    let dirty = dirty_ratio > 0.0 && rng.random_bool(dirty_ratio);
    let flaw = if dirty { rng.random_range(0..5u8) } else { u8::MAX };
    // Dirty variants the cleaners must normalise or refuse.
    let device = match flaw {
        0 => format!("  {}  ", dev.to_uppercase()),
        _ => dev.to_string(),
    };
    let ts_json = if flaw == 1 { format!("\"{ts}\"") } else { ts.to_string() };
    let user_json = if flaw == 2 { String::new() } else { format!("\"user_id\":\"u-{user}\",") };
    let agent = if flaw == 3 { "Googlebot/2.1 (+http://www.google.com/bot.html)" } else { "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36" };
    match shape {
        GeneratorShape::Impression => {
            let position: i32 = if flaw == 4 { -rng.random_range(1..10) } else { rng.random_range(0..50) };
            let _ = write!(
                buf,
                "{{\"event\":\"impression\",\"ts\":{ts_json},\"request_id\":\"r-{seq:08x}\",{user_json}\"item_id\":\"i-{item}\",\
                 \"device\":\"{device}\",\"os\":\"{dev} {}\",\"app_version\":\"8.{}.{}\",\"position\":{position},\"page\":\"{}\",\
                 \"ab\":\"exp_{}:{}\",\"user_agent\":\"{agent}\",\"duration_ms\":{},\"extra\":{{\"net\":\"{}\",\"lang\":\"{}\"}}}}",
                rng.random_range(10..15),
                rng.random_range(0..10),
                rng.random_range(0..10),
                PAGES[rng.random_range(0..PAGES.len())],
                rng.random_range(0..100),
                if rng.random_bool(0.5) { "A" } else { "B" },
                rng.random_range(0..60_000),
                NETS[rng.random_range(0..NETS.len())],
                LANGS[rng.random_range(0..LANGS.len())],
            );
        }
        GeneratorShape::Click => {
            let dwell: i64 = if flaw == 4 { -rng.random_range(1..1000) } else { rng.random_range(0..120_000) };
            let _ = write!(
                buf,
                "{{\"event\":\"click\",\"ts\":{ts_json},\"request_id\":\"r-{seq:08x}\",{user_json}\"item_id\":\"i-{item}\",\
                 \"device\":\"{device}\",\"click_type\":\"{}\",\"dwell_ms\":{dwell},\"user_agent\":\"{agent}\"}}",
                if rng.random_bool(0.8) { "tap" } else { "long_press" },
            );
        }
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
}
