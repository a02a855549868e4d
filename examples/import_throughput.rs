//! Times the library's file readers and writers on 100 000 × 384 vectors, so two versions of the
//! format code (hand-written or on the `csv`/`npyz` crates) can be compared on the same files.
//!
//! Usage: `cargo run --release --example import_throughput -- DIR [runs] [rows]`
//! Writes (once; kept for later runs) `DIR/single.csv` (`id,vector` with the components joined by
//! `;`, the CLI's default layout), `DIR/columns.csv` (`id,v0..v383`) and `DIR/vectors.npy`, from
//! a fixed seed; then times each writer (into a sink) and each reader `runs` times (default 5)
//! and prints the fastest run in thread CPU time (wall time where that is not available): a busy
//! machine only ever adds time, so the minimum is the least disturbed figure.
use hnsw_batch::io::{self, CsvOptions, CsvReader, ElementKind, NpyReader, Record, VecSet, VectorColumns};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_seconds;

const DIM: usize = 384;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: import_throughput DIR [runs] [rows]");
        std::process::exit(1);
    };
    let runs: usize = args.get(2).map_or(5, |s| s.parse().expect("runs"));
    let rows: usize = args.get(3).map_or(100_000, |s| s.parse().expect("rows"));
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).expect("create DIR");
    let single = dir.join("single.csv");
    let columns = dir.join("columns.csv");
    let npy = dir.join("vectors.npy");
    let single_opts = CsvOptions::default();
    let columns_opts = CsvOptions { vector: VectorColumns::Prefix("v".into()), ..CsvOptions::default() };

    let mut rng = StdRng::seed_from_u64(12);
    let records: Vec<Record> = (0..rows as u64)
        .map(|id| Record {
            id,
            vector: (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            ..Record::default()
        })
        .collect();
    let flat: Vec<f32> = records.iter().flat_map(|r| r.vector.iter().copied()).collect();
    let vectors = VecSet::new(DIM, flat, ElementKind::F32).expect("set");
    if !(single.exists() && columns.exists() && npy.exists()) {
        io::write_csv(&single, &records, &single_opts).expect("write single.csv");
        io::write_csv(&columns, &records, &columns_opts).expect("write columns.csv");
        io::write_npy(&npy, &vectors).expect("write vectors.npy");
    }

    // The fastest run by thread CPU time: on a shared machine wall time also counts the waits
    // for a core, which have nothing to do with the code measured.
    let best = |read: &dyn Fn() -> usize| {
        (0..runs)
            .map(|_| {
                let (t, c) = (Instant::now(), cpu_seconds());
                let n = read();
                let wall = t.elapsed();
                let cpu =
                    cpu_seconds().zip(c).map_or(wall, |(end, start)| Duration::from_secs_f64(end - start));
                (cpu, n)
            })
            .min()
            .expect("runs > 0")
    };
    // Writers into a sink: the formatting cost alone, not the disk's.
    let (t, n) = best(&|| io::write_csv_to(std::io::sink(), &records, &single_opts).expect("write"));
    report("write single.csv", &single, n, t);
    let (t, n) = best(&|| io::write_csv_to(std::io::sink(), &records, &columns_opts).expect("write"));
    report("write columns.csv", &columns, n, t);
    let (t, n) = best(&|| {
        io::write_npy_to(std::io::sink(), &vectors).expect("write");
        vectors.len()
    });
    report("write vectors.npy", &npy, n, t);

    let csv_rows = |path: &Path, opts: &CsvOptions| {
        let reader = CsvReader::open(path, opts.clone()).expect("open csv");
        let mut n = 0;
        for row in reader {
            std::hint::black_box(row.expect("good row"));
            n += 1;
        }
        n
    };
    let (t, n) = best(&|| csv_rows(&single, &single_opts));
    report("read single.csv", &single, n, t);
    let (t, n) = best(&|| csv_rows(&columns, &columns_opts));
    report("read columns.csv", &columns, n, t);
    let (t, n) = best(&|| {
        let mut n = 0;
        for row in NpyReader::open(&npy).expect("open npy") {
            std::hint::black_box(row.expect("good row"));
            n += 1;
        }
        n
    });
    report("read vectors.npy", &npy, n, t);
}

fn report(what: &str, path: &Path, rows: usize, t: Duration) {
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let secs = t.as_secs_f64();
    println!(
        "{what:<18} {rows:>7} rows {:>7.1} MB {:>8.3} s {:>9.0} rows/s {:>7.1} MB/s",
        bytes as f64 / 1e6,
        secs,
        rows as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}
