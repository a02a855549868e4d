//! The batching writer: backpressure, flush by size and by delay, completion outcomes, retries
//! of whole batches and of transiently failed items, metrics, health, close, many producers.
//!
//! Nothing here asserts speed: timing only decides *whether* something happens (an item behind
//! a one-hour delay is not flushed), never how fast.
#![allow(missing_docs)]

use hnsw_batch::writer::{
    BatchSink, BatchWriter, Health, ItemError, ItemFailure, StartError, SubmitError, WriteError,
    WriterOptions,
};
use hnsw_batch::{BatchError, BatchInsertable, BatchMode, BatchOptions, Index, IndexConfig, Metric};
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const DIM: usize = 4;
const LONG: Duration = Duration::from_secs(3600);
const PATIENCE: Duration = Duration::from_secs(20);

/// A distinct pseudo-random vector per id (splitmix64), in [0, 1)^DIM.
fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| {
            let mut z = (id * DIM as u64 + j).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A scriptable sink in front of an in-memory index.
struct TestSink {
    index: Index,
    /// Ids of every call, in call order.
    calls: Mutex<Vec<Vec<u64>>>,
    /// Calls are held here while the gate is shut.
    gate: Mutex<bool>,
    gate_cv: Condvar,
    /// Whole-batch failures still to produce.
    fail_calls: AtomicUsize,
    /// Whether whole-batch failures are permanent.
    fail_permanently: bool,
    /// Transient failures still to produce per id.
    transient: Mutex<HashMap<u64, u32>>,
    /// Ids always failing permanently.
    permanent: HashSet<u64>,
    /// An id whose presence makes the sink panic.
    panic_on: Option<u64>,
}

impl TestSink {
    fn new() -> Self {
        TestSink {
            index: Index::new(IndexConfig::new(DIM, Metric::L2)).unwrap(),
            calls: Mutex::new(Vec::new()),
            gate: Mutex::new(true),
            gate_cv: Condvar::new(),
            fail_calls: AtomicUsize::new(0),
            fail_permanently: false,
            transient: Mutex::new(HashMap::new()),
            permanent: HashSet::new(),
            panic_on: None,
        }
    }

    fn shut(self) -> Self {
        *self.gate.lock().unwrap() = false;
        self
    }

    fn open(&self) {
        *self.gate.lock().unwrap() = true;
        self.gate_cv.notify_all();
    }

    fn calls(&self) -> Vec<Vec<u64>> {
        self.calls.lock().unwrap().clone()
    }
}

impl BatchSink for TestSink {
    type Error = io::Error;

    fn write_batch(&self, items: &[(u64, Vec<f32>)]) -> Result<Vec<ItemFailure>, io::Error> {
        self.calls.lock().unwrap().push(items.iter().map(|(id, _)| *id).collect());
        let mut open = self.gate.lock().unwrap();
        while !*open {
            open = self.gate_cv.wait(open).unwrap();
        }
        drop(open);
        if items.iter().any(|(id, _)| Some(*id) == self.panic_on) {
            panic!("test sink panics on purpose");
        }
        if self.fail_calls.load(Ordering::SeqCst) > 0 {
            self.fail_calls.fetch_sub(1, Ordering::SeqCst);
            let kind = if self.fail_permanently { io::ErrorKind::InvalidData } else { io::ErrorKind::Other };
            return Err(io::Error::new(kind, "disk busy"));
        }
        let mut failures = Vec::new();
        let mut pass: Vec<(usize, (u64, &[f32]))> = Vec::new();
        let mut transient = self.transient.lock().unwrap();
        for (pos, (id, v)) in items.iter().enumerate() {
            if let Some(left @ 1..) = transient.get_mut(id) {
                *left -= 1;
                let e = io::Error::new(io::ErrorKind::WouldBlock, "try again");
                failures.push(ItemFailure { position: pos, error: ItemError::transient(e) });
            } else if self.permanent.contains(id) {
                let e = io::Error::new(io::ErrorKind::PermissionDenied, "forbidden id");
                failures.push(ItemFailure { position: pos, error: ItemError::permanent(e) });
            } else {
                pass.push((pos, (*id, v.as_slice())));
            }
        }
        let sub: Vec<(u64, &[f32])> = pass.iter().map(|(_, item)| *item).collect();
        let report = self
            .index
            .insert_batch(&sub, &BatchOptions::new().mode(BatchMode::BestEffort))
            .map_err(io::Error::other)?;
        for f in report.failures {
            failures.push(ItemFailure { position: pass[f.index].0, error: ItemError::Batch(f.error) });
        }
        Ok(failures)
    }

    fn is_transient(&self, error: &io::Error) -> bool {
        error.kind() != io::ErrorKind::InvalidData
    }
}

fn opts(max_batch: usize, max_delay: Duration, queue_capacity: usize) -> WriterOptions {
    WriterOptions {
        max_batch,
        max_delay,
        queue_capacity,
        max_retries: 5,
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        ..Default::default()
    }
}

fn check_accounting(w: &BatchWriter<impl BatchSink>) {
    let m = w.metrics();
    let settled = m.items_written + m.items_rejected + m.items_failed;
    assert_eq!(m.submitted, settled + m.queue_depth as u64 + m.in_flight as u64, "{m:?}");
}

#[test]
fn backpressure_full_then_drains() {
    let w = Arc::new(BatchWriter::start(TestSink::new().shut(), opts(4, Duration::ZERO, 8)).unwrap());
    let first = w.try_submit(0, vector(0)).unwrap();
    eventually("the first batch to reach the sink", || w.sink().calls().len() == 1);
    // The writer is stuck in the sink: the queue fills to capacity, then pushes back.
    let mut handles: Vec<_> = (1..=8).map(|id| w.try_submit(id, vector(id)).unwrap()).collect();
    let err = w.try_submit(9, vector(9)).unwrap_err();
    assert!(matches!(err, SubmitError::Full { id: 9, .. }) && err.is_full());
    assert_eq!(err.into_item(), (9, vector(9)));
    let err = w.submit_blocking(9, vector(9), Some(Duration::from_millis(20))).unwrap_err();
    assert!(err.is_full());
    let m = w.metrics();
    assert_eq!((m.queue_depth, m.in_flight, m.submitted), (8, 1, 9));
    assert!(!first.is_done());
    check_accounting(&w);

    // A producer waiting for room gets in once the sink moves.
    let waiting = {
        let w = w.clone();
        std::thread::spawn(move || w.submit(9, vector(9)).unwrap().wait())
    };
    w.sink().open();
    assert!(matches!(first.wait_timeout(PATIENCE), Some(Ok(()))));
    for h in handles.drain(..) {
        h.wait().unwrap();
    }
    waiting.join().unwrap().unwrap();
    assert_eq!(w.sink().index.len(), 10);
    assert_eq!(w.health(), Health::Healthy);
    // Room again.
    w.try_submit(10, vector(10)).unwrap().wait().unwrap();
    w.close();
    check_accounting(&w);
}

#[test]
fn flush_by_size() {
    let w = BatchWriter::start(TestSink::new(), opts(10, LONG, 100)).unwrap();
    let early: Vec<_> = (0..9).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    // Nine items behind a one-hour delay stay queued.
    std::thread::sleep(Duration::from_millis(50));
    assert!(early.iter().all(|h| !h.is_done()));
    assert!(w.sink().calls().is_empty());
    assert_eq!(w.metrics().queue_depth, 9);
    // The tenth completes the batch.
    let last = w.submit(9, vector(9)).unwrap();
    for h in early.iter().chain([&last]) {
        assert!(matches!(h.wait_timeout(PATIENCE), Some(Ok(()))));
    }
    assert_eq!(w.sink().calls(), vec![(0..10).collect::<Vec<u64>>()]);
    // And again: exactly max_batch per batch.
    let next: Vec<_> = (10..30).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    for h in &next {
        h.wait().unwrap();
    }
    let calls = w.sink().calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.len() == 10));
    let m = w.metrics();
    assert_eq!((m.batch_sizes.min, m.batch_sizes.max, m.batch_sizes.count), (10, 10, 3));
    assert_eq!(m.items_written, 30);
}

