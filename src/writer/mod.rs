//! A batching writer for many producers, like a batched SQLite writer.
//!
//! Producers [`submit`](BatchWriter::submit) single items (or, with
//! [`submit_item`](BatchWriter::submit_item), items carrying metadata and an expiry) into a
//! bounded queue and get a [`Completion`] handle each; one background thread drains the queue into batches and writes
//! them through a [`BatchSink`] (an [`Index`](crate::Index) in memory, or a durable index), so
//! a durable sink pays one log append and one sync per batch instead of per item.
//!
//! - A batch is flushed when it reaches [`WriterOptions::max_batch`] items or when its oldest
//!   item has waited [`WriterOptions::max_delay`].
//! - Backpressure: [`try_submit`](BatchWriter::try_submit) returns [`SubmitError::Full`] when the
//!   queue is full; [`submit`](BatchWriter::submit) and
//!   [`submit_blocking`](BatchWriter::submit_blocking) wait for room.
//! - A batch that fails as a whole is retried with capped exponential backoff, up to
//!   [`WriterOptions::max_retries`] times. When only some items fail, the transient failures
//!   ([`ItemError::is_transient`]) are retried on their own, and the permanent ones (invalid
//!   vector, wrong dimension, duplicate id) complete with [`WriteError::Rejected`] at once.
//!   Retries (and their backoff) run on the background thread before it takes the next batch,
//!   so a failing sink slows intake and the bounded queue pushes back on producers.
//! - [`metrics`](BatchWriter::metrics) and [`health`](BatchWriter::health) report what the
//!   writer did and how it is doing.
//! - [`close`](BatchWriter::close), also run on drop, writes everything queued and stops the
//!   thread.

mod completion;
mod metrics;
mod sink;

pub use completion::Completion;
pub use metrics::{BatchSizeStats, Health, LatencyStats, WriterMetrics};
pub use sink::{BatchSink, DynError, ItemError, ItemFailure};

use crate::expiry::Expiry;
use crate::items::Item;
use crate::metadata::Metadata;
use completion::Ticket;
use metrics::Counters;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Settings of a [`BatchWriter`].
///
/// ```
/// use hnsw_batch::writer::WriterOptions;
/// use std::time::Duration;
/// let opts = WriterOptions { max_batch: 500, max_delay: Duration::from_millis(2), ..Default::default() };
/// assert_eq!(opts.queue_capacity, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Largest batch handed to the sink; a batch is flushed as soon as it is this large (or the
    /// queue is full). At least 1.
    pub max_batch: usize,
    /// Longest time an item waits in the queue for its batch to fill before it is flushed.
    pub max_delay: Duration,
    /// Items the queue holds before submits wait or fail with [`SubmitError::Full`]. At least 1.
    pub queue_capacity: usize,
    /// Retries of a failed write (of a whole batch, or of its transiently failed items) before
    /// the items fail with [`WriteError::Failed`].
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further retry of the same batch.
    pub backoff_initial: Duration,
    /// Cap on the wait between retries.
    pub backoff_max: Duration,
    /// How long after a failure [`BatchWriter::health`] reports [`Health::Degraded`].
    pub health_window: Duration,
}

impl Default for WriterOptions {
    /// 1000 items or 10 ms per batch, 10 000 queued items, 5 retries with backoff from 10 ms to
    /// 1 s, degraded for 30 s after a failure.
    fn default() -> Self {
        WriterOptions {
            max_batch: 1000,
            max_delay: Duration::from_millis(10),
            queue_capacity: 10_000,
            max_retries: 5,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            health_window: Duration::from_secs(30),
        }
    }
}

impl WriterOptions {
    /// The wait before retry number `retry` (0-based): `backoff_initial * 2^retry`, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.backoff_initial.checked_mul(factor).unwrap_or(Duration::MAX).min(self.backoff_max)
    }
}

/// Why [`BatchWriter::start`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// An option is out of range.
    #[error("invalid writer option `{name}`: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The background thread could not be spawned.
    #[error("cannot spawn the writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why a submit did not queue the item. Carries the item back (with its metadata and expiry),
/// so nothing is lost or copied.
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is full (after waiting, for the blocking submits with a timeout).
    Full {
        /// The item's id.
        id: u64,
        /// The item's vector.
        vector: Vec<f32>,
        /// The item's metadata, if it had any.
        metadata: Option<Metadata>,
        /// The item's expiry.
        expiry: Expiry,
    },
    /// The writer is closed or stopped.
    Closed {
        /// The item's id.
        id: u64,
        /// The item's vector.
        vector: Vec<f32>,
        /// The item's metadata, if it had any.
        metadata: Option<Metadata>,
        /// The item's expiry.
        expiry: Expiry,
    },
}

