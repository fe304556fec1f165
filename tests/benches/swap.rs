//! Hot swap under load (issue: hot-swap plugins): how long from the upload
//! of a new version to the first event it processes, and what a swap does
//! to latency and throughput.
//!
//! ```text
//! generator (rate R, ts = wall clock) ─ transform impression-cleaner (Rust) ─ probe (native) ─ null
//!                                                  ▲
//!                        POST /plugins/impression-cleaner/swap (admin API, HTTP)
//! ```
//!
//! The generator's event time is the wall clock (`event_time.start_ms` is
//! the start of the run, `step_ms` = 1000 / R), so the probe measures each
//! event's latency from its generation to after the plugin, in ms. Swaps
//! alternate between a *new* component (the plugin's bytes plus a custom
//! section with a fresh nonce: a new content hash) and the first one
//! (compiled already), every `--every-ms`, through the real HTTP API. A
//! new component is either compiled by the pipeline on upload, or first
//! precompiled into the shared artifact cache, as `streamhost plugin swap`
//! does when the pipeline runs on the same machine.
//!
//! Reported: per swap, time from the start of the upload to the new
//! version's first call (`first_call_unix_us` of its stats), its breakdown
//! (compile, link, instance, prestart), and for the swap window (the second
//! after the upload starts) against the steady state (everything at least
//! a second away from a swap): p50/p99/max latency, and the longest gap
//! between two consecutive outputs.
//!
//! ```text
//! cargo bench -p streamhost-tests --bench swap -- [--rate 100000] [--swaps 6] [--every-ms 2000]
//! cargo test --release -p streamhost-tests --bench swap -- --rate 50000 --swaps 4
//! ```

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use streamhost::event::Event;
use streamhost::plugin::{PluginRuntime, RuntimeOptions};
use streamhost::runtime::{build_pipeline, BuildOptions};
use streamhost::step::{NativeFn, NativeRegistry};
use streamhost::swap::AdminClient;

const PLUGIN: &str = "impression-cleaner";

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// What the probe saw: per output, (unix µs when seen, latency ms).
#[derive(Default)]
struct Seen {
    outputs: Vec<(u64, i64)>,
}

/// `bytes` with a custom section appended: the same code, a new content hash.
fn with_nonce(bytes: &[u8], nonce: u64) -> Vec<u8> {
    let name = b"streamhost-bench-nonce";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(&nonce.to_le_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    let mut n = payload.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { byte } else { byte | 0x80 });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&payload);
    out
}

fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// Latency quantiles and the longest output gap of the outputs seen in `windows`.
fn window_stats(outputs: &[(u64, i64)], inside: impl Fn(u64) -> bool) -> (usize, i64, i64, i64, u64) {
    let mut lat: Vec<i64> = Vec::new();
    let mut gap = 0u64;
    let mut last: Option<u64> = None;
    for &(at, l) in outputs {
        if inside(at) {
            lat.push(l);
            if let Some(prev) = last {
                gap = gap.max(at.saturating_sub(prev));
            }
            last = Some(at);
        } else {
            last = None;
        }
    }
    lat.sort_unstable();
    (lat.len(), quantile(&lat, 0.5), quantile(&lat, 0.99), lat.last().copied().unwrap_or(0), gap)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate = arg(&args, "--rate", 100_000);
    let swaps = arg(&args, "--swaps", 6) as usize;
    let every = Duration::from_millis(arg(&args, "--every-ms", 2_000));
    let warmup = Duration::from_secs(3);

    let wasm = streamhost::build::build_plugin(&streamhost_tests::repo().join("plugins").join(PLUGIN), None, false)
        .unwrap_or_else(|e| panic!("{PLUGIN}: {e}"))
        .output;
    let v1 = std::fs::read(&wasm).expect("the built plugin");
    let dir = tempfile::tempdir().unwrap();
    let run_secs = warmup + every * (swaps as u32 + 1);
    let count = rate * run_secs.as_secs().max(1);
    let start_ms = (unix_us() / 1000) as i64;
    let path = streamhost_tests::write_pipeline(
        dir.path(),
        &json!({
            "name": "swap-bench",
            "plugins": {PLUGIN: {"path": wasm, "world": "transform"}},
            "sources": {"gen": {
                "type": "generator", "shape": "impression", "seed": 3, "rate": rate, "count": count,
                "event_time": {"start_ms": start_ms, "step_ms": 1000.0 / rate as f64}
            }},
            "steps": {
                "clean": {"type": "transform", "plugin": PLUGIN, "inputs": ["gen"]},
                "probe": {"type": "native", "name": "probe", "inputs": ["clean"]}
            },
            "sinks": {"null": {"type": "null", "inputs": ["probe"]}},
            "dead_letter": {"type": "file", "path": "dead.jsonl"},
            "settings": {"admin": {"bind": "127.0.0.1:0"}, "batch_linger_ms": 10}
        }),
    );
    let loaded = streamhost::config::load_pipeline(&path).unwrap_or_else(|e| panic!("{e}\n{e:?}"));

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut natives = NativeRegistry::default();
    {
        let seen = seen.clone();
        natives.register("probe", move || -> NativeFn {
            let seen = seen.clone();
            Box::new(move |e: &Event| {
                let now = unix_us();
                seen.lock().unwrap().outputs.push((now, (now / 1000) as i64 - e.timestamp));
                Ok(vec![])
            })
        });
    }
    let pipeline = build_pipeline(&loaded, BuildOptions { natives, ..Default::default() }).unwrap_or_else(|e| panic!("{e}"));
    // Shares the default artifact cache with the pipeline, like the CLI.
    let runtime = PluginRuntime::new(RuntimeOptions::default()).unwrap();
    let client = AdminClient::new(&pipeline.admin_addr().expect("admin API").to_string(), None);
    let done = Arc::new(AtomicBool::new(false));
    let run = {
        let done = done.clone();
        std::thread::spawn(move || {
            let summary = pipeline.run().unwrap_or_else(|e| panic!("{e}"));
            done.store(true, Relaxed);
            summary
        })
    };

    println!("--- swap bench: {rate} events/s through {PLUGIN}, {swaps} swaps every {} ms", every.as_millis());
    let began = Instant::now();
    std::thread::sleep(warmup);
    // (upload start, response, cold?, the new version's first call)
    let mut done_swaps = Vec::new();
    for i in 0..swaps {
        // New components alternate between compiled by the pipeline on
        // upload and precompiled into the shared artifact cache first (what
        // `streamhost plugin swap` does on the pipeline's machine).
        let cold = i % 2 == 0;
        let precompiled = cold && i % 4 == 2;
        let bytes = if cold { with_nonce(&v1, unix_us() ^ i as u64) } else { v1.clone() };
        if precompiled {
            let file = dir.path().join(format!("v{i}.wasm"));
            std::fs::write(&file, &bytes).unwrap();
            runtime.precompile(&file).unwrap();
        }
        let t0 = unix_us();
        let resp = client.swap(PLUGIN, &bytes, None, false).unwrap_or_else(|e| panic!("swap {i}: {e}"));
        // The new version's first call, stamped by the runner that made it.
        let until = Instant::now() + Duration::from_secs(5);
        let first_call = loop {
            let view = client.list().unwrap().plugins.into_iter().find(|p| p.name == PLUGIN).unwrap();
            let first = Some(&view.current).filter(|v| v.hash == resp.version).and_then(|v| v.stats.first_call_unix_us);
            if first.is_some() || Instant::now() > until {
                break first;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        done_swaps.push((t0, resp, cold && !precompiled, first_call));
        let next = warmup + every * (i as u32 + 1);
        if let Some(wait) = next.checked_sub(began.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let summary = run.join().unwrap();
    let seen = seen.lock().unwrap();
    let outputs = &seen.outputs;
    assert!(summary.dead_lettered == 0, "no event is refused: {} dead letters", summary.dead_lettered);
    assert_eq!(outputs.len() as u64, count, "every event came out once");

    println!("  swap  artifact   upload→published  upload→first event  compile  link  instance  prestart");
    let mut to_first = Vec::new();
    for (i, (t0, resp, cold, first_call)) in done_swaps.iter().enumerate() {
        let first = first_call.unwrap_or_else(|| panic!("swap {i}: the new version made no call within 5 s"));
        let ms = first.saturating_sub(*t0) as f64 / 1000.0;
        to_first.push(ms);
        let t = &resp.timings;
        println!(
            "  {i:>4}  {:<9}  {:>13.1} ms  {:>15.1} ms  {:>5.1}  {:>4.1}  {:>8.1}  {:>8.1}   ({})",
            t.artifact,
            resp.published_unix_us.saturating_sub(*t0) as f64 / 1000.0,
            ms,
            t.compile_ms,
            t.link_ms,
            t.first_instance_ms,
            t.prestart_ms,
            match (*cold, t.artifact.as_str()) {
                (true, _) => "new component, compiled by the pipeline",
                (false, "disk-cache") => "new component, precompiled into the artifact cache",
                _ => "back to a compiled one",
            }
        );
    }
    let near_swap = |at: u64| done_swaps.iter().any(|(t0, ..)| at + 1_000_000 >= *t0 && at <= t0 + 2_000_000);
    let in_swap = |at: u64| done_swaps.iter().any(|(t0, ..)| at >= *t0 && at <= t0 + 1_000_000);
    let first_at = outputs.first().map_or(0, |o| o.0);
    let steady = |at: u64| at >= first_at + 1_000_000 && !near_swap(at);
    let (n_s, p50_s, p99_s, max_s, gap_s) = window_stats(outputs, steady);
    let (n_w, p50_w, p99_w, max_w, gap_w) = window_stats(outputs, in_swap);
    println!("  latency (generation → after the plugin), ms:");
    println!("    steady state   {n_s:>9} events  p50 {p50_s:>4}  p99 {p99_s:>4}  max {max_s:>5}  longest output gap {:.1} ms", gap_s as f64 / 1000.0);
    println!("    swap windows   {n_w:>9} events  p50 {p50_w:>4}  p99 {p99_w:>4}  max {max_w:>5}  longest output gap {:.1} ms", gap_w as f64 / 1000.0);
    let cold: Vec<f64> = to_first.iter().zip(&done_swaps).filter(|(_, s)| s.2).map(|(m, _)| *m).collect();
    let warm: Vec<f64> = to_first.iter().zip(&done_swaps).filter(|(_, s)| !s.2).map(|(m, _)| *m).collect();
    // (Warm: precompiled new components and swaps back to a compiled one.)
    let max = |v: &[f64]| v.iter().copied().fold(0f64, f64::max);
    println!(
        "  upload → first event: compiled by the pipeline max {:.1} ms, precompiled or compiled before max {:.1} ms; p99 ratio swap/steady {:.2}",
        max(&cold),
        max(&warm),
        p99_w.max(1) as f64 / p99_s.max(1) as f64
    );
    println!(
        "RESULT {}",
        json!({
            "rate": rate, "swaps": swaps, "events": count,
            "upload_to_first_event_ms": to_first,
            "cold_max_ms": max(&cold), "warm_max_ms": max(&warm),
            "steady": {"events": n_s, "p50_ms": p50_s, "p99_ms": p99_s, "max_ms": max_s, "max_gap_ms": gap_s as f64 / 1000.0},
            "swap_windows": {"events": n_w, "p50_ms": p50_w, "p99_ms": p99_w, "max_ms": max_w, "max_gap_ms": gap_w as f64 / 1000.0},
            "swaps_in_summary": summary.plugins.iter().map(|p| p.swaps).sum::<u64>(),
        })
    );
}