#[test]
fn flush_by_time() {
    let w = BatchWriter::start(TestSink::new(), opts(1000, Duration::from_millis(20), 100)).unwrap();
    let h = w.submit(7, vector(7)).unwrap();
    assert_eq!(h.id(), 7);
    assert!(matches!(h.wait_timeout(PATIENCE), Some(Ok(()))));
    assert_eq!(w.sink().calls(), vec![vec![7]]);
    // A second lone item flushes on its own delay too.
    let h = w.submit(8, vector(8)).unwrap();
    assert!(matches!(h.wait_timeout(PATIENCE), Some(Ok(()))));
    assert_eq!(w.sink().calls(), vec![vec![7], vec![8]]);
    assert!(w.sink().index.contains(7) && w.sink().index.contains(8));
}

#[test]
fn completions_carry_their_own_item_error() {
    let sink = TestSink::new();
    sink.index.insert(100, &vector(100)).unwrap();
    let w = BatchWriter::start(sink, opts(6, LONG, 100)).unwrap();
    let ok = w.submit(1, vector(1)).unwrap();
    let nan = w.submit(2, vec![1.0, f32::NAN, 0.0, 0.0]).unwrap();
    let short = w.submit(3, vec![1.0, 2.0, 3.0]).unwrap();
    let in_index = w.submit(100, vector(5)).unwrap();
    let in_batch = w.submit(1, vector(6)).unwrap();
    let ok2 = w.submit(5, vector(5)).unwrap();
    ok.wait().unwrap();
    ok2.wait().unwrap();
    let rejected = |h: &hnsw_batch::Completion| match h.wait() {
        Err(WriteError::Rejected(ItemError::Batch(e))) => e,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert!(matches!(rejected(&nan), BatchError::InvalidVector { id: 2, .. }));
    assert!(matches!(rejected(&short), BatchError::DimensionMismatch { id: 3, expected: 4, actual: 3, .. }));
    assert!(matches!(rejected(&in_index), BatchError::DuplicateId { id: 100, first_index: None, .. }));
    // The duplicate of an earlier submission in the same batch: the earlier item holds the id.
    assert!(matches!(rejected(&in_batch), BatchError::DuplicateId { id: 1, first_index: None, .. }));
    // Each producer submitted one item: its error names no position in the writer's batch.
    for h in [&nan, &short, &in_index, &in_batch] {
        assert_eq!(rejected(h).index(), Some(0));
    }
    for (h, want) in [
        (&in_index, "item rejected: duplicate id 100 (already in the index)"),
        (&in_batch, "item rejected: duplicate id 1 (already in the index)"),
        (&short, "item rejected: dimension mismatch: index has dimension 4, vector has 3"),
        (&nan, "item rejected: non-finite value NaN at component 1"),
    ] {
        assert_eq!(h.wait().unwrap_err().to_string(), want);
    }
    // The first id 1 keeps its vector.
    assert_eq!(w.sink().index.get(1), Some(vector(1)));
    // Permanent errors are not retried, and do not make the writer unhealthy.
    assert_eq!(w.sink().calls().len(), 1);
    let m = w.metrics();
    assert_eq!((m.items_written, m.items_rejected, m.items_failed, m.retries), (2, 4, 0, 0));
    assert_eq!(w.health(), Health::Healthy);
}

#[test]
fn whole_batch_transient_failure_is_retried() {
    let sink = TestSink::new();
    sink.fail_calls.store(3, Ordering::SeqCst);
    let w = BatchWriter::start(sink, opts(5, LONG, 100)).unwrap();
    assert_eq!(w.health(), Health::Healthy);
    let hs: Vec<_> = (0..5).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    for h in &hs {
        h.wait().unwrap();
    }
    let calls = w.sink().calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| *c == (0..5).collect::<Vec<u64>>()));
    let m = w.metrics();
    assert_eq!((m.batch_failures, m.batches_written, m.retries, m.items_retried), (3, 1, 3, 15));
    assert_eq!(m.items_written, 5);
    assert_eq!(m.batch_sizes.count, 4);
    assert!(matches!(w.health(), Health::Degraded { retrying: false, since_failure: Some(_) }));
}

