//! Writer metrics: counters, batch sizes, latency percentiles over a bounded window, health.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Latency samples kept per window: percentiles describe the most recent ones.
pub(crate) const FLUSH_WINDOW: usize = 1024;
/// Item latency samples kept (one per completed item).
pub(crate) const ACK_WINDOW: usize = 4096;
/// Power-of-two buckets of the batch size histogram (sizes up to 2^40 and beyond in the last).
const BUCKETS: usize = 41;

/// Percentiles of a latency over the most recent samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyStats {
    /// Samples the percentiles are computed from (at most the window size).
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample in the window.
    pub max: Duration,
}

/// Sizes of the batches handed to the sink (every attempt, retries included).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchSizeStats {
    /// Batches.
    pub count: u64,
    /// Items over all batches.
    pub items: u64,
    /// Smallest batch (0 when there was none).
    pub min: usize,
    /// Largest batch.
    pub max: usize,
    /// Mean batch size (0 when there was none).
    pub mean: f64,
    /// `histogram[k]` counts batches of `2^k ..= 2^(k+1) - 1` items; trailing empty buckets are
    /// left out.
    pub histogram: Vec<u64>,
}

/// A snapshot of a [`BatchWriter`](super::BatchWriter)'s counters.
///
/// Every submitted item is, at any moment, in exactly one of: the queue, in flight (taken by the
/// background thread, not yet completed), written, rejected or failed. So
/// `submitted == queue_depth + in_flight + items_written + items_rejected + items_failed`
/// holds in every snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriterMetrics {
    /// Items accepted by a submit call.
    pub submitted: u64,
    /// Items completed successfully.
    pub items_written: u64,
    /// Items completed with a permanent per-item error ([`WriteError::Rejected`](super::WriteError)).
    pub items_rejected: u64,
    /// Items completed with any other error: retries exhausted, a permanent whole-batch failure,
    /// or the writer stopping.
    pub items_failed: u64,
    /// Sink calls that returned `Ok` (possibly with per-item failures).
    pub batches_written: u64,
    /// Sink calls that failed as a whole (returned `Err` or panicked).
    pub batch_failures: u64,
    /// Sink calls that were retries (of a whole batch, or of the transiently failed items).
    pub retries: u64,
    /// Items resent by those retries.
    pub items_retried: u64,
    /// Items waiting in the queue now.
    pub queue_depth: usize,
    /// Items taken by the background thread and not yet completed.
    pub in_flight: usize,
    /// Whether the background thread is waiting to retry now.
    pub retrying: bool,
    /// Sizes of the batches handed to the sink.
    pub batch_sizes: BatchSizeStats,
    /// Duration of the sink calls (the last 1024).
    pub flush_latency: LatencyStats,
    /// Time from submit to completion of items (the last 4096).
    pub ack_latency: LatencyStats,
}

/// State of a writer as reported by [`BatchWriter::health`](super::BatchWriter::health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Accepting items; no failure within the health window.
    Healthy,
    /// Accepting items, but writes failed recently or are being retried.
    Degraded {
        /// The background thread is waiting to retry a failed write.
        retrying: bool,
        /// Time since the last failure (a failed sink call or an item given up on), if any.
        since_failure: Option<Duration>,
    },
    /// Closed (or stopped after a sink panic): submits return
    /// [`SubmitError::Closed`](super::SubmitError).
    Stopped,
}

/// A ring of the most recent latency samples, in nanoseconds.
#[derive(Debug)]
struct Window {
    cap: usize,
    samples: VecDeque<u64>,
}

impl Window {
    fn new(cap: usize) -> Self {
        Window { cap, samples: VecDeque::with_capacity(cap.min(64)) }
    }

