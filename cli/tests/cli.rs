//! End-to-end tests of the `hnsw-batch` binary on small generated files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hnsw_batch::io::{
    write_bvecs, write_csv, write_fvecs, write_ivecs, write_jsonl, write_npy, write_npy_ids, CsvOptions,
    ElementKind, JsonlOptions, Record, VecSet, VectorColumns,
};
use hnsw_batch::metadata::{MetaValue, Metadata};

const BIN: &str = env!("CARGO_BIN_EXE_hnsw-batch");

/// Runs the binary with `args` in `dir`.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(dir).output().expect("run hnsw-batch")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output on failure.
#[track_caller]
fn expect_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout:\n{}\n--- stderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Deterministic pseudo-random numbers (fixed seed, no dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    /// Uniform in [-1, 1), on a grid of 1/1024 so that text round trips are easy to read.
    fn f(&mut self) -> f32 {
        (self.next() % 2048) as f32 / 1024.0 - 1.0
    }
    fn byte(&mut self) -> f32 {
        (self.next() % 256) as f32
    }
}

fn vectors(n: usize, dim: usize, seed: u64, bytes: bool) -> Vec<Vec<f32>> {
    let mut r = Lcg(seed);
    (0..n).map(|_| (0..dim).map(|_| if bytes { r.byte() } else { r.f() }).collect()).collect()
}

/// Exact k nearest neighbours (squared L2, ties by id) of each query.
fn ground_truth(base: &[Vec<f32>], queries: &[Vec<f32>], k: usize) -> Vec<Vec<i32>> {
    queries
        .iter()
        .map(|q| {
            let mut d: Vec<(f32, usize)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            d.iter().take(k).map(|&(_, i)| i as i32).collect()
        })
        .collect()
}

fn records(n: usize, dim: usize, seed: u64) -> Vec<Record> {
    vectors(n, dim, seed, false)
        .into_iter()
        .enumerate()
        .map(|(i, vector)| {
            let mut metadata = Metadata::new();
            if i % 3 != 0 {
                metadata.insert("label".into(), MetaValue::Str(format!("item \"{i}\", ok")));
                metadata.insert("rank".into(), MetaValue::Int(i as i64 - 5));
            }
            if i % 4 == 0 {
                metadata.insert("score".into(), MetaValue::Float(i as f64 / 7.0));
                metadata.insert("flag".into(), MetaValue::Bool(i % 8 == 0));
            }
            // Ascending but not contiguous ids: export writes ids in ascending order.
            Record { id: 1000 + 3 * i as u64, vector, metadata, expires_at: None }
        })
        .collect()
}