#[test]
fn whole_batch_failure_gives_up_after_max_retries() {
    let sink = TestSink::new();
    sink.fail_calls.store(1000, Ordering::SeqCst);
    let w = BatchWriter::start(sink, WriterOptions { max_retries: 2, ..opts(3, LONG, 100) }).unwrap();
    let hs: Vec<_> = (0..3).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    for h in &hs {
        match h.wait() {
            Err(WriteError::Failed { attempts: 3, error }) => {
                assert!(error.to_string().contains("disk busy"))
            }
            other => panic!("expected Failed after 3 attempts, got {other:?}"),
        }
    }
    assert_eq!(w.sink().calls().len(), 3);
    let m = w.metrics();
    assert_eq!((m.items_failed, m.batch_failures, m.retries, m.items_written), (3, 3, 2, 0));
    assert!(matches!(w.health(), Health::Degraded { .. }));
    assert!(w.sink().index.is_empty());

    // A whole-batch failure the sink calls permanent is not retried at all.
    let mut sink = TestSink::new();
    sink.fail_permanently = true;
    sink.fail_calls.store(1, Ordering::SeqCst);
    let w = BatchWriter::start(sink, opts(2, LONG, 100)).unwrap();
    let hs: Vec<_> = (0..2).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    for h in &hs {
        assert!(matches!(h.wait(), Err(WriteError::Failed { attempts: 1, .. })));
    }
    assert_eq!(w.sink().calls().len(), 1);
    assert_eq!(w.metrics().retries, 0);
}

