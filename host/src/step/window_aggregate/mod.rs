//! The `window-aggregate` step (issue 15, in progress): per key and window,
//! pre-aggregated accumulators kept in the state backend.
//!
//! Every accumulator is mergeable (two panes of a sliding window, two
//! partials of a hot key) and encodes to bytes that outlive builds:
//! [`acc`] the exact ones (count, sum, min, max, avg, first, last; a hand
//! codec), [`approx`] approx_distinct (HyperLogLog), [`top_k`] (frequent
//! items), [`percentile`] (DDSketch), each sketch in its library's stable
//! binary format. [`aggregates`]: an aggregate's settings and its
//! accumulator of any kind behind one shape, and a key's pane [`aggregates::Row`]. [`window`]: which windows and panes an event falls in,
//! and when they are complete or late. [`panes`]: the firing of tumbling and
//! sliding windows over pane rows, in memory (the operator's semantics).

pub mod acc;
pub mod aggregates;
pub mod approx;
pub mod panes;
pub mod percentile;
pub mod top_k;
pub mod window;