impl SubmitError {
    fn full(item: Item<Vec<f32>>) -> Self {
        SubmitError::Full { id: item.id, vector: item.vector, metadata: item.metadata, expiry: item.expiry }
    }

    fn closed(item: Item<Vec<f32>>) -> Self {
        SubmitError::Closed { id: item.id, vector: item.vector, metadata: item.metadata, expiry: item.expiry }
    }

    /// The id and vector of the item that was not queued (its metadata and expiry are dropped:
    /// see [`into_full_item`](Self::into_full_item)).
    pub fn into_item(self) -> (u64, Vec<f32>) {
        let item = self.into_full_item();
        (item.id, item.vector)
    }

    /// The whole item that was not queued, with its metadata and expiry.
    pub fn into_full_item(self) -> Item<Vec<f32>> {
        match self {
            SubmitError::Full { id, vector, metadata, expiry }
            | SubmitError::Closed { id, vector, metadata, expiry } => Item { id, vector, metadata, expiry },
        }
    }

    /// Whether the queue was full (rather than the writer closed).
    pub fn is_full(&self) -> bool {
        matches!(self, SubmitError::Full { .. })
    }
}

impl fmt::Debug for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, id, vector, metadata, expiry) = match self {
            SubmitError::Full { id, vector, metadata, expiry } => ("Full", id, vector, metadata, expiry),
            SubmitError::Closed { id, vector, metadata, expiry } => ("Closed", id, vector, metadata, expiry),
        };
        f.debug_struct(name)
            .field("id", id)
            .field("dim", &vector.len())
            .field("metadata_keys", &metadata.as_ref().map(|m| m.len()))
            .field("expiry", expiry)
            .finish()
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Full { id, .. } => write!(f, "writer queue full; item {id} not queued"),
            SubmitError::Closed { id, .. } => write!(f, "writer closed; item {id} not queued"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Why a submitted item was not written.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The sink rejected the item permanently (see [`ItemError::is_transient`]); not retried.
    ///
    /// A [`BatchError`](crate::BatchError) in it speaks of the producer's one item: its
    /// `index` is 0, never the item's position in the batch the writer formed, and a duplicate
    /// id has `first_index: None` (the id is held by an earlier submission, written or being
    /// written in the same batch). The message names no position: `item rejected: duplicate id
    /// 1 (already in the index)`.
    #[error("item rejected: {0}")]
    Rejected(ItemError),
    /// The write kept failing: transiently until the retries ran out, or permanently as a whole
    /// batch. `error` is the last failure.
    #[error("write failed after {attempts} attempt(s): {error}")]
    Failed {
        /// Sink calls that included the item.
        attempts: u32,
        /// The last failure.
        error: DynError,
    },
    /// The sink panicked while writing the item's batch; the writer stopped.
    #[error("the sink panicked while writing the item")]
    SinkPanicked,
    /// The writer stopped (after a sink panic) before writing the item.
    #[error("the writer stopped before writing the item")]
    Stopped,
}

/// An item waiting in the queue.
struct Pending {
    item: Item<Vec<f32>>,
    ticket: Ticket,
}

struct QueueState {
    items: VecDeque<Pending>,
    /// No more submits (close requested, or the writer stopped).
    closed: bool,
    /// The background thread has finished.
    stopped: bool,
    submitted: u64,
}

struct Shared {
    queue: Mutex<QueueState>,
    /// Signals the background thread: items arrived or close was requested.
    not_empty: Condvar,
    /// Signals producers and closers: room in the queue, or the writer closed or stopped.
    not_full: Condvar,
    counters: Mutex<Counters>,
    opts: WriterOptions,
    /// Queue length that triggers a flush: `max_batch`, or less if the queue cannot hold it.
    trigger: usize,
}