#[test]
fn transient_items_are_retried_alone_and_permanent_ones_never() {
    let mut sink = TestSink::new();
    sink.transient = Mutex::new(HashMap::from([(2, 2), (4, 1), (6, 100)]));
    sink.permanent = HashSet::from([3]);
    let w = BatchWriter::start(sink, WriterOptions { max_retries: 2, ..opts(6, LONG, 100) }).unwrap();
    let hs: HashMap<u64, _> = (1..=6).map(|id| (id, w.submit(id, vector(id)).unwrap())).collect();
    for id in [1, 2, 4, 5] {
        hs[&id].wait().unwrap_or_else(|e| panic!("item {id}: {e}"));
    }
    assert!(matches!(hs[&3].wait(), Err(WriteError::Rejected(ItemError::Permanent(_)))));
    match hs[&6].wait() {
        Err(WriteError::Failed { attempts: 3, error }) => assert!(error.to_string().contains("try again")),
        other => panic!("item 6: {other:?}"),
    }
    // Only the transient failures go round again, in smaller batches.
    assert_eq!(w.sink().calls(), vec![vec![1, 2, 3, 4, 5, 6], vec![2, 4, 6], vec![2, 6]]);
    let m = w.metrics();
    assert_eq!((m.items_written, m.items_rejected, m.items_failed), (4, 1, 1));
    assert_eq!((m.retries, m.items_retried, m.batch_failures), (2, 5, 0));
    let ids: HashSet<u64> = w.sink().index.ids().into_iter().collect();
    assert_eq!(ids, HashSet::from([1, 2, 4, 5]));
}

