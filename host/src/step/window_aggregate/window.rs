//! Window arithmetic in event time: which windows an event at `t` falls in,
//! the panes a sliding window is made of, when a window is complete and when
//! an event is late (docs/aggregations.md, to come).
//!
//! Windows are aligned to the epoch plus `offset_ms`, start inclusive, end
//! exclusive: [s, e). Tumbling windows are sliding windows whose slide is
//! their size. A sliding window is the merge of its panes, [p, p + g) with g
//! the greatest common divisor of size and slide (and of the early-firing
//! interval, when there is one), so an event is added to one pane, never to
//! size/slide windows (Flink's slicing; Arroyo's bins).

/// A window shape of fixed size (tumbling or sliding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sliding {
    pub size_ms: i64,
    pub slide_ms: i64,
    pub offset_ms: i64,
    /// Pane width: gcd of size, slide and the early-firing interval.
    pub pane_ms: i64,
}

/// Why a window shape is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("size_ms must be positive, not {0}")]
    Size(i64),
    #[error("slide_ms must be positive and at most size_ms ({size}), not {slide}")]
    Slide { size: i64, slide: i64 },
    #[error("early_fire_ms must be positive, not {0}")]
    EarlyFire(i64),
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Sliding {
    pub fn new(size_ms: i64, slide_ms: i64, offset_ms: i64, early_fire_ms: Option<i64>) -> Result<Sliding, WindowError> {
        if size_ms <= 0 {
            return Err(WindowError::Size(size_ms));
        }
        if slide_ms <= 0 || slide_ms > size_ms {
            return Err(WindowError::Slide { size: size_ms, slide: slide_ms });
        }
        let mut pane_ms = gcd(size_ms, slide_ms);
        if let Some(e) = early_fire_ms {
            if e <= 0 {
                return Err(WindowError::EarlyFire(e));
            }
            pane_ms = gcd(pane_ms, e);
        }
        Ok(Sliding { size_ms, slide_ms, offset_ms: offset_ms.rem_euclid(slide_ms), pane_ms })
    }

    pub fn tumbling(size_ms: i64, offset_ms: i64, early_fire_ms: Option<i64>) -> Result<Sliding, WindowError> {
        Sliding::new(size_ms, size_ms, offset_ms, early_fire_ms)
    }

    /// The start of the pane holding `t`.
    pub fn pane_of(&self, t: i64) -> i64 {
        let off = self.offset_ms.rem_euclid(self.pane_ms);
        (t - off).div_euclid(self.pane_ms) * self.pane_ms + off
    }

    /// Where window ends fall: starts are ≡ offset (mod slide), so ends are
    /// ≡ offset + size.
    fn end_offset(&self) -> i64 {
        (self.offset_ms + self.size_ms).rem_euclid(self.slide_ms)
    }

    /// The ends of the windows holding `t`, in order: every end e with
    /// t < e ≤ t + size.
    pub fn window_ends(&self, t: i64) -> impl Iterator<Item = i64> {
        // The first end after t.
        let off = self.end_offset();
        let first = (t - off).div_euclid(self.slide_ms) * self.slide_ms + off + self.slide_ms;
        let (slide, last) = (self.slide_ms, t + self.size_ms);
        (0..).map(move |k| first + k * slide).take_while(move |e| *e <= last)
    }

    /// The starts of the panes window [end − size, end) is made of.
    pub fn panes_of_window(&self, end: i64) -> impl Iterator<Item = i64> {
        let pane = self.pane_ms;
        (end - self.size_ms..end).step_by(pane as usize)
    }

    /// The last window end a watermark `w` completes: windows [s, e) with
    /// e − 1 ≤ w have fired (nothing at or before w follows).
    pub fn last_complete_end(&self, w: i64) -> i64 {
        let off = self.end_offset();
        (w + 1 - off).div_euclid(self.slide_ms) * self.slide_ms + off
    }

    /// Whether an event at `t` is late for every window it falls in, at
    /// watermark `w` with allowed lateness `l`: its last window's end − 1 + l
    /// ≤ w.
    pub fn is_late(&self, t: i64, w: i64, lateness_ms: i64) -> bool {
        self.window_ends(t).last().is_some_and(|e| e - 1 + lateness_ms <= w)
    }

    /// Whether window `end` may still change at watermark `w` (it, or a late
    /// update to it, is to come): end − 1 + l > w. Its panes are kept until then.
    pub fn is_open(&self, end: i64, w: i64, lateness_ms: i64) -> bool {
        end - 1 + lateness_ms > w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_shapes_are_refused() {
        assert_eq!(Sliding::new(0, 1, 0, None), Err(WindowError::Size(0)));
        assert_eq!(Sliding::new(10, 20, 0, None), Err(WindowError::Slide { size: 10, slide: 20 }));
        assert_eq!(Sliding::new(10, 5, 0, Some(0)), Err(WindowError::EarlyFire(0)));
        assert_eq!(Sliding::new(600_000, 60_000, 0, Some(25_000)).unwrap().pane_ms, 5_000);
    }

    #[test]
    fn a_ten_minute_window_sliding_by_one_minute() {
        let w = Sliding::new(600_000, 60_000, 0, None).unwrap();
        let ends: Vec<i64> = w.window_ends(90_000).collect();
        assert_eq!(ends, (2..=11).map(|m| m * 60_000).collect::<Vec<_>>(), "10 windows, [0, 10 min) ... [1, 11 min)");
        assert_eq!(w.panes_of_window(600_000).count(), 10);
        assert_eq!(w.last_complete_end(599_998), 540_000);
        assert_eq!(w.last_complete_end(599_999), 600_000, "complete when the watermark reaches end − 1");
    }

    proptest! {
        /// Against brute force over every window start near t: the windows
        /// holding t, the panes partitioning each window, lateness.
        #[test]
        fn windows_panes_and_lateness_match_brute_force(
            size in 1i64..40, slide_frac in 1i64..40, offset in -50i64..50, early in proptest::option::of(1i64..30),
            t in -200i64..200, w in -200i64..260, l in 0i64..30,
        ) {
            let slide = 1 + (slide_frac - 1) % size;
            let s = Sliding::new(size, slide, offset, early).unwrap();
            // Every window [st, st + size) with st ≡ offset (mod slide) holding t.
            let brute: Vec<i64> = (t - size - slide..=t + slide)
                .filter(|st| (st - offset).rem_euclid(slide) == 0 && *st <= t && t < st + size)
                .map(|st| st + size)
                .collect();
            prop_assert_eq!(s.window_ends(t).collect::<Vec<_>>(), brute.clone());
            for e in &brute {
                let panes: Vec<i64> = s.panes_of_window(*e).collect();
                // The panes tile the window, and t's pane is one of them.
                prop_assert_eq!(panes.first().copied(), Some(e - size));
                prop_assert!(panes.windows(2).all(|p| p[1] - p[0] == s.pane_ms));
                prop_assert_eq!(panes.last().unwrap() + s.pane_ms, *e);
                prop_assert!(panes.contains(&s.pane_of(t)), "pane {} of t {} in window ending {}", s.pane_of(t), t, e);
            }
            let late = brute.iter().all(|e| e - 1 + l <= w);
            prop_assert_eq!(s.is_late(t, w, l), late && !brute.is_empty());
            // The last complete end: the greatest end ≤ w + 1.
            let last = s.last_complete_end(w);
            prop_assert!(last - 1 <= w && last + slide - 1 > w);
            prop_assert_eq!((last - size - offset).rem_euclid(slide), 0);
        }
    }
}