/// `base.fvecs`, `query.fvecs` and their exact top-10 `gt.ivecs` in `dir`.
fn write_set(dir: &Path, base: &[Vec<f32>], queries: &[Vec<f32>]) {
    write_fvecs(p(dir, "base.fvecs"), base).unwrap();
    write_fvecs(p(dir, "query.fvecs"), queries).unwrap();
    write_ivecs(p(dir, "gt.ivecs"), ground_truth(base, queries, 10)).unwrap();
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

// ----- help and usage ----------------------------------------------------------------------------

#[test]
fn help_lists_exit_codes_and_examples() {
    let d = tmp();
    let o = run(d.path(), &["--help"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("Exit codes"));
    for sub in ["build", "search", "bench", "import", "export", "info"] {
        let o = run(d.path(), &[sub, "--help"]);
        expect_code(&o, 0);
        let s = stdout(&o);
        assert!(s.contains("Examples:"), "{sub} --help has no examples");
        assert!(s.contains("Exit codes"), "{sub} --help has no exit codes");
    }
}

#[test]
fn usage_errors_exit_1() {
    let d = tmp();
    let o = run(d.path(), &["build", "x.fvecs"]);
    expect_code(&o, 1);
    let o = run(d.path(), &["frobnicate"]);
    expect_code(&o, 1);
    let o = run(d.path(), &["build", "x.fvecs", "-o", "x.hnsw", "--no-such-flag"]);
    expect_code(&o, 1);
    // Parameters are checked before the input is opened.
    let o = run(d.path(), &["build", "x.fvecs", "-o", "x.hnsw", "--m", "1"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("--m"), "{}", stderr(&o));
    let o = run(d.path(), &["build", "x.fvecs", "-o", "x.hnsw", "--storage", "u8", "--metric", "cosine"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("storage"), "{}", stderr(&o));
}

// ----- build, info, search -----------------------------------------------------------------------

#[test]
fn build_info_search_fvecs_with_recall() {
    let d = tmp();
    let base = vectors(400, 8, 1, false);
    let queries = vectors(20, 8, 2, false);
    write_set(d.path(), &base, &queries);

    let o = run(d.path(), &["build", "base.fvecs", "-o", "ix.hnsw", "--threads", "2"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("400 vectors"), "{}", stdout(&o));

    let o = run(d.path(), &["info", "ix.hnsw"]);
    expect_code(&o, 0);
    let s = stdout(&o);
    for want in ["vectors         400", "dimension       8", "storage         f32", "version 2", "memory"] {
        assert!(s.contains(want), "info lacks `{want}`:\n{s}");
    }
    let o = run(d.path(), &["info", "ix.hnsw", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["vectors"], 400);
    assert_eq!(v["dim"], 8);
    assert_eq!(v["metric"], "l2");
    assert_eq!(v["format_version"], 2);

    let o =
        run(d.path(), &["search", "ix.hnsw", "query.fvecs", "-k", "10", "--ef", "64", "--gt", "gt.ivecs"]);
    expect_code(&o, 0);
    let s = stdout(&o);
    assert_eq!(s.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).count(), 200);
    let recall: f64 =
        s.lines().find_map(|l| l.strip_prefix("recall@10: ")).expect("recall line").trim().parse().unwrap();
    assert!(recall >= 0.9, "recall {recall}");

    // The nearest neighbour of a stored vector is itself.
    let v: Vec<String> = base[17].iter().map(|x| x.to_string()).collect();
    let o = run(d.path(), &["search", "ix.hnsw", "--vector", &v.join(","), "-k", "3", "--format", "jsonl"]);
    expect_code(&o, 0);
    let line: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(line["query"], 0);
    assert_eq!(line["results"][0]["id"], 17);
    assert_eq!(line["results"][0]["distance"], 0.0);
    assert_eq!(line["results"].as_array().unwrap().len(), 3);
}

#[test]
fn coded_and_exact_walk_builds_keep_exact_vectors_and_recall() {
    let d = tmp();
    // Past the 1 024 items a batch needs for codes.
    let base = vectors(1500, 16, 5, false);
    let queries = vectors(30, 16, 6, false);
    write_set(d.path(), &base, &queries);
    // The default walks codes; `--coded-walk` (the old opt-in) still parses; `--exact-walk` opts out.
    for (storage, walk) in
        [("f32", None), ("f16", None), ("f32", Some("--exact-walk")), ("f32", Some("--coded-walk"))]
    {
        let mut args = vec!["build", "base.fvecs", "-o", "ix.hnsw", "--storage", storage, "--threads", "2"];
        args.extend(walk);
        let o = run(d.path(), &args);
        expect_code(&o, 0);
        assert!(stdout(&o).contains(&format!("{storage} storage")), "{}", stdout(&o));
        if storage == "f32" {
            let index = hnsw_batch::Index::load(p(d.path(), "ix.hnsw")).unwrap();
            assert_eq!(index.get(42).unwrap(), base[42], "the index stores the exact vectors");
            index.check_integrity().unwrap();
        }
        let o = run(
            d.path(),
            &["search", "ix.hnsw", "query.fvecs", "-k", "10", "--ef", "64", "--gt", "gt.ivecs"],
        );
        expect_code(&o, 0);
        let recall: f64 = stdout(&o)
            .lines()
            .find_map(|l| l.strip_prefix("recall@10: "))
            .expect("recall line")
            .trim()
            .parse()
            .unwrap();
        assert!(recall >= 0.9, "{storage} {walk:?}: recall {recall}");
    }
    let o = run(d.path(), &["build", "base.fvecs", "-o", "x.hnsw", "--coded-walk", "--exact-walk"]);
    assert_ne!(o.status.code(), Some(0), "the two walks conflict");
    assert!(!d.path().join("x.hnsw").exists());
}

#[test]
fn f16_storage_builds_searches_and_rejects_out_of_range_rows() {
    let d = tmp();
    let base = vectors(150, 5, 4, false);
    write_fvecs(p(d.path(), "h.fvecs"), &base).unwrap();
    let o = run(d.path(), &["build", "h.fvecs", "-o", "h.hnsw", "--storage", "f16", "--quiet"]);
    expect_code(&o, 0);
    let o = run(d.path(), &["info", "h.hnsw", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["storage"], "f16");
    let q: Vec<String> = base[17].iter().map(|x| x.to_string()).collect();
    let o = run(d.path(), &["search", "h.hnsw", "--vector", &q.join(","), "-k", "1", "--format", "jsonl"]);
    expect_code(&o, 0);
    let line: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(line["results"][0]["id"], 17);

    let mut big = base.clone();
    big[3][2] = 70000.0;
    write_fvecs(p(d.path(), "big.fvecs"), &big).unwrap();
    let o = run(d.path(), &["build", "big.fvecs", "-o", "big.hnsw", "--storage", "f16"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("does not fit the f16 storage type"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--storage f32"), "{}", stderr(&o));
}

#[test]
fn sq8_storage_builds_and_searches_with_exact_distances_and_rerank_needs_sq8() {
    let d = tmp();
    let base = vectors(300, 6, 4, false);
    write_fvecs(p(d.path(), "s.fvecs"), &base).unwrap();
    let o =
        run(d.path(), &["build", "s.fvecs", "-o", "s.hnsw", "--storage", "sq8", "--rerank", "20", "--quiet"]);
    expect_code(&o, 0);
    let o = run(d.path(), &["info", "s.hnsw", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["storage"], "sq8");
    // Every candidate is re-scored with the exact f32 vector: a stored vector finds itself first
    // at distance 0, not at a quantisation error.
    let q: Vec<String> = base[42].iter().map(|x| x.to_string()).collect();
    let o = run(d.path(), &["search", "s.hnsw", "--vector", &q.join(","), "-k", "3", "--format", "jsonl"]);
    expect_code(&o, 0);
    let line: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(line["results"][0]["id"], 42);
    assert_eq!(line["results"][0]["distance"].as_f64().unwrap(), 0.0);
    // `--rerank` means nothing without sq8 codes: refused, nothing written.
    let o = run(d.path(), &["build", "s.fvecs", "-o", "f.hnsw", "--storage", "f32", "--rerank", "20"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("--rerank: applies to sq8 storage only"), "{}", stderr(&o));
    assert!(!p(d.path(), "f.hnsw").exists());
}

#[test]
fn bvecs_gets_u8_storage_and_npy_ids_are_used() {
    let d = tmp();
    let base = vectors(200, 6, 3, true);
    write_bvecs(p(d.path(), "b.bvecs"), &base).unwrap();
    let o = run(d.path(), &["build", "b.bvecs", "-o", "b.hnsw", "--quiet"]);
    expect_code(&o, 0);
    assert!(stdout(&o).is_empty(), "--quiet printed: {}", stdout(&o));
    let o = run(d.path(), &["info", "b.hnsw", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["storage"], "u8");

    // f32 .npy with ids from an ids .npy.
    let floats = vectors(150, 5, 4, false);
    let set = VecSet::new(5, floats.concat(), ElementKind::F32).unwrap();
    write_npy(p(d.path(), "v.npy"), &set).unwrap();
    let ids: Vec<u64> = (0..150).map(|i| 10_000 + i * 2).collect();
    write_npy_ids(p(d.path(), "ids.npy"), &ids).unwrap();
    let o = run(d.path(), &["build", "v.npy", "--ids", "ids.npy", "-o", "v.hnsw"]);
    expect_code(&o, 0);
    let q: Vec<String> = floats[42].iter().map(|x| x.to_string()).collect();
    let o = run(d.path(), &["search", "v.hnsw", "--vector", &q.join(" "), "-k", "1", "--format", "jsonl"]);
    expect_code(&o, 0);
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(line["results"][0]["id"], 10_084);

    // An ids file of the wrong length is an input error.
    write_npy_ids(p(d.path(), "short.npy"), &ids[..10]).unwrap();
    let o = run(d.path(), &["build", "v.npy", "--ids", "short.npy", "-o", "w.hnsw"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("10 ids"), "{}", stderr(&o));
}

#[test]
fn durable_directory_build_search_export_and_append() {
    let d = tmp();
    let recs = records(100, 6, 15);
    write_jsonl(p(d.path(), "in.jsonl"), &recs[..60], &JsonlOptions::default()).unwrap();
    let o = run(d.path(), &["import", "in.jsonl", "--durable", "db"]);
    expect_code(&o, 0);
    assert!(
        stdout(&o).contains("added 60 vectors") && stdout(&o).contains("index now holds 60"),
        "{}",
        stdout(&o)
    );
    // Metadata is in the index (its log), not in a side file.
    assert!(!d.path().join("db/metadata.jsonl").exists());
    let o = run(d.path(), &["info", "db", "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["format"], "hnsw-batch durable index");
    assert_eq!(v["vectors"], 60);
    assert_eq!(v["metadata"]["vectors"], recs[..60].iter().filter(|r| !r.metadata.is_empty()).count());

    // A second build adds to the durable index; rows already there are duplicates.
    write_jsonl(p(d.path(), "more.jsonl"), &recs[50..], &JsonlOptions::default()).unwrap();
    let o = run(d.path(), &["import", "more.jsonl", "--durable", "db", "--max-errors", "10"]);
    expect_code(&o, 0);
    assert!(stderr(&o).contains("already holds 60 vectors"), "{}", stderr(&o));
    assert!(stderr(&o).contains("duplicate id 1150 (already in the index)"), "{}", stderr(&o));
    assert!(stdout(&o).contains("skipped 10 of 50 rows"), "{}", stdout(&o));
    // The summary counts what this build added, and the total apart.
    assert!(
        stdout(&o).contains("added 40 vectors") && stdout(&o).contains("index now holds 100"),
        "{}",
        stdout(&o)
    );
    // A durable build that stops keeps what it inserted, and says so.
    let o = run(d.path(), &["import", "more.jsonl", "--durable", "db"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("now holds 100 vectors"), "{}", stderr(&o));

    let q: Vec<String> = recs[77].vector.iter().map(|x| x.to_string()).collect();
    let o = run(d.path(), &["search", "db", "--vector", &q.join(","), "-k", "1", "--format", "jsonl"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["results"][0]["id"], recs[77].id);

    write_jsonl(p(d.path(), "all.jsonl"), &recs, &JsonlOptions::default()).unwrap();
    expect_code(&run(d.path(), &["export", "db", "-o", "out.jsonl"]), 0);
    assert_eq!(
        std::fs::read_to_string(d.path().join("all.jsonl")).unwrap(),
        std::fs::read_to_string(d.path().join("out.jsonl")).unwrap()
    );

    // Other parameters than the directory's are refused.
    let o = run(d.path(), &["import", "more.jsonl", "--durable", "db", "--metric", "cosine"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("metric"), "{}", stderr(&o));
}

#[test]
fn gzip_inputs_and_format_override() {
    let d = tmp();
    let recs = records(40, 3, 16);
    write_jsonl(p(d.path(), "r.jsonl"), &recs, &JsonlOptions::default()).unwrap();
    gz(&d.path().join("r.jsonl"));
    let o = run(d.path(), &["build", "r.jsonl.gz", "-o", "r.hnsw"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("40 vectors"), "{}", stdout(&o));
    // A name that says nothing, and the format given explicitly.
    write_fvecs(p(d.path(), "vectors.bin"), vectors(30, 4, 17, false)).unwrap();
    let o = run(d.path(), &["build", "vectors.bin", "-o", "v.hnsw", "--input-format", "fvecs"]);
    expect_code(&o, 0);
    let o = run(
        d.path(),
        &["search", "v.hnsw", "vectors.bin", "--input-format", "fvecs", "--limit", "2", "-k", "1"],
    );
    expect_code(&o, 0);
    let out = stdout(&o);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&o));
    assert!(rows[1].split_whitespace().nth(2) == Some("1"), "query 1 finds itself: {}", stdout(&o));
}

#[test]
fn durable_directory_or_snapshot_is_required() {
    let d = tmp();
    let o = run(d.path(), &["build", "in.jsonl"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("--output") || stderr(&o).contains("--durable"), "{}", stderr(&o));
}

// ----- bad inputs --------------------------------------------------------------------------------

fn bad_jsonl(dir: &Path) {
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!("{{\"id\": {i}, \"vector\": [{}, 1.5, -2]}}\n", i as f32 / 10.0));
    }
    text.push_str("{\"id\": 50, \"vector\": [1, 2]}\n"); // line 51: wrong dimension
    text.push_str("{\"id\": 51, \"vector\": [1, 2, \"x\"]}\n"); // line 52: not a number
    text.push_str("{\"id\": 3, \"vector\": [1, 2, 3]}\n"); // line 53: duplicate id
    text.push_str("{\"id\": 54, \"vector\": [4, 5, 6]}\n");
    std::fs::write(dir.join("bad.jsonl"), text).unwrap();
}

#[test]
fn bad_rows_fail_by_default_with_their_line() {
    let d = tmp();
    bad_jsonl(d.path());
    let o = run(d.path(), &["build", "bad.jsonl", "-o", "x.hnsw"]);
    expect_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("line 51") && e.contains("dimension"), "{e}");
    assert!(e.contains("--max-errors"), "{e}");
    assert!(!d.path().join("x.hnsw").exists());
}

#[test]
fn max_errors_skips_and_reports_bad_rows() {
    let d = tmp();
    bad_jsonl(d.path());
    let o = run(d.path(), &["build", "bad.jsonl", "-o", "x.hnsw", "--max-errors", "3"]);
    expect_code(&o, 0);
    let e = stderr(&o);
    assert!(e.contains("line 51"), "{e}");
    assert!(e.contains("line 52"), "{e}");
    assert!(e.contains("line 53") && e.contains("duplicate id 3"), "{e}");
    assert!(stdout(&o).contains("skipped 3 of 54 rows"), "{}", stdout(&o));
    let o = run(d.path(), &["info", "x.hnsw", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["vectors"], 51);

    let o = run(d.path(), &["build", "bad.jsonl", "-o", "y.hnsw", "--max-errors", "2"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("more than 2 bad rows"), "{}", stderr(&o));
    assert!(!d.path().join("y.hnsw").exists());
}

#[test]
fn csv_dimension_mismatch_names_the_line() {
    let d = tmp();
    std::fs::write(d.path().join("x.csv"), "id,vector,tag\n1,1;2;3,a\n2,4;5;6,b\n3,7;8,c\n").unwrap();
    let o = run(d.path(), &["build", "x.csv", "-o", "x.hnsw"]);
    expect_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("line 4") && e.contains("expected 3, got 2"), "{e}");
}

#[test]
fn missing_unknown_and_malformed_inputs_exit_2() {
    let d = tmp();
    let o = run(d.path(), &["build", "nope.fvecs", "-o", "x.hnsw"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));

    std::fs::write(d.path().join("data.txt"), "1 2 3\n").unwrap();
    let o = run(d.path(), &["build", "data.txt", "-o", "x.hnsw"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("--input-format"), "{}", stderr(&o));

    // Text in an .fvecs file: the first "dimension" is absurd.
    std::fs::write(d.path().join("text.fvecs"), "hello, this is not binary data at all\n").unwrap();
    let o = run(d.path(), &["build", "text.fvecs", "-o", "x.hnsw"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("really a fvecs file"), "{}", stderr(&o));

    // A truncated .fvecs file.
    write_fvecs(p(d.path(), "t.fvecs"), vectors(3, 4, 1, false)).unwrap();
    let bytes = std::fs::read(d.path().join("t.fvecs")).unwrap();
    std::fs::write(d.path().join("t.fvecs"), &bytes[..bytes.len() - 3]).unwrap();
    let o = run(d.path(), &["build", "t.fvecs", "-o", "x.hnsw"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("truncated record 2"), "{}", stderr(&o));

    // Non-byte values cannot go into u8 storage.
    write_fvecs(p(d.path(), "f.fvecs"), vectors(3, 4, 1, false)).unwrap();
    let o = run(d.path(), &["build", "f.fvecs", "-o", "x.hnsw", "--storage", "u8"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("--storage f32"), "{}", stderr(&o));
}

#[test]
fn index_errors_exit_3_and_query_errors_exit_2() {
    let d = tmp();
    let o = run(d.path(), &["search", "missing.hnsw", "--vector", "1,2"]);
    expect_code(&o, 3);
    assert!(stderr(&o).contains("missing.hnsw"), "{}", stderr(&o));
    std::fs::write(d.path().join("junk.hnsw"), b"this is not an index file at all").unwrap();
    let o = run(d.path(), &["info", "junk.hnsw"]);
    expect_code(&o, 3);
    assert!(stderr(&o).contains("not a hnsw-batch index"), "{}", stderr(&o));
    let o = run(d.path(), &["search", "junk.hnsw", "--vector", "1,2"]);
    expect_code(&o, 3);

    write_fvecs(p(d.path(), "b.fvecs"), vectors(50, 4, 9, false)).unwrap();
    expect_code(&run(d.path(), &["build", "b.fvecs", "-o", "b.hnsw"]), 0);
    let o = run(d.path(), &["search", "b.hnsw", "--vector", "1,2,3"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("3 components") && stderr(&o).contains("dimension 4"), "{}", stderr(&o));
    let o = run(d.path(), &["search", "b.hnsw", "--vector", "1,2,x,4"]);
    expect_code(&o, 1);
    write_fvecs(p(d.path(), "q.fvecs"), vectors(5, 6, 9, false)).unwrap();
    let o = run(d.path(), &["search", "b.hnsw", "q.fvecs"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("record 0") && stderr(&o).contains("dimension 6"), "{}", stderr(&o));
    let o = run(d.path(), &["search", "b.hnsw", "--vector", "1,2,3,4", "-k", "5", "--ef", "2"]);
    expect_code(&o, 1);
    // An output that cannot be written.
    let o = run(d.path(), &["build", "b.fvecs", "-o", "no/such/dir/x.hnsw"]);
    expect_code(&o, 3);
}

#[test]
fn output_location_is_checked_before_building() {
    let d = tmp();
    // The input fails at line 51: an exit code 3 shows the output was checked first.
    bad_jsonl(d.path());
    let o = run(d.path(), &["build", "bad.jsonl", "-o", "no/such/dir/x.hnsw"]);
    expect_code(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("`no/such/dir/x.hnsw`") && e.contains("`no/such/dir` does not exist"), "{e}");
    assert!(!e.contains(".tmp"), "{e}");
    std::fs::write(d.path().join("file"), "").unwrap();
    let o = run(d.path(), &["build", "bad.jsonl", "-o", "file/x.hnsw"]);
    expect_code(&o, 3);
    assert!(stderr(&o).contains("`file` is not a directory"), "{}", stderr(&o));
    // Metadata goes into the index file: no side file is written, and a stale one (of the index
    // this build replaces) is removed rather than folded into the new index.
    write_jsonl(p(d.path(), "m.jsonl"), &records(10, 3, 4), &JsonlOptions::default()).unwrap();
    std::fs::write(d.path().join("m.hnsw.meta.jsonl"), "{\"id\": 1003, \"metadata\": {\"stale\": true}}\n")
        .unwrap();
    let o = run(d.path(), &["build", "m.jsonl", "-o", "m.hnsw"]);
    expect_code(&o, 0);
    let with_meta = records(10, 3, 4).iter().filter(|r| !r.metadata.is_empty()).count();
    assert!(
        stdout(&o).contains(&format!("{with_meta} of them with metadata (stored in the index)")),
        "{}",
        stdout(&o)
    );
    assert!(!d.path().join("m.hnsw.meta.jsonl").exists());
    let v = info_json(d.path(), "m.hnsw");
    assert!(v["metadata"]["fields"].get("stale").is_none(), "{v}");
}

#[test]
fn text_input_errors_give_one_position_and_csv_names_the_flags() {
    let d = tmp();
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!("{{\"id\": {i}, \"vector\": [1, 2]}}\n"));
    }
    text.push_str("{\"id\": 10, \"vector\": [1,x]}\n");
    std::fs::write(d.path().join("x.jsonl"), text).unwrap();
    let o = run(d.path(), &["build", "x.jsonl", "-o", "x.hnsw"]);
    expect_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("`x.jsonl`: line 11, column 25: expected value\n"), "{e}");
    assert!(!e.contains("parse error") && !e.contains("line 1 column"), "{e}");

    std::fs::write(d.path().join("x.csv"), "id,emb,tag\n1,1;2,a\n").unwrap();
    let o = run(d.path(), &["build", "x.csv", "-o", "x.hnsw"]);
    expect_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("missing column `vector`") && e.contains("`id`, `emb`, `tag`"), "{e}");
    assert!(e.contains("--vector-field NAME") && e.contains("--vector-prefix"), "{e}");
    let o = run(d.path(), &["build", "x.csv", "-o", "x.hnsw", "--id-field", "key", "--vector-field", "emb"]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("missing column `key`") && stderr(&o).contains("--auto-id"),
        "{}",
        stderr(&o)
    );
    let o = run(d.path(), &["build", "x.csv", "-o", "x.hnsw", "--vector-field", "emb"]);
    expect_code(&o, 0);
}

#[test]
fn export_ids_file_follows_the_whole_output_name_and_is_not_replaced_silently() {
    let d = tmp();
    write_fvecs(p(d.path(), "b.fvecs"), vectors(20, 4, 3, false)).unwrap();
    expect_code(&run(d.path(), &["build", "b.fvecs", "-o", "b.hnsw"]), 0);
    expect_code(&run(d.path(), &["export", "b.hnsw", "-o", "out.npy"]), 0);
    expect_code(&run(d.path(), &["export", "b.hnsw", "-o", "out.fvecs"]), 0);
    assert!(d.path().join("out.npy.ids.npy").exists() && d.path().join("out.fvecs.ids.npy").exists());
    assert!(!d.path().join("out.ids.npy").exists());

    // Nothing is replaced without --force, neither the output nor the ids file.
    let before = std::fs::read(d.path().join("out.npy.ids.npy")).unwrap();
    let o = run(d.path(), &["export", "b.hnsw", "-o", "out.npy"]);
    expect_code(&o, 3);
    assert!(stderr(&o).contains("`out.npy` exists; pass --force"), "{}", stderr(&o));
    let o = run(d.path(), &["export", "b.hnsw", "-o", "new.npy", "--ids", "out.npy.ids.npy"]);
    expect_code(&o, 3);
    assert!(stderr(&o).contains("`out.npy.ids.npy` exists; pass --force"), "{}", stderr(&o));
    assert!(!d.path().join("new.npy").exists());
    assert_eq!(std::fs::read(d.path().join("out.npy.ids.npy")).unwrap(), before);
    expect_code(&run(d.path(), &["export", "b.hnsw", "-o", "out.npy", "--force"]), 0);
}

// ----- import / export round trips ---------------------------------------------------------------

#[test]
fn jsonl_round_trip_is_exact() {
    let d = tmp();
    let recs = records(120, 6, 11);
    write_jsonl(p(d.path(), "in.jsonl"), &recs, &JsonlOptions::default()).unwrap();
    expect_code(&run(d.path(), &["import", "in.jsonl", "-o", "ix.hnsw"]), 0);
    assert!(!d.path().join("ix.hnsw.meta.jsonl").exists());
    expect_code(&run(d.path(), &["export", "ix.hnsw", "-o", "out.jsonl"]), 0);
    assert_eq!(
        std::fs::read_to_string(d.path().join("in.jsonl")).unwrap(),
        std::fs::read_to_string(d.path().join("out.jsonl")).unwrap()
    );

    // Field mapping both ways.
    let opts = JsonlOptions {
        id_field: "key".into(),
        vector_field: "emb".into(),
        metadata_field: "attrs".into(),
        ..JsonlOptions::default()
    };
    write_jsonl(p(d.path(), "mapped.jsonl"), &recs, &opts).unwrap();
    let mapping = ["--id-field", "key", "--vector-field", "emb", "--metadata-field", "attrs"];
    let mut args = vec!["import", "mapped.jsonl", "-o", "m.hnsw"];
    args.extend(mapping);
    expect_code(&run(d.path(), &args), 0);
    let mut args = vec!["export", "m.hnsw", "-o", "m.jsonl"];
    args.extend(mapping);
    expect_code(&run(d.path(), &args), 0);
    assert_eq!(
        std::fs::read_to_string(d.path().join("mapped.jsonl")).unwrap(),
        std::fs::read_to_string(d.path().join("m.jsonl")).unwrap()
    );
}

#[test]
fn csv_round_trip_is_exact() {
    let d = tmp();
    let recs = records(90, 5, 12);
    write_csv(p(d.path(), "in.csv"), &recs, &CsvOptions::default()).unwrap();
    expect_code(&run(d.path(), &["import", "in.csv", "-o", "ix.hnsw"]), 0);
    expect_code(&run(d.path(), &["export", "ix.hnsw", "-o", "out.csv"]), 0);
    assert_eq!(
        std::fs::read_to_string(d.path().join("in.csv")).unwrap(),
        std::fs::read_to_string(d.path().join("out.csv")).unwrap()
    );

    // One column per component, another delimiter.
    let opts =
        CsvOptions { delimiter: ';', vector: VectorColumns::Prefix("v".into()), ..CsvOptions::default() };
    write_csv(p(d.path(), "cols.csv"), &recs, &opts).unwrap();
    let mapping = ["--vector-prefix", "v", "--delimiter", ";"];
    let mut args = vec!["import", "cols.csv", "-o", "c.hnsw"];
    args.extend(mapping);
    expect_code(&run(d.path(), &args), 0);
    let mut args = vec!["export", "c.hnsw", "-o", "c.csv"];
    args.extend(mapping);
    expect_code(&run(d.path(), &args), 0);
    assert_eq!(
        std::fs::read_to_string(d.path().join("cols.csv")).unwrap(),
        std::fs::read_to_string(d.path().join("c.csv")).unwrap()
    );
}

#[test]
fn npy_round_trip_is_exact() {
    let d = tmp();
    for (element, bytes) in [(ElementKind::F32, false), (ElementKind::U8, true)] {
        let name = element.name();
        let rows = vectors(80, 7, 13, bytes);
        let set = VecSet::new(7, rows.concat(), element).unwrap();
        let ids: Vec<u64> = (0..80).map(|i| 5 + 7 * i).collect();
        let (vin, iin) = (format!("{name}.npy"), format!("{name}-ids.npy"));
        write_npy(p(d.path(), &vin), &set).unwrap();
        write_npy_ids(p(d.path(), &iin), &ids).unwrap();
        let ix = format!("{name}.hnsw");
        expect_code(&run(d.path(), &["import", &vin, "--ids", &iin, "-o", &ix]), 0);
        let (vout, iout) = (format!("{name}-out.npy"), format!("{name}-out-ids.npy"));
        expect_code(&run(d.path(), &["export", &ix, "-o", &vout, "--ids", &iout]), 0);
        assert_eq!(std::fs::read(d.path().join(&vin)).unwrap(), std::fs::read(d.path().join(&vout)).unwrap());
        assert_eq!(std::fs::read(d.path().join(&iin)).unwrap(), std::fs::read(d.path().join(&iout)).unwrap());
    }
    // Without --ids the ids go beside the output.
    expect_code(&run(d.path(), &["export", "f32.hnsw", "-o", "plain.npy"]), 0);
    assert!(d.path().join("plain.npy.ids.npy").exists());
}

#[test]
fn search_shows_metadata_stored_in_the_index() {
    let d = tmp();
    let recs = records(30, 4, 14);
    write_jsonl(p(d.path(), "in.jsonl"), &recs, &JsonlOptions::default()).unwrap();
    expect_code(&run(d.path(), &["import", "in.jsonl", "-o", "ix.hnsw"]), 0);
    let q: Vec<String> = recs[4].vector.iter().map(|x| x.to_string()).collect();
    let o = run(
        d.path(),
        &["search", "ix.hnsw", "--vector", &q.join(","), "-k", "1", "--format", "jsonl", "--with-metadata"],
    );
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["results"][0]["id"], recs[4].id);
    assert_eq!(v["results"][0]["metadata"]["rank"], -1);
}

#[test]
fn lists_of_strings_survive_the_index() {
    let d = tmp();
    let mut recs = records(30, 4, 14);
    recs[4].metadata.insert("tags".into(), MetaValue::from(vec!["a", "b"]));
    write_jsonl(p(d.path(), "in.jsonl"), &recs, &JsonlOptions::default()).unwrap();
    expect_code(&run(d.path(), &["import", "in.jsonl", "-o", "ix.hnsw"]), 0);
    let q: Vec<String> = recs[4].vector.iter().map(|x| x.to_string()).collect();
    let o = run(
        d.path(),
        &["search", "ix.hnsw", "--vector", &q.join(","), "-k", "1", "--format", "jsonl", "--with-metadata"],
    );
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["results"][0]["metadata"]["tags"], serde_json::json!(["a", "b"]));
}

// ----- metadata: filters, delete / update by filter, expiry, info, the old side file -------------

fn info_json(dir: &Path, index: &str) -> serde_json::Value {
    let o = run(dir, &["info", index, "--json"]);
    expect_code(&o, 0);
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

/// Every file under `path` (a file, or a directory's files but `LOCK`) with its bytes.
fn files(path: &Path) -> Vec<(String, Vec<u8>)> {
    if path.is_file() {
        return vec![(path.display().to_string(), std::fs::read(path).unwrap())];
    }
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "LOCK")
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// An index file `ix.hnsw` and a durable directory `db` with the same records.
fn both(dir: &Path, recs: &[Record]) -> [&'static str; 2] {
    write_jsonl(p(dir, "in.jsonl"), recs, &JsonlOptions::default()).unwrap();
    expect_code(&run(dir, &["import", "in.jsonl", "-o", "ix.hnsw"]), 0);
    expect_code(&run(dir, &["import", "in.jsonl", "--durable", "db"]), 0);
    ["ix.hnsw", "db"]
}

fn ids_matching(recs: &[Record], pred: impl Fn(&Metadata) -> bool) -> Vec<u64> {
    recs.iter().filter(|r| pred(&r.metadata)).map(|r| r.id).collect()
}

fn rank_at_least(m: &Metadata, n: i64) -> bool {
    matches!(m.get("rank"), Some(MetaValue::Int(r)) if *r >= n)
}

#[test]
fn search_filter_returns_the_nearest_matching_vectors() {
    let d = tmp();
    let recs = records(90, 5, 21);
    let matching: Vec<&Record> = recs.iter().filter(|r| rank_at_least(&r.metadata, 40)).collect();
    assert!(matching.len() > 10);
    let q = &recs[7].vector;
    let base: Vec<Vec<f32>> = matching.iter().map(|r| r.vector.clone()).collect();
    let want: Vec<u64> =
        ground_truth(&base, std::slice::from_ref(q), 5)[0].iter().map(|&i| matching[i as usize].id).collect();
    let qs: Vec<String> = q.iter().map(|x| x.to_string()).collect();
    for ix in both(d.path(), &recs) {
        let args = ["search", ix, "--vector", &qs.join(","), "-k", "5", "--ef", "90", "--format", "jsonl"];
        let o = run(
            d.path(),
            &[&args[..], &["--with-metadata", "--filter", r#"{"rank": {"$gte": 40}}"#]].concat(),
        );
        expect_code(&o, 0);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let got: Vec<u64> =
            v["results"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(got, want, "{ix}");
        for r in v["results"].as_array().unwrap() {
            assert!(r["metadata"]["rank"].as_i64().unwrap() >= 40, "{ix}: {r}");
        }
        // A filter nothing matches finds nothing.
        let o = run(d.path(), &[&args[..], &["--filter", r#"{"label": "none such"}"#]].concat());
        expect_code(&o, 0);
        assert!(stdout(&o).contains(r#""results":[]"#), "{}", stdout(&o));
    }
}

#[test]
fn malformed_filters_name_the_path_and_change_nothing() {
    let d = tmp();
    let recs = records(30, 4, 22);
    let q = recs[0].vector.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    for ix in both(d.path(), &recs) {
        let before = files(&d.path().join(ix));
        for (filter, says) in [
            (r#"{"rank": {"$gte": "ten"}}"#, "rank.$gte: expected a number, found string"),
            (
                r#"{"$and": [{"flag": true}, {"rank": {"$between": 1}}]}"#,
                "$and[1].rank.$between: unknown operator `$between`",
            ),
            (r#"{"rank": "#, "filter: invalid JSON"),
            (r#"{"$or": []}"#, "$or: `$or` needs at least one condition"),
        ] {
            for (cmd, flag) in [("search", "--filter"), ("delete", "--where"), ("update", "--where")] {
                let mut args = vec![cmd, ix, flag, filter];
                match cmd {
                    "search" => args.extend(["--vector", q.as_str()]),
                    "update" => args.extend(["--set", r#"{"x": 1}"#]),
                    _ => {}
                }
                let o = run(d.path(), &args);
                expect_code(&o, 1);
                assert!(stderr(&o).contains(&format!("{flag}: {says}")), "{cmd} {filter}: {}", stderr(&o));
                assert_eq!(files(&d.path().join(ix)), before, "{cmd} {ix} {filter}: wrote something");
            }
        }
        // A malformed --set is refused the same way.
        for (set, says) in [
            (r#"[1]"#, "--set: expected a JSON object"),
            (r#"{}"#, "--set: needs at least one key"),
            (r#"{"$x": 1}"#, "--set: "),
            (r#"{"x": {"y": 1}}"#, "--set: "),
        ] {
            let o = run(d.path(), &["update", ix, "--where", r#"{"flag": true}"#, "--set", set]);
            expect_code(&o, 1);
            assert!(stderr(&o).contains(says), "{set}: {}", stderr(&o));
            assert_eq!(files(&d.path().join(ix)), before, "update --set {set}: wrote something");
        }
    }
}

#[test]
fn delete_where_dry_run_guards_then_deletes() {
    let d = tmp();
    let recs = records(60, 4, 23);
    let filter = r#"{"rank": {"$gte": 30}}"#;
    let doomed = ids_matching(&recs, |m| rank_at_least(m, 30));
    let n = doomed.len();
    assert!(n > 5);
    for ix in both(d.path(), &recs) {
        let path = d.path().join(ix);
        let before = files(&path);
        let o = run(d.path(), &["delete", ix, "--where", filter, "--dry-run"]);
        expect_code(&o, 0);
        assert_eq!(stdout(&o).trim(), format!("would delete {n} vectors (dry run: nothing was changed)"));
        let o = run(d.path(), &["delete", ix, "--where", filter, "--dry-run", "--json"]);
        expect_code(&o, 0);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["ids"], serde_json::json!(doomed));
        // The report of the real run on the same state, flagged as a dry run.
        assert_eq!((v["matched"].as_u64(), v["deleted"].as_u64()), (Some(n as u64), Some(n as u64)));
        assert_eq!((v["dry_run"].as_bool(), v["not_found"].as_u64()), (Some(true), Some(0)));
        let m = (n - 1).to_string();
        for (guard, says) in [
            (
                ["--confirm-count", m.as_str()],
                format!("filter matched {n} vectors, confirm_count expected {m}"),
            ),
            (["--max", m.as_str()], format!("filter matched {n} vectors, more than max_affected = {m}")),
        ] {
            let o = run(d.path(), &[&["delete", ix, "--where", filter][..], &guard].concat());
            expect_code(&o, 3);
            assert!(
                stderr(&o).contains(&says) && stderr(&o).contains("nothing was changed"),
                "{}",
                stderr(&o)
            );
        }
        assert_eq!(files(&path), before, "{ix}: a dry run or a refusal wrote something");
        assert_eq!(info_json(d.path(), ix)["vectors"], 60);

        let count = n.to_string();
        let o = run(d.path(), &["delete", ix, "--where", filter, "--confirm-count", &count, "--max", &count]);
        expect_code(&o, 0);
        assert_eq!(stdout(&o).trim(), format!("deleted {n} vectors"));
        assert_eq!(info_json(d.path(), ix)["vectors"], 60 - n);
        let o = run(d.path(), &["delete", ix, "--where", filter, "--json"]);
        expect_code(&o, 0);
        assert!(
            stdout(&o).contains(r#""deleted":0"#) && stdout(&o).contains(r#""matched":0"#),
            "{}",
            stdout(&o)
        );
        // The deletions are in the file (saved) or the log (reopened).
        expect_code(&run(d.path(), &["export", ix, "-o", &format!("{ix}.out.jsonl")]), 0);
        let out = std::fs::read_to_string(d.path().join(format!("{ix}.out.jsonl"))).unwrap();
        assert_eq!(out.lines().count(), 60 - n);
        assert!(doomed.iter().all(|id| !out.contains(&format!("\"id\":{id},"))), "{ix}");
    }
}

#[test]
fn update_where_sets_and_removes_keys() {
    let d = tmp();
    let recs = records(60, 4, 24);
    let flagged = ids_matching(&recs, |m| m.get("flag") == Some(&MetaValue::Bool(true)));
    assert!(flagged.len() > 2);
    for ix in both(d.path(), &recs) {
        let before = files(&d.path().join(ix));
        let set = r#"{"reviewed": true, "score": null}"#;
        let o = run(d.path(), &["update", ix, "--where", r#"{"flag": true}"#, "--set", set, "--dry-run"]);
        expect_code(&o, 0);
        assert!(stdout(&o).contains(&format!("would update {} vectors", flagged.len())), "{}", stdout(&o));
        assert_eq!(files(&d.path().join(ix)), before);
        // Metadata over the limits (64 KiB per vector): a --set that alone is too large is a
        // usage error; one that makes some vector's metadata too large is refused by the index,
        // for all matching vectors, before any change.
        let blob = |k: &str, n: usize| format!(r#"{{"{k}": "{}"}}"#, "x".repeat(n));
        let o = run(d.path(), &["update", ix, "--where", r#"{"flag": true}"#, "--set", &blob("a", 70_000)]);
        expect_code(&o, 1);
        assert!(
            stderr(&o).contains("--set: metadata of 70007 encoded bytes exceeds max_bytes 65536"),
            "{}",
            stderr(&o)
        );
        let o = run(
            d.path(),
            &["update", ix, "--where", r#"{"rank": {"$gte": 0}}"#, "--set", &blob("a", 40_000)],
        );
        expect_code(&o, 0);
        let before = files(&d.path().join(ix));
        let o = run(d.path(), &["update", ix, "--where", r#"{"flag": true}"#, "--set", &blob("b", 40_000)]);
        expect_code(&o, 3);
        assert!(
            stderr(&o).contains("invalid metadata") && stderr(&o).contains("nothing was changed"),
            "{}",
            stderr(&o)
        );
        assert_eq!(files(&d.path().join(ix)), before);

        let o = run(d.path(), &["update", ix, "--where", r#"{"flag": true}"#, "--set", set]);
        expect_code(&o, 0);
        assert_eq!(stdout(&o).trim(), format!("updated {} vectors", flagged.len()));
        let o = run(d.path(), &["delete", ix, "--where", r#"{"reviewed": true}"#, "--dry-run", "--json"]);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["ids"], serde_json::json!(flagged));
        let v = info_json(d.path(), ix);
        assert_eq!(v["metadata"]["fields"]["reviewed"], flagged.len());
        let scored = recs.iter().filter(|r| r.metadata.contains_key("score")).count();
        assert_eq!(v["metadata"]["fields"]["score"], scored - flagged.len());
    }
}

#[test]
fn purge_expired_on_a_file_and_a_directory() {
    use hnsw_batch::persist::{DurableIndex, DurableOptions};
    use hnsw_batch::{Expiry, Index, IndexConfig, Metric};
    let d = tmp();
    let cfg = IndexConfig::new(2, Metric::L2);
    let expiry = |i: u64| if i.is_multiple_of(3) { Expiry::At(1_000 + i) } else { Expiry::Never };
    let index = Index::new(cfg.clone()).unwrap();
    let db = DurableIndex::open(d.path().join("db"), cfg, DurableOptions::new()).unwrap();
    for i in 0..30u64 {
        let v = [i as f32, 1.0];
        index.insert_with(i, &v, None, expiry(i)).unwrap();
        db.insert_with(i, &v, None, expiry(i)).unwrap();
    }
    index.save(d.path().join("ix.hnsw")).unwrap();
    drop(db);
    for ix in ["ix.hnsw", "db"] {
        // By the system clock every expiry has passed: those vectors are hidden already.
        let v = info_json(d.path(), ix);
        assert_eq!((v["vectors"].as_u64(), v["metadata"]["expiring"].as_u64()), (Some(30), Some(0)));
        let before = files(&d.path().join(ix));
        let o = run(d.path(), &["purge-expired", ix, "--now", "999", "--json"]);
        expect_code(&o, 0);
        assert_eq!(stdout(&o).trim(), r#"{"dry_run":false,"ids":[],"matched":0,"not_found":0,"purged":0}"#);
        let o = run(d.path(), &["purge-expired", ix, "--now", "1006", "--dry-run", "--json"]);
        expect_code(&o, 0);
        assert!(stdout(&o).contains(r#""ids":[0,3,6]"#), "{}", stdout(&o));
        let o = run(d.path(), &["purge-expired", ix, "--dry-run"]);
        expect_code(&o, 0);
        assert_eq!(stdout(&o).trim(), "would purge 10 vectors (dry run: nothing was changed)");
        assert_eq!(files(&d.path().join(ix)), before, "{ix}");
        let o = run(d.path(), &["purge-expired", ix, "--max", "5"]);
        expect_code(&o, 3);
        assert!(stderr(&o).contains("more than max_affected = 5"), "{}", stderr(&o));
        // In batches of 3 (four logged batches for the directory): the same outcome.
        let o = run(d.path(), &["purge-expired", ix, "--batch-size", "3"]);
        expect_code(&o, 0);
        assert_eq!(stdout(&o).trim(), "purged 10 vectors");
        assert_eq!(info_json(d.path(), ix)["vectors"], 20);
    }
}

#[test]
fn info_lists_metadata_fields_with_counts() {
    let d = tmp();
    let mut recs = records(40, 3, 25);
    recs[1].metadata.insert("tags".into(), MetaValue::from(vec!["a", "b"]));
    let count = |k: &str| recs.iter().filter(|r| r.metadata.contains_key(k)).count();
    for ix in both(d.path(), &recs) {
        let v = info_json(d.path(), ix);
        let fields = &v["metadata"]["fields"];
        for k in ["flag", "label", "rank", "score", "tags"] {
            assert_eq!(fields[k], count(k), "{ix} {k}: {v}");
        }
        assert_eq!(fields.as_object().unwrap().len(), 5);
        assert_eq!(v["metadata"]["vectors"], recs.iter().filter(|r| !r.metadata.is_empty()).count());
        let o = run(d.path(), &["info", ix]);
        expect_code(&o, 0);
        let line = format!(
            "fields: flag ({}), label ({}), rank ({}), score ({}), tags (1)",
            count("flag"),
            count("label"),
            count("rank"),
            count("score")
        );
        assert!(stdout(&o).contains(&line), "{}", stdout(&o));
    }
}

#[test]
fn jsonl_expiry_times_are_imported_exported_and_purged() {
    let d = tmp();
    let far = 4_000_000_000_000u64; // in 2096
    let mut recs = records(30, 4, 27);
    for (i, r) in recs.iter_mut().enumerate() {
        r.expires_at = (i % 5 == 0).then_some(far + i as u64);
    }
    let expiring = recs.iter().filter(|r| r.expires_at.is_some()).count();
    for ix in both(d.path(), &recs) {
        assert_eq!(info_json(d.path(), ix)["metadata"]["expiring"], expiring);
        let out = format!("{ix}.jsonl");
        expect_code(&run(d.path(), &["export", ix, "-o", &out]), 0);
        assert_eq!(
            std::fs::read_to_string(d.path().join(&out)).unwrap(),
            std::fs::read_to_string(d.path().join("in.jsonl")).unwrap(),
            "{ix}: expiry times round-trip"
        );
        let now = (far + 10).to_string();
        let o = run(d.path(), &["purge-expired", ix, "--now", &now, "--json"]);
        expect_code(&o, 0);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let want: Vec<u64> =
            recs.iter().filter(|r| r.expires_at.is_some_and(|t| t <= far + 10)).map(|r| r.id).collect();
        assert_eq!(v["ids"], serde_json::json!(want));
        assert_eq!(info_json(d.path(), ix)["vectors"], 30 - want.len());
    }
    // A bad expiry time is a bad row, with its line.
    std::fs::write(d.path().join("bad.jsonl"), "{\"id\": 1, \"vector\": [1, 2], \"expires_at\": \"soon\"}\n")
        .unwrap();
    let o = run(d.path(), &["import", "bad.jsonl", "-o", "bad.hnsw"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("line 1") && stderr(&o).contains("`expires_at`"), "{}", stderr(&o));
}

/// An index made by an older build keeps its metadata in a side file; the first command that
/// opens it moves the metadata into the index and removes the file.
#[test]
fn an_old_side_file_is_folded_into_the_index_once() {
    let d = tmp();
    let recs = records(30, 4, 26);
    // Vectors only, as the older builds stored them.
    let plain: Vec<Record> = recs.iter().map(|r| Record { metadata: Metadata::new(), ..r.clone() }).collect();
    write_jsonl(p(d.path(), "plain.jsonl"), &plain, &JsonlOptions::default()).unwrap();
    expect_code(&run(d.path(), &["import", "plain.jsonl", "-o", "ix.hnsw"]), 0);
    expect_code(&run(d.path(), &["import", "plain.jsonl", "--durable", "db"]), 0);
    let mut side = String::new();
    for r in recs.iter().filter(|r| !r.metadata.is_empty()) {
        let line = serde_json::json!({ "id": r.id, "metadata": hnsw_batch::metadata::to_json(&r.metadata) });
        side.push_str(&format!("{line}\n"));
    }
    side.push_str("{\"id\": 999999, \"metadata\": {\"gone\": 1}}\n");
    let with_meta = recs.iter().filter(|r| !r.metadata.is_empty()).count();
    for (ix, side_path) in [("ix.hnsw", "ix.hnsw.meta.jsonl"), ("db", "db/metadata.jsonl")] {
        std::fs::write(d.path().join(side_path), &side).unwrap();
        let o = run(d.path(), &["info", ix, "--json"]);
        expect_code(&o, 0);
        assert!(
            stderr(&o).contains(&format!("moved the metadata of {with_meta} vectors from `{side_path}`"))
                && stderr(&o).contains("skipped 1 entries for ids not in the index"),
            "{}",
            stderr(&o)
        );
        assert!(!d.path().join(side_path).exists());
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["metadata"]["vectors"], with_meta);
        // Saved in the index: the next command finds it there, with nothing left to move.
        let o = run(d.path(), &["export", ix, "-o", &format!("{ix}.jsonl")]);
        expect_code(&o, 0);
        assert!(!stderr(&o).contains("moved"), "{}", stderr(&o));
        write_jsonl(p(d.path(), "want.jsonl"), &recs, &JsonlOptions::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join(format!("{ix}.jsonl"))).unwrap(),
            std::fs::read_to_string(d.path().join("want.jsonl")).unwrap(),
            "{ix}"
        );
    }
}

// ----- bench -------------------------------------------------------------------------------------

fn gz(path: &Path) {
    use std::io::Write;
    let data = std::fs::read(path).unwrap();
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    out.write_all(&data).unwrap();
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    std::fs::write(PathBuf::from(name), out.finish().unwrap()).unwrap();
    std::fs::remove_file(path).unwrap();
}

fn dataset(dir: &Path, compressed: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let base = vectors(600, 8, 21, true);
    let queries = vectors(30, 8, 22, true);
    write_bvecs(dir.join("base.bvecs"), &base).unwrap();
    write_bvecs(dir.join("query.bvecs"), &queries).unwrap();
    write_ivecs(dir.join("gt.ivecs"), ground_truth(&base, &queries, 10)).unwrap();
    std::fs::write(dir.join("meta.json"), r#"{"name": "tiny-8-euclidean", "metric": "euclidean"}"#).unwrap();
    if compressed {
        for f in ["base.bvecs", "query.bvecs", "gt.ivecs"] {
            gz(&dir.join(f));
        }
    }
}

/// `bench` builds float sets on codes unless told `--exact-walk`, and says which in its header and
/// JSON, so runs with and without them are not compared unawares.
#[test]
fn bench_reports_whether_its_float_builds_walked_codes() {
    let d = tmp();
    let dir = d.path().join("floats");
    std::fs::create_dir_all(&dir).unwrap();
    let base = vectors(hnsw_batch::CODED_WALK_MIN_BATCH + 100, 8, 31, false);
    let queries = vectors(10, 8, 32, false);
    write_fvecs(dir.join("base.fvecs"), &base).unwrap();
    write_fvecs(dir.join("query.fvecs"), &queries).unwrap();
    write_ivecs(dir.join("gt.ivecs"), ground_truth(&base, &queries, 10)).unwrap();
    std::fs::write(dir.join("meta.json"), r#"{"name": "floats-8-euclidean", "metric": "euclidean"}"#)
        .unwrap();
    for (extra, walk) in [(None, "codes"), (Some("--exact-walk"), "stored")] {
        let mut args = vec![
            "bench",
            "floats",
            "--storage",
            "f32",
            "--ef",
            "16",
            "--min-time",
            "0",
            "--skip-sequential",
            "--build-threads",
            "1",
            "--json",
            "run.json",
        ];
        args.extend(extra);
        let o = run(d.path(), &args);
        expect_code(&o, 0);
        assert!(stdout(&o).contains(&format!("build walk={walk}")), "{extra:?}: {}", stdout(&o));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.path().join("run.json")).unwrap()).unwrap();
        assert_eq!(v["build_walk"], walk, "{extra:?}");
        assert!(v["results"]["hnsw-batch"]["sweep"][0]["recall"].as_f64().unwrap() > 0.9, "{extra:?}: {v}");
    }
}

#[test]
fn bench_writes_table_json_plot_and_compares() {
    let d = tmp();
    dataset(&d.path().join("tiny"), true);
    // A bench_peers.py --json file with two libraries.
    let peers = r#"{"dataset": "tiny-8-euclidean", "n": 600, "dim": 8, "metric": "l2", "M": 16, "efc": 200,
      "threads": 2, "machine": "x86_64", "cpus": 2, "results": {
        "hnswlib": {"build_s_1thread": 0.5, "build_s_threads": 0.3, "sweep": [
          {"ef": 10, "recall": 0.91, "qps": 90000.0}, {"ef": 20, "recall": 0.99, "qps": 50000.0}],
          "at_0.90": {"ef": 10, "recall": 0.91, "qps": 90000.0}, "at_0.95": null, "at_0.99": null},
        "faiss": {"build_s_1thread": 0.7, "build_s_threads": 0.4, "sweep": [
          {"ef": 10, "recall": 0.85, "qps": 70000.0}, {"ef": 20, "recall": 0.96, "qps": 40000.0}]}}}"#;
    std::fs::write(d.path().join("peers.json"), peers).unwrap();
    let o = run(
        d.path(),
        &[
            "bench",
            "tiny",
            "--ef",
            "10,20,40",
            "--queries",
            "20",
            "--min-time",
            "0",
            "--json",
            "out/run.json",
            "--plot",
            "out/plot.png",
            "--compare",
            "peers.json",
            "--quiet",
        ],
    );
    expect_code(&o, 0);
    let s = stdout(&o);
    for want in [
        "one at a time",
        "insert_batch",
        "recall@10",
        "QPS (1 thread)",
        "(recall@10: fraction of the true 10 nearest neighbours found, averaged over the queries)",
        "(QPS: queries per second; 1 thread = single-thread search throughput",
        "peak RSS",
        "hnswlib",
        "faiss",
        "0.99",
    ] {
        assert!(s.contains(want), "bench output lacks `{want}`:\n{s}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("out/run.json")).unwrap()).unwrap();
    assert_eq!(v["n"], 600);
    assert_eq!(v["queries"], 20);
    assert_eq!(v["storage"], "u8");
    assert_eq!(v["build_walk"], "stored", "u8 storage walks its bytes");
    let r = &v["results"]["hnsw-batch"];
    assert_eq!(r["sweep"].as_array().unwrap().len(), 3);
    assert!(r["sweep"][2]["recall"].as_f64().unwrap() > 0.9, "{r}");
    assert!(
        r["sweep"][2]["dist_comps"].as_f64().unwrap() > r["sweep"][0]["dist_comps"].as_f64().unwrap(),
        "{r}"
    );
    assert!(r["build_s_one_at_a_time"].as_f64().unwrap() > 0.0);
    assert!(r["memory_bytes"].as_u64().unwrap() > 600 * 8);
    let png = std::fs::read(d.path().join("out/plot.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(d.path().join("out/plot.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("hnswlib"), "svg lacks the compared series");

    // Our own JSON can be compared too.
    let o = run(
        d.path(),
        &[
            "bench",
            "tiny",
            "--ef",
            "10",
            "--min-time",
            "0",
            "--skip-sequential",
            "--compare",
            "out/run.json",
            "--quiet",
        ],
    );
    expect_code(&o, 0);
    assert!(stdout(&o).contains("hnsw-batch (run.json)"), "{}", stdout(&o));
}

#[test]
fn bench_churn_reports_every_round_the_fresh_build_and_json() {
    let d = tmp();
    let sift = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/siftsmall");
    let sift = sift.to_str().unwrap();
    let o = run(
        d.path(),
        &[
            "bench",
            sift,
            "--churn",
            "2",
            "--queries",
            "20",
            "--min-time",
            "0",
            "--storage",
            "f32",
            "--json",
            "c.json",
            "--quiet",
        ],
    );
    expect_code(&o, 0);
    let s = stdout(&o);
    let first = |label: &str| s.lines().find(|l| l.split_whitespace().next() == Some(label));
    for label in ["0", "1", "2", "fresh", "compacted"] {
        assert!(first(label).is_some(), "no `{label}` row:\n{s}");
    }
    assert!(first("3").is_none(), "a row for a round that was not run:\n{s}");
    for want in
        ["storage=f32", "load average at start=", "recall@10", "allocated/live", "update_batch >= 0.8x"]
    {
        assert!(s.contains(want), "churn output lacks `{want}`:\n{s}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("c.json")).unwrap()).unwrap();
    assert_eq!(v["mode"], "churn");
    assert_eq!(v["storage"], "f32");
    assert_eq!(v["queries"], 20);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "build + 2 rounds");
    assert_eq!(rows[2]["live"], 8000);
    assert_eq!(v["fresh"]["live"], 8000);
    assert!(v["fresh"]["recall"].as_f64().unwrap() > 0.9, "{v}");
    assert!(rows[1]["update_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["ratios"]["qps"].as_f64().unwrap() > 0.0);

    // The churn options need --churn.
    let o = run(d.path(), &["bench", sift, "--limit", "100"]);
    expect_code(&o, 1);
}

#[test]
fn bench_reports_bad_dataset_folders() {
    let d = tmp();
    let o = run(d.path(), &["bench", "nowhere"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    dataset(&d.path().join("t"), false);
    std::fs::remove_file(d.path().join("t/gt.ivecs")).unwrap();
    let o = run(d.path(), &["bench", "t"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("gt.ivecs"), "{}", stderr(&o));
    std::fs::write(d.path().join("junk.json"), "{\"x\": 1}").unwrap();
    dataset(&d.path().join("u"), false);
    let o = run(d.path(), &["bench", "u", "--compare", "junk.json"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("results"), "{}", stderr(&o));
}

/// CSV carries expiry times too: `import` reads the `expires_at` column (or the one named by
/// `--expires-field`), `export` writes it back with the metadata, in CSV and in JSON Lines, and
/// an index built from the export holds the same metadata and expiry. A bad time is a bad row
/// naming its line and column.
#[test]
fn csv_expiry_times_round_trip_through_export() {
    let d = tmp();
    let far = 4_000_000_000_000u64; // in 2096
    let mut recs = records(40, 3, 28);
    for (i, r) in recs.iter_mut().enumerate() {
        r.expires_at = (i % 3 == 1).then_some(far + i as u64);
    }
    let expiring = recs.iter().filter(|r| r.expires_at.is_some()).count();
    write_csv(p(d.path(), "in.csv"), &recs, &CsvOptions::default()).unwrap();
    let head = std::fs::read_to_string(d.path().join("in.csv")).unwrap();
    assert!(head.lines().next().unwrap().starts_with("id,vector,expires_at,"), "{head}");
    for (ix, target) in [("ix.hnsw", vec!["-o", "ix.hnsw"]), ("db", vec!["--durable", "db"])] {
        expect_code(&run(d.path(), &[&["import", "in.csv"][..], &target].concat()), 0);
        let v = info_json(d.path(), ix);
        assert_eq!(v["metadata"]["expiring"], expiring, "{ix}");
        assert!(v["metadata"]["fields"].get("expires_at").is_none(), "{ix}: the expiry is not metadata");
        // Export to CSV gives back the input byte for byte; to JSON Lines, the same records.
        let out_csv = format!("{ix}.csv");
        expect_code(&run(d.path(), &["export", ix, "-o", &out_csv]), 0);
        assert_eq!(std::fs::read_to_string(d.path().join(&out_csv)).unwrap(), head, "{ix}");
        let out_jsonl = format!("{ix}.jsonl");
        expect_code(&run(d.path(), &["export", ix, "-o", &out_jsonl]), 0);
        let back: Vec<Record> =
            hnsw_batch::io::JsonlReader::open(d.path().join(&out_jsonl), JsonlOptions::default())
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
        assert_eq!(back, recs, "{ix}: JSON Lines export");
        // An index built from the CSV export exports the same again.
        let again = format!("{ix}.again.hnsw");
        expect_code(&run(d.path(), &["import", &out_csv, "-o", &again]), 0);
        expect_code(&run(d.path(), &["export", &again, "-o", &format!("{again}.csv")]), 0);
        assert_eq!(std::fs::read_to_string(d.path().join(format!("{again}.csv"))).unwrap(), head);
    }
    // Another column name, both ways.
    let opts = CsvOptions { expires_column: Some("ttl".into()), ..CsvOptions::default() };
    write_csv(p(d.path(), "ttl.csv"), &recs, &opts).unwrap();
    expect_code(&run(d.path(), &["import", "ttl.csv", "-o", "ttl.hnsw", "--expires-field", "ttl"]), 0);
    assert_eq!(info_json(d.path(), "ttl.hnsw")["metadata"]["expiring"], expiring);
    expect_code(&run(d.path(), &["export", "ttl.hnsw", "-o", "ttl.out.csv", "--expires-field", "ttl"]), 0);
    assert_eq!(
        std::fs::read_to_string(d.path().join("ttl.out.csv")).unwrap(),
        std::fs::read_to_string(d.path().join("ttl.csv")).unwrap()
    );
    // A bad time: a bad row, with its line and column.
    std::fs::write(d.path().join("bad.csv"), "id,vector,expires_at\n1,1;2,\n2,3;4,tomorrow\n").unwrap();
    let o = run(d.path(), &["import", "bad.csv", "-o", "bad.hnsw"]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("line 3")
            && stderr(&o).contains("`expires_at`")
            && stderr(&o).contains("tomorrow"),
        "{}",
        stderr(&o)
    );
    let o = run(d.path(), &["import", "bad.csv", "-o", "bad.hnsw", "--max-errors", "1"]);
    expect_code(&o, 0);
    assert_eq!(info_json(d.path(), "bad.hnsw")["vectors"], 1);
}
