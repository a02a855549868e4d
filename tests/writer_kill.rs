//! Crash consistency with real process kills: a child process ingests through a
//! [`BatchWriter`] into a [`DurableIndex`] on the real filesystem and prints each id whose
//! completion resolved `Ok`; the parent kills it with SIGKILL at a random moment, reopens the
//! directory, and checks that every acknowledged id is there with its vector, that nothing else
//! is there but submitted items, and that the graph passes its integrity check. Repeated for
//! many kills, each child resuming from what the previous ones left (recovery itself gets
//! killed too).
//!
//! The child is this test binary, re-run with `HNSW_KILL_CHILD=<dir>` on the `kill_child` test.
#![allow(missing_docs)]

use hnsw_batch::persist::{DurableIndex, DurableOptions};
use hnsw_batch::writer::{BatchWriter, WriterOptions};
use hnsw_batch::{IndexConfig, Metric};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIM: usize = 8;
const KILLS: usize = 70;
/// Kills that must land while the child ingests (the others may land during recovery).
const KILLS_INGESTING: usize = 50;
const PRODUCERS: u64 = 4;
/// Ids of child `round` are `round * ROUND_IDS + producer * PRODUCER_IDS + i`.
const ROUND_IDS: u64 = 1 << 32;
const PRODUCER_IDS: u64 = 1 << 24;
const ENV: &str = "HNSW_KILL_CHILD";
const ROUND_ENV: &str = "HNSW_KILL_ROUND";

fn config() -> IndexConfig {
    IndexConfig::new(DIM, Metric::L2).m(8).ef_construction(32)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64).map(|j| (splitmix(id * DIM as u64 + j) >> 40) as f32 / (1u64 << 24) as f32).collect()
}

fn options() -> DurableOptions {
    // Small logs, so children are also killed inside automatic checkpoints.
    DurableOptions::new().checkpoint_log_bytes(Some(96 << 10))
}

/// The child: ingest forever (until killed), printing `A <id>` for each acknowledged id.
fn child(dir: &Path, round: u64) {
    let db = DurableIndex::open(dir, config(), options()).expect("child opens the index");
    let opts = WriterOptions {
        max_batch: 64,
        max_delay: Duration::from_millis(1),
        queue_capacity: 256,
        ..Default::default()
    };
    let writer = Arc::new(BatchWriter::start(db, opts).expect("writer starts"));
    println!("OPEN");
    std::io::stdout().flush().unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let base = round * ROUND_IDS + p * PRODUCER_IDS;
                for chunk in 0u64.. {
                    let handles: Vec<_> = (0..16)
                        .map(|i| {
                            let id = base + chunk * 16 + i;
                            writer.submit(id, vector(id)).expect("submit")
                        })
                        .collect();
                    for h in handles {
                        h.wait().expect("write");
                        // One write per line, flushed before the next ack is printed.
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "A {}", h.id()).unwrap();
                        out.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for p in producers {
        let _ = p.join();
    }
}

#[test]
fn kill_child() {
    // Only does something when run as the child of `acknowledged_writes_survive_kills`.
    if let Ok(dir) = std::env::var(ENV) {
        let round = std::env::var(ROUND_ENV).ok().and_then(|r| r.parse().ok()).unwrap_or(0);
        child(Path::new(&dir), round);
    }
}

/// Verifies the directory as a fresh process would see it.
fn verify(dir: &Path, acked: &HashSet<u64>, rounds: u64) {
    let db = DurableIndex::open(dir, config(), options()).expect("reopen after kill");
    for &id in acked {
        assert_eq!(db.get(id), Some(vector(id)), "acknowledged id {id} lost or changed");
    }
    for id in db.ids() {
        let (round, rest) = (id / ROUND_IDS, id % ROUND_IDS);
        assert!(round < rounds && rest / PRODUCER_IDS < PRODUCERS, "unknown id {id}");
        assert_eq!(db.get(id), Some(vector(id)), "id {id} holds a torn vector");
    }
    db.check_integrity().unwrap_or_else(|e| panic!("integrity after {rounds} kills: {e}"));
}

#[test]
fn acknowledged_writes_survive_kills() {
    let dir = std::env::temp_dir().join(format!("hnsw-writer-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashSet<u64> = HashSet::new();
    let mut seed = 0x5EED_u64 ^ u64::from(std::process::id());
    let (mut killed_running, mut killed_before_open) = (0usize, 0usize);
    let start = Instant::now();
    for round in 0..KILLS as u64 {
        let mut child = Command::new(&exe)
            .args(["kill_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(ENV, &dir)
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let (mut ids, mut opened) = (Vec::new(), false);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // A line cut by the kill has no newline: ignore it. (The harness may print its
                // own text on the line before `OPEN`.)
                let Some(text) = line.strip_suffix(b"\n") else { break };
                let text = String::from_utf8_lossy(text);
                if text.ends_with("OPEN") {
                    opened = true;
                    let _ = opened_tx.send(());
                } else if let Some(id) = text.strip_prefix("A ") {
                    ids.push(id.parse::<u64>().expect("ack line"));
                }
            }
            (ids, opened)
        });
        // Four kills in five land during ingestion, at a random moment after the child opened
        // the index; the fifth at a random moment after spawning, often inside recovery.
        seed = splitmix(seed);
        if round % 5 != 4 {
            opened_rx.recv_timeout(Duration::from_secs(30)).expect("child opens the index");
            std::thread::sleep(Duration::from_millis(seed % 100));
        } else {
            std::thread::sleep(Duration::from_millis(seed % 60));
        }
        let exited_early = child.try_wait().unwrap();
        assert!(exited_early.is_none(), "child {round} exited by itself: {exited_early:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        let (ids, opened) = reader.join().unwrap();
        if opened {
            killed_running += 1;
        } else {
            killed_before_open += 1;
        }
        acked.extend(ids);
        verify(&dir, &acked, round + 1);
    }
    eprintln!(
        "{KILLS} kills ({killed_running} while ingesting, {killed_before_open} before opening), \
         {} acknowledged ids, {:.1} s",
        acked.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(killed_running >= KILLS_INGESTING, "too few kills landed during ingestion: {killed_running}");
    assert!(!acked.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