/// The batching writer: a bounded queue drained by one background thread into a [`BatchSink`].
///
/// All methods take `&self`; share the writer between producer threads with an [`Arc`].
///
/// ```
/// use hnsw_batch::writer::{BatchWriter, WriteError, WriterOptions};
/// use hnsw_batch::{Index, IndexConfig, Metric};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let index = Arc::new(Index::new(IndexConfig::new(2, Metric::L2))?);
/// let opts = WriterOptions { max_batch: 64, max_delay: Duration::from_millis(5), ..Default::default() };
/// let writer = Arc::new(BatchWriter::start(index.clone(), opts).expect("writer thread"));
///
/// // Four producers; each waits for its own items.
/// let producers: Vec<_> = (0..4u64)
///     .map(|p| {
///         let writer = writer.clone();
///         std::thread::spawn(move || {
///             let handles: Vec<_> = (0..100u64)
///                 .map(|i| writer.submit(p * 100 + i, vec![i as f32, p as f32]).unwrap())
///                 .collect();
///             handles.iter().all(|h| h.wait().is_ok())
///         })
///     })
///     .collect();
/// assert!(producers.into_iter().all(|t| t.join().unwrap()));
/// assert_eq!(index.len(), 400);
///
/// // A bad vector fails alone, with its error.
/// let bad = writer.submit(1000, vec![f32::NAN, 0.0]).unwrap();
/// assert!(matches!(bad.wait(), Err(WriteError::Rejected(_))));
///
/// writer.close();
/// let m = writer.metrics();
/// assert_eq!((m.submitted, m.items_written, m.items_rejected), (401, 400, 1));
/// assert!(writer.submit(1001, vec![0.0, 0.0]).is_err());
/// # Ok::<(), hnsw_batch::IndexError>(())
/// ```
pub struct BatchWriter<S: BatchSink> {
    shared: Arc<Shared>,
    sink: Arc<S>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl<S: BatchSink> fmt::Debug for BatchWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchWriter")
            .field("options", &self.shared.opts)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl<S: BatchSink> BatchWriter<S> {
    /// Checks `options` and starts the background thread writing into `sink`.
    pub fn start(sink: S, options: WriterOptions) -> Result<Self, StartError> {
        if options.max_batch == 0 {
            return Err(StartError::InvalidOption { name: "max_batch", reason: "must be at least 1" });
        }
        if options.queue_capacity == 0 {
            return Err(StartError::InvalidOption { name: "queue_capacity", reason: "must be at least 1" });
        }
        let trigger = options.max_batch.min(options.queue_capacity);
        let shared = Arc::new(Shared {
            queue: Mutex::new(QueueState {
                items: VecDeque::with_capacity(options.queue_capacity.min(1 << 16)),
                closed: false,
                stopped: false,
                submitted: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            counters: Mutex::new(Counters::new()),
            opts: options,
            trigger,
        });
        let sink = Arc::new(sink);
        let thread = {
            let (shared, sink) = (shared.clone(), sink.clone());
            std::thread::Builder::new()
                .name("hnsw-batch-writer".into())
                .spawn(move || run(&shared, &*sink))
                .map_err(StartError::Spawn)?
        };
        let thread_id = thread.thread().id();
        Ok(BatchWriter { shared, sink, thread: Mutex::new(Some(thread)), thread_id })
    }

    /// The sink the writer writes into.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The options the writer was started with.
    pub fn options(&self) -> &WriterOptions {
        &self.shared.opts
    }

    /// Queues an item without ever waiting: [`SubmitError::Full`] when the queue is full.
    pub fn try_submit(&self, id: u64, vector: Vec<f32>) -> Result<Completion, SubmitError> {
        self.try_submit_item(Item::new(id, vector))
    }

    /// Queues an item, returning at once when there is room and otherwise waiting until there
    /// is. Fails only with [`SubmitError::Closed`].
    pub fn submit(&self, id: u64, vector: Vec<f32>) -> Result<Completion, SubmitError> {
        self.submit_item(Item::new(id, vector))
    }

    /// Queues an item, waiting up to `timeout` (forever if `None`) for room:
    /// [`SubmitError::Full`] if the queue is still full then.
    pub fn submit_blocking(
        &self,
        id: u64,
        vector: Vec<f32>,
        timeout: Option<Duration>,
    ) -> Result<Completion, SubmitError> {
        self.submit_item_blocking(Item::new(id, vector), timeout)
    }

    /// [`try_submit`](Self::try_submit) for an item that may carry metadata and an expiry. The
    /// sink stores them with the vector ([`BatchSink::write_items`]): an [`Index`](crate::Index)
    /// or a [`DurableIndex`](crate::DurableIndex) keeps them (the durable index logs them in the
    /// same record), and metadata over the index's limits is a permanent rejection
    /// ([`WriteError::Rejected`]).
    pub fn try_submit_item(&self, item: Item<Vec<f32>>) -> Result<Completion, SubmitError> {
        self.enqueue(item, Some(Instant::now()))
    }

    /// [`submit`](Self::submit) for an item that may carry metadata and an expiry (see
    /// [`try_submit_item`](Self::try_submit_item)).
    ///
    /// ```
    /// use hnsw_batch::items::Item;
    /// use hnsw_batch::persist::{DurableIndex, DurableOptions, MemBackend};
    /// use hnsw_batch::writer::{BatchWriter, WriterOptions};
    /// use hnsw_batch::{Expiry, Filter, IndexConfig, Metadata, Metric};
    /// use std::sync::Arc;
    ///
    /// let cfg = IndexConfig::new(2, Metric::L2);
    /// let db = DurableIndex::open_with(Arc::new(MemBackend::new()), "db", cfg, DurableOptions::new())?;
    /// let writer = BatchWriter::start(db, WriterOptions::default()).expect("writer thread");
    /// let mut meta = Metadata::new();
    /// meta.insert("lang".into(), "en".into());
    /// let item = Item::new(1, vec![0.0, 1.0]).metadata(meta.clone()).expiry(Expiry::At(u64::MAX));
    /// writer.submit_item(item).unwrap().wait().unwrap();
    /// writer.close();
    /// let db = writer.sink();
    /// assert_eq!(db.get_metadata(1), Some(meta));
    /// assert_eq!(db.get_expiry(1), Some(Expiry::At(u64::MAX)));
    /// assert_eq!(db.count(&Filter::eq("lang", "en"))?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_item(&self, item: Item<Vec<f32>>) -> Result<Completion, SubmitError> {
        self.enqueue(item, None)
    }

    /// [`submit_blocking`](Self::submit_blocking) for an item that may carry metadata and an
    /// expiry (see [`try_submit_item`](Self::try_submit_item)).
    pub fn submit_item_blocking(
        &self,
        item: Item<Vec<f32>>,
        timeout: Option<Duration>,
    ) -> Result<Completion, SubmitError> {
        // A timeout too large for `Instant` waits forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        if timeout.is_some() && deadline.is_none() {
            return self.enqueue(item, None);
        }
        self.enqueue(item, deadline)
    }

    fn enqueue(&self, item: Item<Vec<f32>>, deadline: Option<Instant>) -> Result<Completion, SubmitError> {
        let sh = &*self.shared;
        let mut q = sh.queue.lock();
        loop {
            if q.closed {
                return Err(SubmitError::closed(item));
            }
            if q.items.len() < sh.opts.queue_capacity {
                break;
            }
            match deadline {
                Some(d) => {
                    if Instant::now() >= d || sh.not_full.wait_until(&mut q, d).timed_out() {
                        if q.closed {
                            return Err(SubmitError::closed(item));
                        }
                        if q.items.len() >= sh.opts.queue_capacity {
                            return Err(SubmitError::full(item));
                        }
                    }
                }
                None => sh.not_full.wait(&mut q),
            }
        }
        let (ticket, completion) = Ticket::new(item.id);
        q.items.push_back(Pending { item, ticket });
        q.submitted += 1;
        // The background thread needs waking only to start a deadline (first item) or to flush
        // a full batch; otherwise it is already waiting for the oldest item's deadline.
        let len = q.items.len();
        drop(q);
        if len == 1 || len >= sh.trigger {
            sh.not_empty.notify_one();
        }
        Ok(completion)
    }

    /// A consistent snapshot of the counters (see [`WriterMetrics`]).
    pub fn metrics(&self) -> WriterMetrics {
        let q = self.shared.queue.lock();
        let c = self.shared.counters.lock();
        c.snapshot(q.submitted, q.items.len())
    }

    /// [`Health::Stopped`] once closed; [`Health::Degraded`] while retrying or within
    /// [`WriterOptions::health_window`] of a failed sink call or an item given up on;
    /// [`Health::Healthy`] otherwise. Permanent per-item rejections are the submitter's
    /// problem, not the writer's, and do not count.
    pub fn health(&self) -> Health {
        if self.shared.queue.lock().closed {
            return Health::Stopped;
        }
        let c = self.shared.counters.lock();
        let since_failure = c.last_failure.map(|t| t.elapsed());
        let recent = since_failure.is_some_and(|d| d < self.shared.opts.health_window);
        if c.retrying || recent {
            Health::Degraded { retrying: c.retrying, since_failure }
        } else {
            Health::Healthy
        }
    }

    /// Whether the writer no longer accepts items.
    pub fn is_closed(&self) -> bool {
        self.shared.queue.lock().closed
    }

    /// Stops accepting items, writes everything queued (retries included), and stops the
    /// background thread. Returns once every submitted item is resolved. Producers waiting for
    /// room get [`SubmitError::Closed`]. Calling it again, from any thread, waits the same way.
    pub fn close(&self) {
        {
            let mut q = self.shared.queue.lock();
            q.closed = true;
        }
        self.shared.not_empty.notify_all();
        self.shared.not_full.notify_all();
        if std::thread::current().id() == self.thread_id {
            // Closed from the writer's own thread (a sink that owns its writer): the thread
            // exits after this batch; waiting for that here would never end.
            return;
        }
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            // The thread catches sink panics, so joining cannot fail in practice; if it did,
            // the dropped tickets have resolved every item with `Stopped`.
            let _ = h.join();
        }
        // Another closer may hold the handle: wait for the thread's exit signal, which its
        // exit guard sends even if it unwinds.
        let mut q = self.shared.queue.lock();
        while !q.stopped {
            self.shared.not_full.wait(&mut q);
        }
    }
}