#[test]
fn metrics_add_up() {
    let w = Arc::new(BatchWriter::start(TestSink::new(), opts(32, Duration::from_millis(2), 64)).unwrap());
    let producers: Vec<_> = (0..3u64)
        .map(|p| {
            let w = w.clone();
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|i| {
                        let id = p * 100 + i;
                        let v = if id % 10 == 0 { vec![f32::NAN; DIM] } else { vector(id) };
                        w.submit(id, v).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    // Snapshots taken while producers run always account for every item.
    for _ in 0..50 {
        check_accounting(&w);
        std::thread::sleep(Duration::from_micros(200));
    }
    let handles: Vec<_> = producers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let ok = handles.iter().filter(|h| h.wait().is_ok()).count();
    assert_eq!(ok, 270);
    let m = w.metrics();
    assert_eq!((m.submitted, m.items_written, m.items_rejected, m.items_failed), (300, 270, 30, 0));
    assert_eq!((m.queue_depth, m.in_flight, m.retries, m.batch_failures), (0, 0, 0, 0));
    let b = &m.batch_sizes;
    assert_eq!(b.count, m.batches_written);
    assert_eq!(b.items, 300);
    assert_eq!(b.histogram.iter().sum::<u64>(), b.count);
    assert!(b.min >= 1 && b.max <= 32 && b.min as f64 <= b.mean && b.mean <= b.max as f64);
    assert_eq!(m.batches_written, w.sink().calls().len() as u64);
    let f = m.flush_latency;
    assert_eq!(f.samples as u64, b.count);
    assert!(f.p50 <= f.p95 && f.p95 <= f.p99 && f.p99 <= f.max);
    let a = m.ack_latency;
    assert_eq!(a.samples, 300);
    assert!(a.p50 <= a.p95 && a.p95 <= a.p99 && a.p99 <= a.max);
}

#[test]
fn close_flushes_everything_and_later_submits_fail() {
    let w = BatchWriter::start(TestSink::new(), opts(1000, LONG, 1000)).unwrap();
    let hs: Vec<_> = (0..100).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    assert!(hs.iter().all(|h| !h.is_done()));
    w.close();
    // Resolved by the time close returns, without waiting.
    assert!(hs.iter().all(|h| matches!(h.try_result(), Some(Ok(())))));
    assert_eq!(w.sink().index.len(), 100);
    assert!(w.is_closed());
    assert_eq!(w.health(), Health::Stopped);
    assert!(matches!(w.try_submit(200, vector(200)), Err(SubmitError::Closed { id: 200, .. })));
    assert!(matches!(w.submit(201, vector(201)), Err(SubmitError::Closed { id: 201, .. })));
    let err = w.submit_blocking(202, vector(202), None).unwrap_err();
    assert!(!err.is_full());
    assert_eq!(err.into_item(), (202, vector(202)));
    w.close(); // twice is fine
    let m = w.metrics();
    assert_eq!((m.submitted, m.items_written, m.queue_depth, m.in_flight), (100, 100, 0, 0));
    assert_eq!(w.sink().calls().len(), 1);

    // Dropping the writer flushes too.
    let w = BatchWriter::start(Arc::new(TestSink::new()), opts(1000, LONG, 1000)).unwrap();
    let sink = w.sink().clone();
    let hs: Vec<_> = (0..10).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    drop(w);
    assert!(hs.iter().all(|h| matches!(h.try_result(), Some(Ok(())))));
    assert_eq!(sink.index.len(), 10);
}

#[test]
fn close_wakes_producers_waiting_for_room() {
    let w = Arc::new(BatchWriter::start(TestSink::new().shut(), opts(1, Duration::ZERO, 2)).unwrap());
    let first = w.submit(0, vector(0)).unwrap();
    eventually("the first batch to reach the sink", || w.sink().calls().len() == 1);
    let queued: Vec<_> = (1..=2).map(|id| w.try_submit(id, vector(id)).unwrap()).collect();
    let blocked = {
        let w = w.clone();
        std::thread::spawn(move || w.submit(3, vector(3)).map(|_| ()).map_err(|e| e.into_item().0))
    };
    let closer = {
        let w = w.clone();
        std::thread::spawn(move || w.close())
    };
    eventually("close to be requested", || w.is_closed());
    assert_eq!(blocked.join().unwrap(), Err(3));
    // close is still waiting for the stuck sink; everything queued is written once it moves.
    w.sink().open();
    closer.join().unwrap();
    first.wait().unwrap();
    for h in queued {
        assert!(matches!(h.try_result(), Some(Ok(()))));
    }
    assert_eq!(w.sink().index.len(), 3);
}

#[test]
fn many_producers_each_item_acknowledged_once() {
    const PRODUCERS: u64 = 8;
    const PER: u64 = 500;
    let w = Arc::new(BatchWriter::start(TestSink::new(), opts(128, Duration::from_millis(2), 256)).unwrap());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let w = w.clone();
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..PER)
                    .map(|i| w.submit(i * PRODUCERS + p, vector(i * PRODUCERS + p)).unwrap())
                    .collect();
                hs.iter().map(|h| h.wait().map(|()| h.id())).collect::<Result<Vec<u64>, _>>().unwrap()
            })
        })
        .collect();
    let mut acked: Vec<u64> = producers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    w.close();
    acked.sort_unstable();
    assert_eq!(acked, (0..PRODUCERS * PER).collect::<Vec<_>>());
    // Each id reached the sink exactly once.
    let mut sent: Vec<u64> = w.sink().calls().into_iter().flatten().collect();
    sent.sort_unstable();
    assert_eq!(sent, acked);
    let index = &w.sink().index;
    assert_eq!(index.len(), (PRODUCERS * PER) as usize);
    assert!(acked.iter().all(|&id| index.contains(id)));
    index.check_integrity().unwrap();
    let m = w.metrics();
    assert_eq!((m.submitted, m.items_written), (PRODUCERS * PER, PRODUCERS * PER));
    assert!(m.batch_sizes.max <= 128);
}