    fn push(&mut self, d: Duration) {
        if self.samples.len() >= self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn stats(&self) -> LatencyStats {
        let mut v: Vec<u64> = self.samples.iter().copied().collect();
        v.sort_unstable();
        // Nearest rank: the smallest sample with at least q of the samples at or below it.
        let rank = |q: f64| -> Duration {
            if v.is_empty() {
                return Duration::ZERO;
            }
            let r = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            Duration::from_nanos(v.get(r - 1).copied().unwrap_or(0))
        };
        LatencyStats {
            samples: v.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: Duration::from_nanos(v.last().copied().unwrap_or(0)),
        }
    }
}

/// Counters updated by the background thread under one lock, once per sink call.
#[derive(Debug)]
pub(crate) struct Counters {
    pub items_written: u64,
    pub items_rejected: u64,
    pub items_failed: u64,
    pub batches_written: u64,
    pub batch_failures: u64,
    pub retries: u64,
    pub items_retried: u64,
    pub in_flight: usize,
    pub retrying: bool,
    pub last_failure: Option<Instant>,
    batch_count: u64,
    batch_items: u64,
    batch_min: usize,
    batch_max: usize,
    histogram: [u64; BUCKETS],
    flush: Window,
    ack: Window,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            items_written: 0,
            items_rejected: 0,
            items_failed: 0,
            batches_written: 0,
            batch_failures: 0,
            retries: 0,
            items_retried: 0,
            in_flight: 0,
            retrying: false,
            last_failure: None,
            batch_count: 0,
            batch_items: 0,
            batch_min: 0,
            batch_max: 0,
            histogram: [0; BUCKETS],
            flush: Window::new(FLUSH_WINDOW),
            ack: Window::new(ACK_WINDOW),
        }
    }

    /// Records one sink call of `size` items that took `took`.
    pub(crate) fn record_call(&mut self, size: usize, took: Duration, ok: bool) {
        if ok {
            self.batches_written += 1;
        } else {
            self.batch_failures += 1;
            self.last_failure = Some(Instant::now());
        }
        self.batch_min = if self.batch_count == 0 { size } else { self.batch_min.min(size) };
        self.batch_max = self.batch_max.max(size);
        self.batch_count += 1;
        self.batch_items = self.batch_items.saturating_add(size as u64);
        let bucket = if size == 0 { 0 } else { size.ilog2() as usize };
        if let Some(b) = self.histogram.get_mut(bucket.min(BUCKETS - 1)) {
            *b += 1;
        }
        self.flush.push(took);
    }

    /// Records the submit-to-completion latency of one item.
    pub(crate) fn record_ack(&mut self, latency: Duration) {
        self.ack.push(latency);
    }

    /// The snapshot, with the queue's part filled in by the caller.
    pub(crate) fn snapshot(&self, submitted: u64, queue_depth: usize) -> WriterMetrics {
        let used = self.histogram.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        WriterMetrics {
            submitted,
            items_written: self.items_written,
            items_rejected: self.items_rejected,
            items_failed: self.items_failed,
            batches_written: self.batches_written,
            batch_failures: self.batch_failures,
            retries: self.retries,
            items_retried: self.items_retried,
            queue_depth,
            in_flight: self.in_flight,
            retrying: self.retrying,
            batch_sizes: BatchSizeStats {
                count: self.batch_count,
                items: self.batch_items,
                min: self.batch_min,
                max: self.batch_max,
                mean: if self.batch_count == 0 {
                    0.0
                } else {
                    self.batch_items as f64 / self.batch_count as f64
                },
                histogram: self.histogram.get(..used).map(<[u64]>::to_vec).unwrap_or_default(),
            },
            flush_latency: self.flush.stats(),
            ack_latency: self.ack.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let mut w = Window::new(100);
        for ms in 1..=100u64 {
            w.push(Duration::from_millis(ms));
        }
        let s = w.stats();
        assert_eq!(s.samples, 100);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        // The window forgets the oldest samples.
        for _ in 0..100 {
            w.push(Duration::from_millis(1));
        }
        assert_eq!(w.stats().max, Duration::from_millis(1));
        assert_eq!(Window::new(4).stats(), LatencyStats::default());
    }

    #[test]
    fn histogram_buckets() {
        let mut c = Counters::new();
        for size in [1, 2, 3, 4, 1000] {
            c.record_call(size, Duration::ZERO, true);
        }
        let m = c.snapshot(0, 0).batch_sizes;
        assert_eq!(m.histogram, vec![1, 2, 1, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!((m.min, m.max, m.count, m.items), (1, 1000, 5, 1010));
        assert!((m.mean - 202.0).abs() < 1e-9);
    }
}
