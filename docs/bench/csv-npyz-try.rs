//! The comparison behind "File import: CSV and npy, hand-written or on the `csv`/`npyz` crates"
//! in docs/benchmarks.md. Not built with the workspace (it would add both crates to the lock
//! file): copy it to `src/main.rs` of a scratch crate whose Cargo.toml has
//!
//! ```toml
//! [dependencies]
//! hnsw-batch = { path = "PATH/TO/hnsw-batch" }
//! csv = "1"
//! npyz = "0.9"
//! libc = "0.2"
//!
//! [profile.release]
//! codegen-units = 1
//! lto = "thin"
//! ```
//!
//! then `cargo run --release -- bench DIR 6` on the files `examples/import_throughput` writes to
//! DIR (`one NAME DIR` runs one reader, for a profiler), and `cases`, `deep`, `bighdr`, `quoted`
//! for the behaviour checks. Outputs: csv-npyz-try.txt.
use hnsw_batch::io::{CsvOptions, CsvReader, NpyReader, VectorColumns};
use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant};

fn parse_f32(t: &str) -> Result<f32, String> {
    let t = t.trim();
    let v: f32 = t.parse().map_err(|_| format!("`{t}` is not a number"))?;
    if v.is_finite() { Ok(v) } else { Err(format!("{v} is not finite")) }
}

/// The csv-crate reader's core: header resolution done once, then per record the id and the
/// vector, exactly as the library's reader does it (no metadata columns in these files).
fn csv_crate(path: &Path, prefix: bool) -> usize {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_path(path).unwrap();
    let headers = r.headers().unwrap().clone();
    let id_i = headers.iter().position(|h| h == "id").unwrap();
    let cols: Vec<usize> = if prefix {
        (0..).map_while(|k| headers.iter().position(|h| h == format!("v{k}"))).collect()
    } else {
        vec![headers.iter().position(|h| h == "vector").unwrap()]
    };
    let mut rec = csv::StringRecord::new();
    let mut n = 0;
    while r.read_record(&mut rec).unwrap() {
        let id: u64 = rec.get(id_i).unwrap().trim().parse().unwrap();
        let v: Vec<f32> = if prefix {
            cols.iter().map(|&i| parse_f32(rec.get(i).unwrap()).unwrap()).collect()
        } else {
            let t = rec.get(cols[0]).unwrap().trim();
            let t = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(t);
            t.split(';').map(|p| parse_f32(p).unwrap()).collect()
        };
        std::hint::black_box((id, v));
        n += 1;
    }
    n
}

fn hand(path: &Path, prefix: bool) -> usize {
    let opts = if prefix {
        CsvOptions { vector: VectorColumns::Prefix("v".into()), ..CsvOptions::default() }
    } else {
        CsvOptions::default()
    };
    CsvReader::open(path, opts).unwrap().map(|r| std::hint::black_box(r.unwrap())).count()
}

fn npyz_rows(path: &Path) -> usize {
    let f = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path).unwrap());
    let npy = npyz::NpyFile::new(f).unwrap();
    let dim = npy.shape()[1] as usize;
    let mut it = npy.data::<f32>().unwrap();
    let mut n = 0;
    loop {
        let mut row = Vec::with_capacity(dim);
        for _ in 0..dim {
            match it.next() {
                Some(v) => {
                    let v = v.unwrap();
                    assert!(v.is_finite());
                    row.push(v)
                }
                None => return n,
            }
        }
        std::hint::black_box(row);
        n += 1;
    }
}

fn hand_npy(path: &Path) -> usize {
    NpyReader::open(path).unwrap().map(|r| std::hint::black_box(r.unwrap())).count()
}

fn npy_bytes(major: u8, header: &str) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([major, 0]);
    if major == 1 {
        out.extend((header.len() as u16).to_le_bytes());
    } else {
        out.extend((header.len() as u32).to_le_bytes());
    }
    out.extend(header.as_bytes());
    out.extend([0u8; 24]);
    out
}