impl<S: BatchSink> Drop for BatchWriter<S> {
    /// Runs [`BatchWriter::close`].
    fn drop(&mut self) {
        self.close();
    }
}

/// The background thread: batches until closed and drained, or until the sink panics.
fn run<S: BatchSink>(sh: &Shared, sink: &S) {
    let _exit = ExitGuard(sh);
    while let Some(batch) = next_batch(sh) {
        if write_with_retries(sh, sink, batch).is_err() {
            // The sink panicked: stop; the exit guard fails whatever is still queued.
            break;
        }
    }
}

/// When the background thread ends, however it ends: stops accepting items, fails whatever is
/// still queued (nothing, after a normal close) with [`WriteError::Stopped`], and marks the
/// writer stopped.
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let sh = self.0;
        let drained: Vec<Pending> = {
            let mut q = sh.queue.lock();
            q.closed = true;
            q.stopped = true;
            let drained: Vec<Pending> = q.items.drain(..).collect();
            sh.counters.lock().items_failed += drained.len() as u64;
            drained
        };
        sh.not_full.notify_all();
        for p in drained {
            p.ticket.complete(Err(WriteError::Stopped));
        }
    }
}

/// Waits for the next batch: `max_batch` items, the oldest item's deadline, or close. `None`
/// once closed and drained.
fn next_batch(sh: &Shared) -> Option<Vec<Pending>> {
    let mut q = sh.queue.lock();
    loop {
        let len = q.items.len();
        if len >= sh.trigger || (q.closed && len > 0) {
            break;
        }
        let Some(oldest) = q.items.front() else {
            if q.closed {
                return None;
            }
            sh.not_empty.wait(&mut q);
            continue;
        };
        match oldest.ticket.submitted.checked_add(sh.opts.max_delay) {
            Some(deadline) => {
                if Instant::now() >= deadline {
                    break;
                }
                sh.not_empty.wait_until(&mut q, deadline);
            }
            None => sh.not_empty.wait(&mut q),
        }
    }
    let n = q.items.len().min(sh.opts.max_batch);
    let batch: Vec<Pending> = q.items.drain(..n).collect();
    // Counted in flight under the queue lock, so a metrics snapshot sees each item exactly once.
    sh.counters.lock().in_flight += batch.len();
    drop(q);
    sh.not_full.notify_all();
    Some(batch)
}

