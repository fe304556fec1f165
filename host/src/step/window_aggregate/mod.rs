//! The `window-aggregate` step (issue 15, in progress): per key and window,
//! pre-aggregated accumulators kept in the state backend.
//!
//! [`acc`]: the accumulators of the built-in aggregates, each mergeable (two
//! panes of a sliding window, two partials of a hot key) and encoded to bytes
//! by a hand codec that stays stable across serde versions (state outlives
//! builds).

pub mod acc;
pub mod approx;
pub mod percentile;
pub mod window;