#[test]
fn sink_panic_stops_the_writer() {
    let mut sink = TestSink::new();
    sink.panic_on = Some(13);
    let w = BatchWriter::start(sink, opts(1, Duration::ZERO, 10)).unwrap();
    w.submit(1, vector(1)).unwrap().wait().unwrap();
    let h = w.submit(13, vector(13)).unwrap();
    assert!(matches!(h.wait(), Err(WriteError::SinkPanicked)));
    eventually("the writer to stop", || w.health() == Health::Stopped);
    assert!(matches!(w.submit(2, vector(2)), Err(SubmitError::Closed { .. })));
    w.close();
    let m = w.metrics();
    assert_eq!((m.items_written, m.items_failed, m.batch_failures), (1, 1, 1));
    check_accounting(&w);
}

#[test]
fn in_memory_index_is_a_sink() {
    let index = Arc::new(Index::new(IndexConfig::new(DIM, Metric::Cosine)).unwrap());
    let w = BatchWriter::start(index.clone(), opts(8, Duration::from_millis(1), 16)).unwrap();
    let ok: Vec<_> = (0..20).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    let zero = w.submit(99, vec![0.0; DIM]).unwrap();
    assert!(ok.iter().all(|h| h.wait().is_ok()));
    assert!(matches!(
        zero.wait(),
        Err(WriteError::Rejected(ItemError::Batch(BatchError::InvalidVector { id: 99, .. })))
    ));
    assert_eq!(index.len(), 20);
    assert_eq!(index.search(&vector(3), 1, 32).unwrap()[0].id, 3);
}

#[test]
fn options_are_checked() {
    let bad = |o: WriterOptions| match BatchWriter::start(TestSink::new(), o) {
        Err(StartError::InvalidOption { name, .. }) => name,
        other => panic!("expected InvalidOption, got {:?}", other.map(|_| ())),
    };
    assert_eq!(bad(WriterOptions { max_batch: 0, ..Default::default() }), "max_batch");
    assert_eq!(bad(WriterOptions { queue_capacity: 0, ..Default::default() }), "queue_capacity");
    let o = WriterOptions {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..Default::default()
    };
    let waits: Vec<u128> = [0, 1, 2, 3, 40, u32::MAX].iter().map(|&r| o.backoff(r).as_millis()).collect();
    assert_eq!(waits, vec![10, 20, 40, 50, 50, 50]);
    // A queue smaller than a batch still flushes (when full).
    let w = BatchWriter::start(TestSink::new(), opts(100, LONG, 3)).unwrap();
    let hs: Vec<_> = (0..3).map(|id| w.submit(id, vector(id)).unwrap()).collect();
    assert!(hs.iter().all(|h| matches!(h.wait_timeout(PATIENCE), Some(Ok(())))));
}

mod durable {
    use super::*;
    use hnsw_batch::persist::{Backend, DurableIndex, DurableOptions, FailMode, MemBackend};

    fn open(fs: &Arc<MemBackend>) -> DurableIndex {
        let backend: Arc<dyn Backend> = fs.clone();
        DurableIndex::open_with(backend, "/db", IndexConfig::new(DIM, Metric::L2), DurableOptions::new())
            .unwrap()
    }