/// One sink call for `items`, catching a panic: [`BatchSink::write_batch`] when no item carries
/// metadata or an expiry (the vectors are moved into the pairs it takes and back, not copied),
/// [`BatchSink::write_items`] otherwise.
fn write_once<S: BatchSink>(
    sink: &S,
    items: &mut Vec<Item<Vec<f32>>>,
) -> std::thread::Result<Result<Vec<ItemFailure>, S::Error>> {
    if items.iter().any(|it| it.metadata.is_some() || it.expiry != Expiry::Never) {
        return catch_unwind(AssertUnwindSafe(|| sink.write_items(items)));
    }
    let pairs: Vec<(u64, Vec<f32>)> = items.drain(..).map(|it| (it.id, it.vector)).collect();
    let result = catch_unwind(AssertUnwindSafe(|| sink.write_batch(&pairs)));
    items.extend(pairs.into_iter().map(|(id, vector)| Item::new(id, vector)));
    result
}

/// What becomes of one item after a sink call.
enum Fate {
    Written,
    Rejected(ItemError),
    Failed(DynError),
    Retry,
}

/// Writes one batch, retrying whole-batch and transient item failures with backoff. `Err` if
/// the sink panicked (every item of the batch is then resolved with `SinkPanicked`).
fn write_with_retries<S: BatchSink>(sh: &Shared, sink: &S, batch: Vec<Pending>) -> Result<(), ()> {
    let mut items: Vec<Item<Vec<f32>>> = Vec::with_capacity(batch.len());
    let mut tickets: Vec<Ticket> = Vec::with_capacity(batch.len());
    for p in batch {
        items.push(p.item);
        tickets.push(p.ticket);
    }
    let mut retry: u32 = 0;
    while !tickets.is_empty() {
        let n = tickets.len();
        let started = Instant::now();
        let result = write_once(sink, &mut items);
        let took = started.elapsed();
        let fates: Vec<Fate> = match result {
            Err(_) => {
                {
                    let mut c = sh.counters.lock();
                    c.record_call(n, took, false);
                    c.items_failed += n as u64;
                    c.in_flight = c.in_flight.saturating_sub(n);
                    c.retrying = false;
                }
                for t in tickets {
                    t.complete(Err(WriteError::SinkPanicked));
                }
                return Err(());
            }
            Ok(Err(e)) => {
                let transient = catch_unwind(AssertUnwindSafe(|| sink.is_transient(&e))).unwrap_or(false);
                if transient && retry < sh.opts.max_retries {
                    {
                        let mut c = sh.counters.lock();
                        c.record_call(n, took, false);
                        c.retrying = true;
                    }
                    std::thread::sleep(sh.opts.backoff(retry));
                    retry += 1;
                    let mut c = sh.counters.lock();
                    c.retries += 1;
                    c.items_retried += n as u64;
                    continue;
                }
                sh.counters.lock().record_call(n, took, false);
                let error: DynError = Arc::new(e);
                (0..n).map(|_| Fate::Failed(error.clone())).collect()
            }
            Ok(Ok(failures)) => {
                sh.counters.lock().record_call(n, took, true);
                let mut errors: Vec<Option<ItemError>> = vec![None; n];
                for f in failures {
                    if let Some(slot @ None) = errors.get_mut(f.position) {
                        *slot = Some(f.error);
                    }
                }
                let can_retry = retry < sh.opts.max_retries;
                errors
                    .into_iter()
                    .map(|e| match e {
                        None => Fate::Written,
                        Some(e) if !e.is_transient() => Fate::Rejected(e),
                        Some(_) if can_retry => Fate::Retry,
                        Some(e) => Fate::Failed(Arc::new(e)),
                    })
                    .collect()
            }
        };
        // Resolve what is final; keep the transient failures for another attempt.
        let attempts = retry + 1;
        let mut again_items = Vec::new();
        let mut again_tickets = Vec::new();
        let mut done: Vec<(Ticket, Result<(), WriteError>)> = Vec::with_capacity(n);
        let (mut written, mut rejected, mut failed) = (0u64, 0u64, 0u64);
        for ((item, ticket), fate) in items.into_iter().zip(tickets).zip(fates) {
            match fate {
                Fate::Written => {
                    written += 1;
                    done.push((ticket, Ok(())));
                }
                Fate::Rejected(e) => {
                    rejected += 1;
                    done.push((ticket, Err(WriteError::Rejected(e.for_single_item()))));
                }
                Fate::Failed(error) => {
                    failed += 1;
                    done.push((ticket, Err(WriteError::Failed { attempts, error })));
                }
                Fate::Retry => {
                    again_items.push(item);
                    again_tickets.push(ticket);
                }
            }
        }
        {
            // Counters first, so a producer that sees its completion also sees it counted.
            let now = Instant::now();
            let mut c = sh.counters.lock();
            c.items_written += written;
            c.items_rejected += rejected;
            c.items_failed += failed;
            c.in_flight = c.in_flight.saturating_sub(done.len());
            if failed > 0 {
                c.last_failure = Some(now);
            }
            c.retrying = !again_tickets.is_empty();
            for (t, _) in &done {
                c.record_ack(now.saturating_duration_since(t.submitted));
            }
        }
        for (t, outcome) in done {
            t.complete(outcome);
        }
        if !again_tickets.is_empty() {
            {
                let mut c = sh.counters.lock();
                c.last_failure = Some(Instant::now());
            }
            std::thread::sleep(sh.opts.backoff(retry));
            retry += 1;
            let mut c = sh.counters.lock();
            c.retries += 1;
            c.items_retried += again_tickets.len() as u64;
        }
        items = again_items;
        tickets = again_tickets;
    }
    Ok(())
}
