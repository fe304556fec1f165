//! `on-window-end`: each main event emitted once, with all its matches, when
//! the watermark passes the end of its window. Main events are in the main log
//! (`main_log.rs`), matches in the other inputs' tables behind their key
//! filters (`key_filter.rs`).

use super::layout::{decode_in, SourceNames, Stored};
use super::{JoinMode, WindowJoin, FIRE_CHUNK};
use crate::event::Batch;
use crate::state::StateError;
use crate::step::StepContext;

impl WindowJoin {
    /// Stores an arriving main event: one append to the log of its fire bucket.
    pub(super) fn arrive_main_on_window_end(&mut self, done: i64, seq: u64, bytes: &[u8], ctx: &mut StepContext<'_>) -> Result<(), StateError> {
        let log = self.tables.as_mut().and_then(|t| t.main_log.as_mut()).expect("open_state opens the main log");
        log.add(&mut *ctx.state, done, seq, bytes)
    }

    /// [`Self::fire`] for `on-window-end`: up to [`FIRE_CHUNK`] main events
    /// from the main log, with their matches.
    pub(super) fn fire_window_end(&mut self, watermark: i64, ctx: &mut StepContext<'_>) -> Result<(Batch, bool), StateError> {
        let mut names = SourceNames::default();
        let mut log = self.tables.as_mut().and_then(|t| t.main_log.take()).expect("open_state opens the main log");
        let result = (|| {
            let due: Vec<Option<Stored>> = log.peek(&*ctx.state, watermark, FIRE_CHUNK)?.into_iter().map(|(_, v)| decode_in(v, &mut names)).collect();
            let mains: Vec<&Stored> = due.iter().flatten().collect();
            let found = self.matches_of_all(&*ctx.state, &mains)?;
            // Enough matches loaded: the main events past the last one taken
            // fire on the next call.
            let taken = match found.len() < mains.len() {
                true => due.iter().enumerate().filter(|(_, d)| d.is_some()).nth(found.len()).map_or(due.len(), |(i, _)| i),
                false => due.len(),
            };
            let mut found = found.into_iter();
            self.count_fired(due.iter().take(taken).flatten().count());
            for main in due.into_iter().take(taken).flatten() {
                let matches = found.next().unwrap_or_default();
                if self.mode == JoinMode::Left || matches.groups.iter().any(|g| !g.is_empty()) {
                    let main = self.pending.add_main(main, matches.truncated());
                    self.pending.cases.push((main, matches.groups));
                }
            }
            log.advance(&mut *ctx.state, taken)?;
            Ok::<_, StateError>(())
        })();
        let more = log.any_due(watermark);
        if result.is_ok() && !more {
            log.drop_passed(&mut *ctx.state, watermark)?;
        }
        self.tables.as_mut().expect("open").main_log = Some(log);
        result?;
        let mut out = Batch::default();
        self.flush(&mut out, ctx);
        if !more {
            self.expire_others(watermark, ctx.state)?;
        }
        ctx.state.commit()?;
        Ok((out, more))
    }
}