fn header_cases() {
    let cases = [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 99999999999999999999), }",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x",
        "{'descr': '<f4 , 'fortran_order': False, 'shape': (2, 3)}",
        "['descr']",
        "",
        "{\"shape\": (2L, 3L), \"fortran_order\": False, \"descr\": \"<f4\"}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
    ];
    for h in cases {
        let r = npyz::NpyFile::new(Cursor::new(npy_bytes(1, h)));
        match r {
            Ok(f) => println!("npyz ACCEPTS {h:?}: dtype {:?} shape {:?} order {:?}", f.dtype(), f.shape(), f.order()),
            Err(e) => println!("npyz refuses {h:?}: {e}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("deep") => {
            let deep = format!("{{'descr': {}1{}}}", "(".repeat(100_000), ")".repeat(100_000));
            let r = npyz::NpyFile::new(Cursor::new(npy_bytes(2, &deep)));
            println!("deep: {:?}", r.err());
        }
        Some("bighdr") => {
            // A version-2 header announcing 4 GiB of header text, 12 bytes long in all.
            let mut b = b"\x93NUMPY\x02\x00".to_vec();
            b.extend(u32::MAX.to_le_bytes());
            let t = Instant::now();
            let r = npyz::NpyFile::new(Cursor::new(b));
            println!("bighdr: {:?} after {:?}", r.err(), t.elapsed());
        }
        Some("cases") => header_cases(),
        Some("one") => {
            let dir = Path::new(&args[3]);
            let n = match args[2].as_str() {
                "hand-single" => hand(&dir.join("single.csv"), false),
                "csv-single" => csv_crate(&dir.join("single.csv"), false),
                "hand-columns" => hand(&dir.join("columns.csv"), true),
                "csv-columns" => csv_crate(&dir.join("columns.csv"), true),
                other => panic!("{other}"),
            };
            println!("{n}");
        }
        Some("quoted") => {
            let text = "id,vector,n\n1,1;2,\"3\"\n2,1;2,3\n";
            let mut r = csv::Reader::from_reader(text.as_bytes());
            for rec in r.records() {
                let rec = rec.unwrap();
                println!("csv crate fields {:?} (no way to tell the quoted \"3\" from 3)", rec.iter().collect::<Vec<_>>());
            }
            let lenient = "id,vector\n1,1;2\"x\n2,\"1;2\"junk\n";
            for rec in csv::Reader::from_reader(lenient.as_bytes()).records() {
                println!("csv crate on a stray quote: {:?}", rec.map(|r| r.iter().map(str::to_owned).collect::<Vec<_>>()));
            }
        }
        Some("bench") => {
            let dir = Path::new(&args[2]);
            let runs: usize = args.get(3).map_or(5, |s| s.parse().unwrap());
            let mut best = std::collections::BTreeMap::<&str, (Duration, usize)>::new();
            for _ in 0..runs {
                let jobs: [(&str, &dyn Fn() -> usize); 6] = [
                    ("hand single.csv", &|| hand(&dir.join("single.csv"), false)),
                    ("csv  single.csv", &|| csv_crate(&dir.join("single.csv"), false)),
                    ("hand columns.csv", &|| hand(&dir.join("columns.csv"), true)),
                    ("csv  columns.csv", &|| csv_crate(&dir.join("columns.csv"), true)),
                    ("hand vectors.npy", &|| hand_npy(&dir.join("vectors.npy"))),
                    ("npyz vectors.npy", &|| npyz_rows(&dir.join("vectors.npy"))),
                ];
                for (name, f) in jobs {
                    let c0 = cpu();
                    let n = f();
                    let e = Duration::from_secs_f64(cpu() - c0);
                    let b = best.entry(name).or_insert((e, n));
                    if e < b.0 { *b = (e, n); }
                }
            }
            for (name, (t, n)) in best {
                println!("{name:<18} {n} rows  best {:.3} s CPU  {:.0} rows/s", t.as_secs_f64(), n as f64 / t.as_secs_f64());
            }
        }
        _ => eprintln!("usage: cratetry cases|deep|bighdr|quoted|bench DIR [runs]"),
    }
}

fn cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