    #[test]
    fn io_fault_is_retried_and_acknowledged_items_survive_a_crash() {
        let fs = Arc::new(MemBackend::new());
        let w = BatchWriter::start(open(&fs), opts(8, LONG, 100)).unwrap();
        w.submit(0, vector(0)).unwrap(); // creates the log on the first batch
        let first: Vec<_> = (1..8).map(|id| w.submit(id, vector(id)).unwrap()).collect();
        assert!(first.iter().all(|h| h.wait().is_ok()));
        // The next backend operation (the batch's append) fails once: the batch is retried.
        fs.fail_after(0, FailMode::Once);
        let second: Vec<_> = (8..16).map(|id| w.submit(id, vector(id)).unwrap()).collect();
        assert!(second.iter().all(|h| h.wait().is_ok()));
        let bad = w.submit(16, vec![f32::INFINITY; DIM]).unwrap();
        w.close();
        assert!(matches!(
            bad.wait(),
            Err(WriteError::Rejected(ItemError::Batch(BatchError::InvalidVector { .. })))
        ));
        let m = w.metrics();
        assert_eq!((m.items_written, m.batch_failures, m.retries), (16, 1, 1));
        drop(w);
        fs.crash();
        let db = open(&fs);
        assert_eq!(db.len(), 16);
        assert!((0..16).all(|id| db.get(id) == Some(vector(id))));
    }

    #[test]
    fn persistent_io_failure_fails_items_after_retries() {
        let fs = Arc::new(MemBackend::new());
        let w = BatchWriter::start(
            open(&fs),
            WriterOptions { max_retries: 2, ..opts(4, Duration::from_millis(1), 100) },
        )
        .unwrap();
        fs.fail_after(0, FailMode::Forever);
        let hs: Vec<_> = (0..4).map(|id| w.submit(id, vector(id)).unwrap()).collect();
        for h in &hs {
            assert!(matches!(h.wait(), Err(WriteError::Failed { attempts: 3, .. })));
        }
        assert!(matches!(w.health(), Health::Degraded { .. }));
        assert!(w.sink().is_empty());
        fs.clear_faults();
        w.submit(10, vector(10)).unwrap().wait().unwrap();
        drop(w);
        fs.crash();
        let db = open(&fs);
        assert_eq!(db.ids(), vec![10]);
    }
}

// ----- items with metadata and expiry ------------------------------------------------------------

fn lang(i: u64) -> hnsw_batch::Metadata {
    let mut m = hnsw_batch::Metadata::new();
    m.insert("lang".into(), if i.is_multiple_of(2) { "en" } else { "fr" }.into());
    m.insert("n".into(), (i as i64).into());
    m
}

/// Items submitted with metadata and expiry reach a durable sink whole: stored, logged (they
/// survive a reopen) and filterable; metadata over the limits is rejected alone; plain items
/// in the same batches still go in.
#[test]
fn submitted_items_carry_metadata_and_expiry_into_a_durable_index() {
    use hnsw_batch::items::Item;
    use hnsw_batch::persist::{DurableIndex, DurableOptions, MemBackend};
    use hnsw_batch::{Expiry, Filter, InvalidReason};
    let fs = Arc::new(MemBackend::new());
    let cfg = IndexConfig::new(DIM, Metric::L2);
    let db = DurableIndex::open_with(fs.clone(), "db", cfg.clone(), DurableOptions::new()).unwrap();
    let opts = WriterOptions { max_batch: 16, max_delay: Duration::from_millis(5), ..Default::default() };
    let writer = BatchWriter::start(db, opts).unwrap();
    let expiry = |i: u64| if i.is_multiple_of(5) { Expiry::At(1_000 + i) } else { Expiry::Never };
    let mut handles = Vec::new();
    for i in 0..100u64 {
        let h = if i.is_multiple_of(3) {
            writer.submit(i, vector(i)).unwrap()
        } else {
            writer.submit_item(Item::new(i, vector(i)).metadata(lang(i)).expiry(expiry(i))).unwrap()
        };
        handles.push(h);
    }
    let mut reserved = hnsw_batch::Metadata::new();
    reserved.insert("$bad".into(), 1.into());
    let bad = writer.submit_item(Item::new(500, vector(500)).metadata(reserved)).unwrap();
    assert!(handles.iter().all(|h| h.wait().is_ok()));
    match bad.wait() {
        Err(WriteError::Rejected(ItemError::Batch(BatchError::InvalidVector {
            id: 500,
            reason: InvalidReason::Metadata(_),
            ..
        }))) => {}
        other => panic!("bad metadata: {other:?}"),
    }
    writer.close();
    let check = |db: &DurableIndex, when: &str| {
        // A clock before every expiry, so the expiring items are visible.
        db.set_clock(Arc::new(hnsw_batch::ManualClock::new(0)));
        assert_eq!(db.len(), 100, "{when}");
        assert!(!db.contains(500), "{when}");
        for i in 0..100u64 {
            let (meta, exp) = if i.is_multiple_of(3) {
                (hnsw_batch::Metadata::new(), Expiry::Never)
            } else {
                (lang(i), expiry(i))
            };
            assert_eq!(db.get_metadata(i), Some(meta), "{when}: metadata of {i}");
            assert_eq!(db.get_expiry(i), Some(exp), "{when}: expiry of {i}");
        }
        let en = (0..100u64).filter(|i| !i.is_multiple_of(3) && i.is_multiple_of(2)).count();
        assert_eq!(db.count(&Filter::eq("lang", "en")).unwrap(), en, "{when}");
    };
    check(writer.sink(), "in memory");
    drop(writer);
    let db = DurableIndex::open_with(fs, "db", cfg, DurableOptions::new()).unwrap();
    check(&db, "after reopen");
}

