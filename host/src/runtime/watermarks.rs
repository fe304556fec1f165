//! Event-time bookkeeping of a running pipeline: each source's watermark and
//! idleness, and each step's input and output watermark.
//!
//! A step's input watermark is the minimum of its producers' output
//! watermarks, leaving out idle producers (a source idle past its
//! `idle_timeout_ms`, or a step all of whose producers are idle). A step
//! whose producers are all idle keeps its watermark. Watermarks only move
//! forward; an exhausted source's is `END_OF_TIME`.

use std::time::{Duration, Instant};

use super::graph::Producer;

/// The watermark before any event: nothing is late yet.
pub(crate) const START_OF_TIME: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct Watermarks {
    sources: Vec<SourceClock>,
    steps: Vec<StepClock>,
}

#[derive(Debug)]
struct SourceClock {
    watermark: i64,
    idle: bool,
    /// Failing and retried: never idle until it sends again.
    held: bool,
    last_heard: Instant,
    idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct StepClock {
    input: i64,
    output: i64,
    idle: bool,
}

impl Watermarks {
    pub(crate) fn new(idle_timeouts: Vec<Option<Duration>>, steps: usize) -> Self {
        let now = Instant::now();
        Watermarks {
            sources: idle_timeouts
                .into_iter()
                .map(|idle_timeout| SourceClock { watermark: START_OF_TIME, idle: false, held: false, last_heard: now, idle_timeout })
                .collect(),
            steps: vec![StepClock { input: START_OF_TIME, output: START_OF_TIME, idle: false }; steps],
        }
    }

    /// Source `i` sent something: it is active again.
    /// Returns true if that changes its idleness.
    pub(crate) fn heard_from(&mut self, i: usize, now: Instant) -> bool {
        let s = &mut self.sources[i];
        s.last_heard = now;
        s.held = false;
        std::mem::replace(&mut s.idle, false)
    }

    /// Source `i` failed and is being retried: it holds back the watermark
    /// of what it feeds until it sends again, idle timeout or not (its data
    /// is still to come).
    pub(crate) fn hold(&mut self, i: usize) {
        let s = &mut self.sources[i];
        s.held = true;
        s.idle = false;
    }

    /// Source `i`'s watermark advanced (never moves back).
    pub(crate) fn advance_source(&mut self, i: usize, watermark: i64) {
        let s = &mut self.sources[i];
        s.watermark = s.watermark.max(watermark);
    }

    /// Marks sources silent past their idle timeout as idle; returns true
    /// if any became idle.
    pub(crate) fn check_idle(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for s in &mut self.sources {
            if let Some(timeout) = s.idle_timeout {
                if !s.idle && !s.held && s.watermark != crate::source::END_OF_TIME && now.duration_since(s.last_heard) >= timeout {
                    s.idle = true;
                    changed = true;
                }
            }
        }
        changed
    }

    /// The shortest idle timeout, to bound how long the pipeline waits for
    /// a message before checking idleness.
    pub(crate) fn shortest_idle_timeout(&self) -> Option<Duration> {
        self.sources.iter().filter_map(|s| s.idle_timeout).min()
    }

    /// What step `j`'s input watermark should be now (and whether it is
    /// idle), from its producers. Steps are visited in topological order, so
    /// producer steps are up to date.
    pub(crate) fn input_of(&self, j: usize, producers: &[Producer]) -> (i64, bool) {
        let mut min: Option<i64> = None;
        for p in producers {
            let (wm, idle) = match *p {
                Producer::Source(i) => (self.sources[i].watermark, self.sources[i].idle),
                Producer::Step(k) => (self.steps[k].output, self.steps[k].idle),
            };
            if !idle {
                min = Some(min.map_or(wm, |m| m.min(wm)));
            }
        }
        match min {
            Some(wm) => (wm.max(self.steps[j].input), false),
            None => (self.steps[j].input, !producers.is_empty()),
        }
    }

    pub(crate) fn source_watermark(&self, i: usize) -> i64 {
        self.sources[i].watermark
    }

    /// Source `i`'s watermark and whether it counts as idle.
    pub(crate) fn source_clock(&self, i: usize) -> (i64, bool) {
        (self.sources[i].watermark, self.sources[i].idle)
    }

    /// An input whose idleness another thread decides (a worker's view of a
    /// source, or of a step in another worker).
    pub(crate) fn set_source_idle(&mut self, i: usize, idle: bool) {
        self.sources[i].idle = idle;
    }

    /// Step `j`'s output watermark and idleness.
    pub(crate) fn step_output(&self, j: usize) -> (i64, bool) {
        (self.steps[j].output, self.steps[j].idle)
    }

    pub(crate) fn step_input(&self, j: usize) -> i64 {
        self.steps[j].input
    }

    pub(crate) fn set_step(&mut self, j: usize, input: i64, output: i64, idle: bool) {
        let s = &mut self.steps[j];
        s.input = input;
        s.output = s.output.max(output);
        s.idle = idle;
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_of_active_inputs_wins_and_idle_inputs_are_left_out() {
        let mut w = Watermarks::new(vec![Some(Duration::from_millis(10)), None], 1);
        let producers = [Producer::Source(0), Producer::Source(1)];
        w.advance_source(0, 100);
        assert_eq!(w.input_of(0, &producers), (START_OF_TIME, false), "source 1 has said nothing yet");
        w.advance_source(1, 50);
        assert_eq!(w.input_of(0, &producers), (50, false));
        w.advance_source(1, 40);
        assert_eq!(w.input_of(0, &producers).0, 50, "a watermark never moves back");
        w.advance_source(1, 500);
        assert_eq!(w.input_of(0, &producers).0, 100);

        // Source 0 goes quiet past its timeout: only source 1 counts.
        let later = Instant::now() + Duration::from_millis(20);
        assert!(w.check_idle(later));
        assert!(!w.check_idle(later), "idle once");
        assert_eq!(w.input_of(0, &producers), (500, false));
        // It speaks again: it holds the watermark back again, but the step's
        // input watermark does not move back.
        assert!(w.heard_from(0, later));
        w.set_step(0, 500, 500, false);
        assert_eq!(w.input_of(0, &producers), (500, false));
    }

    #[test]
    fn a_source_being_retried_never_goes_idle_until_it_sends_again() {
        let mut w = Watermarks::new(vec![Some(Duration::from_millis(1)), None], 1);
        let producers = [Producer::Source(0), Producer::Source(1)];
        w.advance_source(0, 10);
        w.advance_source(1, 500);
        w.hold(0);
        assert!(!w.check_idle(Instant::now() + Duration::from_secs(60)), "a failing source is not idle");
        assert_eq!(w.input_of(0, &producers), (10, false));
        let now = Instant::now();
        w.heard_from(0, now);
        assert!(w.check_idle(now + Duration::from_millis(5)), "once it sent again, idleness applies again");
        assert_eq!(w.input_of(0, &producers), (500, false));
    }

    #[test]
    fn a_step_fed_only_by_idle_inputs_is_idle_and_keeps_its_watermark() {
        let mut w = Watermarks::new(vec![Some(Duration::from_millis(1))], 2);
        w.advance_source(0, 7);
        let (wm, idle) = w.input_of(0, &[Producer::Source(0)]);
        w.set_step(0, wm, wm, idle);
        assert!(w.check_idle(Instant::now() + Duration::from_millis(5)));
        assert_eq!(w.input_of(0, &[Producer::Source(0)]), (7, true));
        w.set_step(0, 7, 7, true);
        assert_eq!(w.input_of(1, &[Producer::Step(0)]), (START_OF_TIME, true));
    }
}