/// An in-memory index stores submitted metadata too; a sink that only implements
/// `write_batch` rejects items with metadata or expiry (permanently, without dropping the
/// metadata silently) and still writes the plain items of the same batch.
#[test]
fn sinks_without_side_data_reject_items_that_carry_it() {
    use hnsw_batch::items::Item;
    use hnsw_batch::Expiry;
    let index = Arc::new(Index::new(IndexConfig::new(DIM, Metric::L2)).unwrap());
    let w = BatchWriter::start(index.clone(), WriterOptions::default()).unwrap();
    w.submit_item(Item::new(1, vector(1)).metadata(lang(1))).unwrap().wait().unwrap();
    w.close();
    assert_eq!(index.get_metadata(1), Some(lang(1)));

    let sink = Arc::new(TestSink::new().shut());
    let w =
        BatchWriter::start(sink.clone(), WriterOptions { max_delay: LONG, ..Default::default() }).unwrap();
    let plain = w.submit(1, vector(1)).unwrap();
    let with_meta = w.submit_item(Item::new(2, vector(2)).metadata(lang(2))).unwrap();
    let expiring = w.submit_item(Item::new(3, vector(3)).expiry(Expiry::At(5))).unwrap();
    let plain_item = w.submit_item(Item::new(4, vector(4))).unwrap();
    sink.open();
    w.close();
    assert!(plain.wait().is_ok() && plain_item.wait().is_ok());
    for h in [with_meta, expiring] {
        assert!(matches!(h.wait(), Err(WriteError::Rejected(ItemError::SideDataUnsupported))));
    }
    assert_eq!(sink.calls(), vec![vec![1, 4]], "only the plain items reach write_batch");
    let mut ids = sink.index.ids();
    ids.sort_unstable();
    assert_eq!(ids, [1, 4]);
    let m = w.metrics();
    assert_eq!((m.items_written, m.items_rejected), (2, 2));
}

/// A full queue hands the whole item back, metadata and expiry included.
#[test]
fn a_refused_submit_returns_the_metadata() {
    use hnsw_batch::items::Item;
    use hnsw_batch::Expiry;
    let sink = Arc::new(TestSink::new().shut());
    let opts = WriterOptions { queue_capacity: 1, max_batch: 1, max_delay: LONG, ..Default::default() };
    let w = BatchWriter::start(sink.clone(), opts).unwrap();
    let _first = w.submit(1, vector(1)).unwrap();
    eventually("the first item taken", || sink.calls().len() == 1);
    let _second = w.submit(2, vector(2)).unwrap();
    let item = Item::new(3, vector(3)).metadata(lang(3)).expiry(Expiry::At(9));
    let err = w.try_submit_item(item.clone()).unwrap_err();
    assert!(err.is_full(), "{err}");
    assert_eq!(err.into_full_item(), item);
    sink.open();
    w.close();
    let err = w.submit_item(item.clone()).unwrap_err();
    assert!(matches!(err, SubmitError::Closed { id: 3, .. }));
    assert_eq!(err.into_full_item(), item);
}
