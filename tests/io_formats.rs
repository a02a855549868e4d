//! Tests of `hnsw_batch::io`: round trips of every format, the siftsmall files,
//! truncated and hostile inputs, text-format edge cases and the error budget.
//!
//! Run with `cargo test --all-features --test io_formats`. Randomised tests use a
//! fixed seed, printed on stderr; set `IO_FORMATS_SEED` to try another one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use hnsw_batch::io::*;
use hnsw_batch::metadata::{MetaValue, Metadata};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------
// Helpers: allocation tracking, temp dirs, seeds.

/// Records the largest single allocation request made by the current thread.
struct Tracking;

thread_local! {
    static MAX_ALLOC: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = MAX_ALLOC.try_with(|m| {
        if size > m.get() {
            m.set(size);
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded contract of `GlobalAlloc::alloc_zeroed`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn max_alloc_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    MAX_ALLOC.with(|m| m.set(0));
    let out = f();
    (out, MAX_ALLOC.with(|m| m.get()))
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("hnsw_io_formats_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rng(test: &str) -> StdRng {
    let seed = std::env::var("IO_FORMATS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_1234_u64);
    eprintln!("{test}: seed = {seed} (set IO_FORMATS_SEED to change)");
    StdRng::seed_from_u64(seed)
}

fn data_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/siftsmall").join(file)
}

/// A random finite f32, mixing ordinary values with awkward ones.
fn random_f32(rng: &mut StdRng) -> f32 {
    match rng.random_range(0..10) {
        0 => *[0.0, -0.0, f32::MIN_POSITIVE, 1e-45, f32::MAX, f32::MIN, 0.1, 1.0 / 3.0, 16777217.0]
            .get(rng.random_range(0..9))
            .unwrap(),
        1 => f32::from_bits(rng.random::<u32>() & 0x7f7f_ffff) * if rng.random() { 1.0 } else { -1.0 },
        _ => rng.random_range(-1000.0f32..1000.0),
    }
}

fn random_rows(rng: &mut StdRng, n: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..n).map(|_| (0..dim).map(|_| random_f32(rng)).collect()).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn fvecs_bytes(rows: &[Vec<f32>]) -> Vec<u8> {
    let mut out = Vec::new();
    write_fvecs_to(&mut out, rows).unwrap();
    out
}

// ---------------------------------------------------------------------------
// TEXMEX formats.

#[test]
fn fvecs_round_trip_random() {
    let mut rng = rng("fvecs_round_trip_random");
    let dir = TempDir::new("fvecs_rt");
    for &dim in &[1usize, 3, 17, 128] {
        let n = rng.random_range(0..40);
        let rows = random_rows(&mut rng, n, dim);
        let path = dir.path(&format!("v{dim}.fvecs"));
        assert_eq!(write_fvecs(&path, &rows).unwrap(), n);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, n * (4 + 4 * dim));

        let set = read_fvecs(&path).unwrap();
        assert_eq!(set.len(), n);
        assert_eq!(set.dim(), if n == 0 { 0 } else { dim });
        assert_eq!(set.element(), ElementKind::F32);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(bits(set.row(i)), bits(row));
            assert_eq!(set.get(i), Some(row.as_slice()));
        }
        assert_eq!(set.get(n), None);
        assert_eq!(read_vectors(&path).unwrap(), set);

        // Same bytes through the streaming reader over an in-memory stream.
        let bytes = std::fs::read(&path).unwrap();
        let streamed: Vec<Vec<f32>> =
            VecsReader::new(Cursor::new(&bytes), ElementKind::F32).collect::<Result<_>>().unwrap();
        assert_eq!(streamed.len(), n);
        for (a, b) in streamed.iter().zip(&rows) {
            assert_eq!(bits(a), bits(b));
        }
        assert_eq!(read_vecs_from(Cursor::new(&bytes), ElementKind::F32).unwrap(), set);
    }
}

#[test]
fn bvecs_round_trip_random_and_range_checks() {
    let mut rng = rng("bvecs_round_trip_random_and_range_checks");
    let dir = TempDir::new("bvecs_rt");
    let rows: Vec<Vec<f32>> =
        (0..25).map(|_| (0..9).map(|_| f32::from(rng.random::<u8>())).collect()).collect();
    let path = dir.path("b.bvecs");
    assert_eq!(write_bvecs(&path, &rows).unwrap(), 25);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 25 * (4 + 9));
    let set = read_bvecs(&path).unwrap();
    assert_eq!(set.element(), ElementKind::U8);
    assert_eq!((set.len(), set.dim()), (25, 9));
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(set.row(i), row.as_slice());
    }
    assert_eq!(read_vectors(&path).unwrap(), set);

    for bad in [0.5f32, 256.0, -1.0, f32::NAN, f32::INFINITY] {
        let rows = vec![vec![1.0, 2.0], vec![3.0, bad]];
        match write_bvecs_to(Vec::new(), &rows) {
            Err(FormatError::ValueOutOfRange { record: 1, component: 1, target: "u8", .. }) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
    // -0.0 and 255 are fine.
    let mut out = Vec::new();
    write_bvecs_to(&mut out, [[-0.0f32, 255.0]]).unwrap();
    assert_eq!(out, [2, 0, 0, 0, 0, 255]);
}

#[test]
fn ivecs_round_trip_random() {
    let mut rng = rng("ivecs_round_trip_random");
    let dir = TempDir::new("ivecs_rt");
    let mut rows: Vec<Vec<i32>> = (0..30).map(|_| (0..7).map(|_| rng.random::<i32>()).collect()).collect();
    rows.push(vec![i32::MIN, i32::MAX, 0, -1, 1, 2, 3]);
    let path = dir.path("gt.ivecs");
    assert_eq!(write_ivecs(&path, &rows).unwrap(), 31);
    assert_eq!(read_ivecs(&path).unwrap(), rows);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(read_ivecs_from(Cursor::new(&bytes)).unwrap(), rows);
    let mut r = IvecsReader::new(Cursor::new(&bytes));
    assert_eq!(r.next().unwrap().unwrap(), rows[0]);
    assert_eq!(r.dim(), Some(7));
    assert_eq!(r.records_read(), 1);
}

#[test]
fn vecs_writers_validate() {
    // Dimension mismatch, empty rows, non-finite values.
    match write_fvecs_to(Vec::new(), [vec![1.0f32, 2.0], vec![1.0]]) {
        Err(FormatError::DimensionMismatch { record: 1, expected: 2, got: 1 }) => {}
        other => panic!("{other:?}"),
    }
    match write_fvecs_to(Vec::new(), [Vec::<f32>::new()]) {
        Err(FormatError::BadDimension { record: 0, dim: 0 }) => {}
        other => panic!("{other:?}"),
    }
    match write_ivecs_to(Vec::new(), [vec![1], vec![2, 3]]) {
        Err(FormatError::DimensionMismatch { record: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut out = Vec::new();
        match write_fvecs_to(&mut out, [vec![1.0f32, 2.0], vec![0.0, bad]]) {
            Err(FormatError::NonFinite { record: 1, component: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        // Only whole, valid records were written.
        assert_eq!(out.len(), 12);
    }
}

#[test]
fn siftsmall_base_and_ground_truth() {
    let base = read_fvecs(data_path("base.fvecs")).unwrap();
    assert_eq!((base.len(), base.dim()), (10_000, 128));
    assert_eq!(base.element(), ElementKind::F32);
    assert!(base.data().iter().all(|&v| v.fract() == 0.0 && (0.0..=255.0).contains(&v)));
    assert_eq!(read_vectors(data_path("base.fvecs")).unwrap(), base);

    // The streaming reader sees the same records.
    let reader = VecsReader::open(data_path("base.fvecs"), ElementKind::F32).unwrap();
    let mut count = 0;
    for (i, row) in reader.enumerate() {
        assert_eq!(row.unwrap().as_slice(), base.row(i));
        count += 1;
    }
    assert_eq!(count, 10_000);

    let queries = read_fvecs(data_path("query.fvecs")).unwrap();
    assert_eq!((queries.len(), queries.dim()), (100, 128));

    let gt = read_ivecs(data_path("gt.ivecs")).unwrap();
    assert_eq!(gt.len(), 100);
    assert!(gt.iter().all(|r| r.len() == 100));
    assert!(gt.iter().flatten().all(|&id| (0..10_000).contains(&id)));

    // Brute force agrees with the ground truth (ties broken by smaller id).
    for (q, truth) in gt.iter().enumerate().take(5) {
        let query = queries.row(q);
        let mut d: Vec<(f64, usize)> = base
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s: f64 = v.iter().zip(query).map(|(a, b)| f64::from(a - b).powi(2)).sum();
                (s, i)
            })
            .collect();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let top: Vec<i32> = d.iter().take(10).map(|&(_, i)| i as i32).collect();
        assert_eq!(top.as_slice(), &truth[..10], "query {q}");
    }

    // The base is byte data: it survives a bvecs round trip.
    let dir = TempDir::new("sift_bvecs");
    let p = dir.path("base.bvecs");
    write_bvecs(&p, &base).unwrap();
    let b = read_bvecs(&p).unwrap();
    assert_eq!(b.element(), ElementKind::U8);
    assert_eq!(b.data(), base.data());
}

/// Expected outcome of reading a vecs stream cut to `len` bytes, for records of
/// `rec` bytes (4-byte header + body).
fn expect_vecs_truncation(len: usize, rec: usize, err: Option<&FormatError>, ok_records: Option<usize>) {
    let whole = len / rec;
    let part = len % rec;
    if part == 0 {
        assert_eq!(ok_records, Some(whole), "len {len}: boundary cut must give {whole} records");
        assert!(err.is_none());
        return;
    }
    let (offset, needed, available) =
        if part < 4 { (whole * rec, 4, part) } else { (whole * rec + 4, rec - 4, part - 4) };
    match err {
        Some(FormatError::Truncated { record, offset: o, needed: n, available: a }) => assert_eq!(
            (*record, *o, *n, *a),
            (whole as u64, offset as u64, needed as u64, available as u64),
            "len {len}"
        ),
        other => panic!("len {len}: expected Truncated, got {other:?}"),
    }
}

#[test]
fn vecs_every_truncation() {
    let dir = TempDir::new("vecs_trunc");
    let rows = vec![vec![1.0f32, 2.0, 3.0, 4.0], vec![5.0, 6.0, 7.0, 8.0], vec![9.0, 10.0, 11.0, 12.0]];
    let ints: Vec<Vec<i32>> = vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10, 11, 12]];
    let mut fv = Vec::new();
    write_fvecs_to(&mut fv, &rows).unwrap();
    let mut bv = Vec::new();
    write_bvecs_to(&mut bv, &rows).unwrap();
    let mut iv = Vec::new();
    write_ivecs_to(&mut iv, &ints).unwrap();

    for (name, full, rec, element) in [
        ("f.fvecs", &fv, 20, Some(ElementKind::F32)),
        ("b.bvecs", &bv, 8, Some(ElementKind::U8)),
        ("i.ivecs", &iv, 20, None),
    ] {
        assert_eq!(full.len(), 3 * rec);
        let path = dir.path(name);
        for len in 0..=full.len() {
            let cut = &full[..len];
            std::fs::write(&path, cut).unwrap();
            let (stream, file) = match element {
                Some(el) => {
                    let s = read_vecs_from(Cursor::new(cut), el).map(|s| s.len());
                    let f = read_vectors(&path).map(|s| s.len());
                    // The streaming reader yields the complete records, then the error.
                    let items: Vec<_> = VecsReader::new(Cursor::new(cut), el).collect();
                    assert_eq!(items.len(), len / rec + usize::from(len % rec != 0));
                    for (i, it) in items.iter().take(len / rec).enumerate() {
                        assert_eq!(it.as_ref().unwrap(), &rows[i]);
                    }
                    (s, f)
                }
                None => {
                    (read_ivecs_from(Cursor::new(cut)).map(|v| v.len()), read_ivecs(&path).map(|v| v.len()))
                }
            };
            for got in [stream, file] {
                match got {
                    Ok(n) => expect_vecs_truncation(len, rec, None, Some(n)),
                    Err(e) => expect_vecs_truncation(len, rec, Some(&e), None),
                }
            }
        }
    }
}

#[test]
fn vecs_bad_dimensions_and_mismatch() {
    for dim in [0i32, -1, i32::MIN, (1 << 20) + 1, i32::MAX] {
        let mut bytes = dim.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 64]);
        let (res, max) = max_alloc_during(|| read_vecs_from(Cursor::new(&bytes), ElementKind::F32));
        match res {
            Err(FormatError::BadDimension { record: 0, dim: d }) => assert_eq!(d, i64::from(dim)),
            other => panic!("dim {dim}: {other:?}"),
        }
        assert!(max < 1 << 16, "dim {dim}: allocated {max} bytes");
    }
    // A valid record followed by one with a bad dimension: reported as record 1.
    let mut bytes = fvecs_bytes(&[vec![1.0, 2.0]]);
    bytes.extend_from_slice(&0i32.to_le_bytes());
    match read_vecs_from(Cursor::new(&bytes), ElementKind::F32) {
        Err(FormatError::BadDimension { record: 1, dim: 0 }) => {}
        other => panic!("{other:?}"),
    }

    // Dimension mismatch: the record is consumed and the stream goes on.
    let mut bytes = fvecs_bytes(&[vec![1.0, 2.0, 3.0]]);
    bytes.extend(fvecs_bytes(&[vec![4.0, 5.0]]));
    bytes.extend(fvecs_bytes(&[vec![6.0, 7.0, 8.0]]));
    let items: Vec<_> = VecsReader::new(Cursor::new(&bytes), ElementKind::F32).collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap(), &[1.0, 2.0, 3.0]);
    match &items[1] {
        Err(FormatError::DimensionMismatch { record: 1, expected: 3, got: 2 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(items[2].as_ref().unwrap(), &[6.0, 7.0, 8.0]);
    assert!(matches!(
        read_vecs_from(Cursor::new(&bytes), ElementKind::F32),
        Err(FormatError::DimensionMismatch { record: 1, .. })
    ));
    // expect_dim applies from the first record.
    let mut r = VecsReader::new(Cursor::new(&bytes), ElementKind::F32).expect_dim(2);
    assert!(matches!(r.next(), Some(Err(FormatError::DimensionMismatch { record: 0, expected: 2, got: 3 }))));
    assert_eq!(r.next().unwrap().unwrap(), vec![4.0, 5.0]);
}

#[test]
fn huge_vecs_dimension_is_not_allocated() {
    let dir = TempDir::new("vecs_huge");
    // The largest accepted dimension (4 MiB of floats) but only 8 bytes of data.
    let mut bytes = ((1i32) << 20).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 8]);
    let (res, max) = max_alloc_during(|| read_vecs_from(Cursor::new(&bytes), ElementKind::F32));
    assert!(
        matches!(res, Err(FormatError::Truncated { record: 0, offset: 4, needed: 4194304, available: 8 })),
        "{res:?}"
    );
    assert!(max < 1 << 16, "stream: allocated {max} bytes");

    let path = dir.path("huge.fvecs");
    std::fs::write(&path, &bytes).unwrap();
    let (res, max) = max_alloc_during(|| read_fvecs(&path));
    assert!(matches!(res, Err(FormatError::Truncated { available: 8, .. })), "{res:?}");
    assert!(max < 1 << 17, "file: allocated {max} bytes");
}

#[test]
fn non_finite_values_rejected_when_reading() {
    let mut bytes = fvecs_bytes(&[vec![1.0, 2.0, 3.0]]);
    let mut rec = 3i32.to_le_bytes().to_vec();
    for v in [4.0f32, 5.0, f32::NAN] {
        rec.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&rec);
    bytes.extend(fvecs_bytes(&[vec![7.0, 8.0, 9.0]]));
    match read_vecs_from(Cursor::new(&bytes), ElementKind::F32) {
        Err(FormatError::NonFinite { record: 1, component: 2, value }) => assert!(value.is_nan()),
        other => panic!("{other:?}"),
    }
    // The streaming reader skips past the bad record.
    let items: Vec<_> = VecsReader::new(Cursor::new(&bytes), ElementKind::F32).collect();
    assert_eq!(items.len(), 3);
    assert!(items[1].is_err());
    assert_eq!(items[2].as_ref().unwrap(), &[7.0, 8.0, 9.0]);
}

// ---------------------------------------------------------------------------
// NumPy.

/// Builds an npy file by hand (any version, any header text).
fn npy_bytes(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[major, 0]);
    let mut h = header.to_owned();
    let pre = if major == 1 { 10 } else { 12 };
    while !(pre + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    if major == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn npy_round_trip_random() {
    let mut rng = rng("npy_round_trip_random");
    let dir = TempDir::new("npy_rt");
    for &dim in &[1usize, 5, 64] {
        let n = rng.random_range(0..30);
        let rows = random_rows(&mut rng, n, dim);
        let set = VecSet::new(dim, rows.concat(), ElementKind::F32).unwrap();
        let path = dir.path(&format!("v{dim}.npy"));
        write_npy(&path, &set).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // Version 1.0 header, data aligned to 64 bytes, numpy's dict layout.
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(bytes.len(), 10 + hlen + n * dim * 4);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert_eq!(
            header.trim_end(),
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dim}), }}")
        );
        assert!(header.ends_with('\n'));

        let back = read_npy(&path).unwrap();
        assert_eq!((back.len(), back.dim()), (n, dim));
        assert_eq!(bits(back.data()), bits(set.data()));
        assert_eq!(read_vectors(&path).unwrap(), back);
        assert_eq!(read_npy_from(Cursor::new(&bytes)).unwrap(), back);
        let r = NpyReader::new(Cursor::new(&bytes)).unwrap();
        assert_eq!((r.rows(), r.dim(), r.dtype()), (n as u64, dim, NpyDtype::F32));
    }

    // Byte data is written as |u1 and read back as U8.
    let data: Vec<f32> = (0..40).map(|_| f32::from(rng.random::<u8>())).collect();
    let set = VecSet::new(8, data, ElementKind::U8).unwrap();
    let path = dir.path("u8.npy");
    write_npy(&path, &set).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(std::str::from_utf8(&bytes[10..128]).unwrap().contains("'descr': '|u1'"));
    assert_eq!(bytes.len(), 128 + 40);
    let back = read_npy(&path).unwrap();
    assert_eq!(back, set);
    assert_eq!(back.element(), ElementKind::U8);

    // Ids.
    let mut ids: Vec<u64> = (0..100).map(|_| rng.random()).collect();
    ids.extend([0, u64::MAX]);
    let path = dir.path("ids.npy");
    write_npy_ids(&path, &ids).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(std::str::from_utf8(&bytes[10..128])
        .unwrap()
        .starts_with("{'descr': '<u8', 'fortran_order': False, 'shape': (102,), }"));
    assert_eq!(read_npy_ids(&path).unwrap(), ids);
    assert_eq!(read_npy_ids_from(Cursor::new(&bytes)).unwrap(), ids);
    write_npy_ids(&path, &[]).unwrap();
    assert_eq!(read_npy_ids(&path).unwrap(), Vec::<u64>::new());
}

#[test]
fn npy_writer_validates() {
    let set = VecSet::new(2, vec![1.0, f32::NAN], ElementKind::F32).unwrap();
    assert!(matches!(
        write_npy_to(Vec::new(), &set),
        Err(FormatError::NonFinite { record: 0, component: 1, .. })
    ));
    let set = VecSet::new(2, vec![1.0, 2.5], ElementKind::U8).unwrap();
    assert!(matches!(write_npy_to(Vec::new(), &set), Err(FormatError::ValueOutOfRange { component: 1, .. })));
    let empty = VecSet::new(0, vec![], ElementKind::F32).unwrap();
    assert!(matches!(write_npy_to(Vec::new(), &empty), Err(FormatError::InvalidArgument { .. })));
    // VecSet itself refuses inconsistent shapes.
    assert!(VecSet::new(3, vec![1.0; 4], ElementKind::F32).is_err());
    assert!(VecSet::new(0, vec![1.0], ElementKind::F32).is_err());
}

#[test]
fn npy_header_variants() {
    let two_rows = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    for major in [1, 2, 3] {
        let set = read_npy_from(Cursor::new(npy_bytes(major, h, &two_rows))).unwrap();
        assert_eq!(set.data(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
    // Key order, double quotes, Python 2 long suffix, no trailing comma.
    let h = "{\"shape\": (2L, 3L), \"fortran_order\": False, \"descr\": \"<f4\"}";
    assert_eq!(read_npy_from(Cursor::new(npy_bytes(1, h, &two_rows))).unwrap().len(), 2);

    // <f8 converts to f32; out-of-range values become NonFinite.
    let f8: Vec<u8> = [0.1f64, -2.5].iter().flat_map(|x| x.to_le_bytes()).collect();
    let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }";
    let set = read_npy_from(Cursor::new(npy_bytes(1, h, &f8))).unwrap();
    assert_eq!(set.data(), &[0.1f32, -2.5]);
    let f8: Vec<u8> = [1.0f64, 1e300].iter().flat_map(|x| x.to_le_bytes()).collect();
    assert!(matches!(
        read_npy_from(Cursor::new(npy_bytes(1, h, &f8))),
        Err(FormatError::NonFinite { record: 0, component: 1, .. })
    ));

    let cases: &[(&str, &str)] = &[
        ("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", "UnsupportedDtype"),
        ("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", "UnsupportedDtype"),
        ("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2,), }", "UnsupportedDtype"),
        ("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", "FortranOrder"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", "UnsupportedShape"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", "UnsupportedShape"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", "UnsupportedShape"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0), }", "BadDimension"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1048577), }", "BadDimension"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 99999999999999999999), }", "BadHeader"),
        ("{'descr': '<f4', 'fortran_order': False}", "BadHeader"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", "BadHeader"),
        ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", "BadHeader"),
        ("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", "BadHeader"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}", "BadHeader"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", "BadHeader"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x", "BadHeader"),
        ("{'descr': '<f4 , 'fortran_order': False, 'shape': (2, 3)}", "BadHeader"),
        ("['descr']", "BadHeader"),
        ("", "BadHeader"),
    ];
    for (header, want) in cases {
        let got = read_npy_from(Cursor::new(npy_bytes(1, header, &two_rows)));
        let name = match &got {
            Err(FormatError::UnsupportedDtype { .. }) => "UnsupportedDtype",
            Err(FormatError::FortranOrder) => "FortranOrder",
            Err(FormatError::UnsupportedShape { .. }) => "UnsupportedShape",
            Err(FormatError::BadDimension { .. }) => "BadDimension",
            Err(FormatError::BadHeader { .. }) => "BadHeader",
            other => panic!("{header}: {other:?}"),
        };
        assert_eq!(name, *want, "{header}");
    }

    // Deeply nested literals are refused without recursing into them.
    let deep = format!("{{'descr': {}1{}}}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(matches!(
        read_npy_from(Cursor::new(npy_bytes(2, &deep, &[]))),
        Err(FormatError::BadHeader { .. })
    ));
    // Bad magic and versions.
    let mut bad = npy_bytes(1, "{}", &[]);
    bad[1] = b'X';
    assert!(matches!(read_npy_from(Cursor::new(&bad)), Err(FormatError::BadHeader { offset: 0, .. })));
    for (major, minor) in [(0u8, 0u8), (4, 0), (1, 1)] {
        let mut bad = npy_bytes(1, "{}", &[]);
        bad[6] = major;
        bad[7] = minor;
        assert!(matches!(read_npy_from(Cursor::new(&bad)), Err(FormatError::BadHeader { offset: 6, .. })));
    }

    // Trailing data is refused when reading a file.
    let dir = TempDir::new("npy_variants");
    let path = dir.path("trailing.npy");
    let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    let mut bytes = npy_bytes(1, h, &two_rows);
    bytes.extend_from_slice(&[0; 5]);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(read_npy(&path), Err(FormatError::TrailingData { offset: 152, len: 5 })));

    // Id arrays: <i8 accepted when non-negative; other dtypes and shapes refused.
    let i8s: Vec<u8> = [5i64, 0, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
    let h = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }";
    assert_eq!(read_npy_ids_from(Cursor::new(npy_bytes(1, h, &i8s))).unwrap(), vec![5, 0, 7]);
    let i8s: Vec<u8> = [5i64, -2].iter().flat_map(|x| x.to_le_bytes()).collect();
    let h = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
    assert!(matches!(
        read_npy_ids_from(Cursor::new(npy_bytes(1, h, &i8s))),
        Err(FormatError::NegativeId { record: 1, value: -2 })
    ));
    let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    assert!(matches!(
        read_npy_ids_from(Cursor::new(npy_bytes(1, h, &[0; 8]))),
        Err(FormatError::UnsupportedDtype { .. })
    ));
    let h = "{'descr': '<u8', 'fortran_order': False, 'shape': (1, 1), }";
    assert!(matches!(
        read_npy_ids_from(Cursor::new(npy_bytes(1, h, &[0; 8]))),
        Err(FormatError::UnsupportedShape { expected_ndim: 1, .. })
    ));
    // Vector readers refuse id arrays.
    let h = "{'descr': '<u8', 'fortran_order': False, 'shape': (1, 1), }";
    assert!(matches!(
        read_npy_from(Cursor::new(npy_bytes(1, h, &[0; 8]))),
        Err(FormatError::UnsupportedDtype { .. })
    ));
}

#[test]
fn npy_every_truncation() {
    let dir = TempDir::new("npy_trunc");
    let set = VecSet::new(4, (0..12).map(|i| i as f32).collect(), ElementKind::F32).unwrap();
    let mut f = Vec::new();
    write_npy_to(&mut f, &set).unwrap();
    let u8set = VecSet::new(4, (0..12).map(|i| i as f32).collect(), ElementKind::U8).unwrap();
    let mut u = Vec::new();
    write_npy_to(&mut u, &u8set).unwrap();
    let mut ids = Vec::new();
    write_npy_ids_to(&mut ids, &[1, 2, 3]).unwrap();
    // Every header is padded to 128 bytes (10 + dict + padding + newline).
    assert_eq!((f.len(), u.len(), ids.len()), (128 + 48, 128 + 12, 128 + 24));

    let path = dir.path("t.npy");
    for (full, is_ids) in [(&f, false), (&u, false), (&ids, true)] {
        for len in 0..full.len() {
            let cut = &full[..len];
            std::fs::write(&path, cut).unwrap();
            if is_ids {
                assert!(read_npy_ids(&path).is_err(), "len {len}");
                assert!(read_npy_ids_from(Cursor::new(cut)).is_err(), "len {len}");
                continue;
            }
            let from_file = read_npy(&path);
            let from_stream = read_npy_from(Cursor::new(cut));
            for res in [from_file, from_stream] {
                match res {
                    Err(FormatError::BadHeader { .. }) => assert!(len < 128, "len {len}"),
                    Err(FormatError::Truncated { record, .. }) => {
                        assert!(len >= 128, "len {len}");
                        let row = if full.len() == 128 + 48 { 16 } else { 4 };
                        assert_eq!(record as usize, (len - 128) / row, "len {len}");
                    }
                    other => panic!("len {len}: {other:?}"),
                }
            }
            // The streaming reader yields the complete rows, then one error.
            if let Ok(r) = NpyReader::new(Cursor::new(cut)) {
                let items: Vec<_> = r.collect();
                assert!(items.last().unwrap().is_err(), "len {len}");
                assert!(items.iter().rev().skip(1).all(|x| x.is_ok()));
            }
        }
        std::fs::write(&path, full).unwrap();
        if is_ids {
            assert_eq!(read_npy_ids(&path).unwrap(), vec![1, 2, 3]);
        } else {
            assert_eq!(read_npy(&path).unwrap().len(), 3);
        }
    }
}

#[test]
fn huge_npy_shapes_are_not_allocated() {
    let dir = TempDir::new("npy_huge");
    let path = dir.path("huge.npy");
    let cases = [
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 128), }", false),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 1048576), }", false),
        ("{'descr': '<u8', 'fortran_order': False, 'shape': (1125899906842624,), }", true),
    ];
    for (h, is_ids) in cases {
        let bytes = npy_bytes(1, h, &[0; 32]);
        std::fs::write(&path, &bytes).unwrap();
        let (file_err, file_max) = max_alloc_during(|| {
            if is_ids {
                read_npy_ids(&path).map(|_| ())
            } else {
                read_npy(&path).map(|_| ())
            }
        });
        assert!(matches!(file_err, Err(FormatError::Truncated { .. })), "{h}: {file_err:?}");
        assert!(file_max < 1 << 17, "{h}: file read allocated {file_max} bytes");
        let (stream_err, stream_max) = max_alloc_during(|| {
            if is_ids {
                read_npy_ids_from(Cursor::new(&bytes)).map(|_| ())
            } else {
                read_npy_from(Cursor::new(&bytes)).map(|_| ())
            }
        });
        assert!(matches!(stream_err, Err(FormatError::Truncated { .. })), "{h}: {stream_err:?}");
        assert!(stream_max <= 1 << 20, "{h}: stream read allocated {stream_max} bytes");
    }

    // A version 2.0 header length of 4 GiB is refused before it is read.
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(b"{'descr': '<f4'");
    let (res, max) = max_alloc_during(|| read_npy_from(Cursor::new(&bytes)));
    assert!(matches!(res, Err(FormatError::BadHeader { offset: 8, .. })), "{res:?}");
    assert!(max < 1 << 16);
    // A plausible length that the stream does not hold.
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
    bytes.extend_from_slice(b"{'descr': '<f4'");
    let (res, max) = max_alloc_during(|| read_npy_from(Cursor::new(&bytes)));
    assert!(matches!(res, Err(FormatError::BadHeader { .. })), "{res:?}");
    assert!(max < 1 << 16);
}

// ---------------------------------------------------------------------------
// Text formats: shared random records.

fn random_string(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "a", "Z", " ", ",", ";", "\"", "\"\"", "\n", "\r\n", "\t", "é", "日本", "🦀", "\\", "{", "}", "[",
        "]", "42", "true", "-1.5", "null", "NaN", "", "'",
    ];
    let n = rng.random_range(0..6);
    (0..n).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect()
}

fn random_metadata(rng: &mut StdRng) -> Metadata {
    let mut m = Metadata::new();
    for _ in 0..rng.random_range(0..5) {
        let key = format!("k{}", rng.random_range(0..6));
        let value = match rng.random_range(0..5) {
            0 => MetaValue::Str(random_string(rng)),
            1 => MetaValue::Int(match rng.random_range(0..3) {
                0 => i64::MIN,
                1 => i64::MAX,
                _ => rng.random_range(-1000..1000),
            }),
            2 => MetaValue::Float(match rng.random_range(0..4) {
                0 => 3.0,
                1 => -0.0,
                2 => f64::from_bits(rng.random::<u64>() & 0x7fef_ffff_ffff_ffff),
                _ => rng.random_range(-1e6..1e6),
            }),
            _ => MetaValue::Bool(rng.random()),
        };
        m.insert(key, value);
    }
    m
}

fn random_records(rng: &mut StdRng, n: usize, dim: usize) -> Vec<Record> {
    (0..n)
        .map(|_| Record {
            id: if rng.random_range(0..10) == 0 { u64::MAX } else { rng.random() },
            vector: (0..dim).map(|_| random_f32(rng)).collect(),
            metadata: random_metadata(rng),
            expires_at: None,
        })
        .collect()
}

/// Exact comparison (bitwise for floats).
fn assert_same_records(a: &[Record], b: &[Record]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.id, y.id);
        assert_eq!(x.expires_at, y.expires_at, "id {}", x.id);
        assert_eq!(bits(&x.vector), bits(&y.vector), "id {}", x.id);
        assert_eq!(x.metadata.len(), y.metadata.len(), "id {}: {:?} vs {:?}", x.id, x.metadata, y.metadata);
        for ((k1, v1), (k2, v2)) in x.metadata.iter().zip(&y.metadata) {
            assert_eq!(k1, k2);
            match (v1, v2) {
                (MetaValue::Float(f1), MetaValue::Float(f2)) => {
                    assert_eq!(f1.to_bits(), f2.to_bits())
                }
                _ => assert_eq!(v1, v2, "id {} key {k1}", x.id),
            }
        }
    }
}

fn csv_records(text: &str, options: CsvOptions) -> Vec<std::result::Result<Record, RowError>> {
    CsvReader::new(Cursor::new(text.as_bytes()), options).unwrap().collect()
}

fn meta(pairs: &[(&str, MetaValue)]) -> Metadata {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

// ---------------------------------------------------------------------------
// CSV.

#[test]
fn csv_round_trip_random() {
    let mut rng = rng("csv_round_trip_random");
    let dir = TempDir::new("csv_rt");
    let layouts = [
        VectorColumns::default(),
        VectorColumns::Single { column: "emb".into(), separator: ' ' },
        VectorColumns::Single { column: "emb".into(), separator: ',' },
        VectorColumns::Prefix("v".into()),
    ];
    for (i, layout) in layouts.into_iter().enumerate() {
        for delimiter in [',', ';', '\t'] {
            let dim = rng.random_range(1..6);
            let records = random_records(&mut rng, 40, dim);
            let options = CsvOptions { delimiter, vector: layout.clone(), ..CsvOptions::default() };
            let path = dir.path(&format!("r{i}.csv"));
            assert_eq!(write_csv(&path, &records, &options).unwrap(), 40);
            let back = CsvReader::open(&path, options.clone()).unwrap();
            let (good, bad) = collect_with_max_errors(back, 0).unwrap();
            assert!(bad.is_empty());
            assert_same_records(&records, &good);
        }
    }
    // An explicit column list.
    let records = random_records(&mut rng, 10, 3);
    let options = CsvOptions {
        vector: VectorColumns::List(vec!["x".into(), "y".into(), "z".into()]),
        ..CsvOptions::default()
    };
    let mut out = Vec::new();
    write_csv_to(&mut out, &records, &options).unwrap();
    assert!(out.starts_with(b"id,x,y,z"));
    let back: Vec<Record> =
        CsvReader::new(Cursor::new(&out), options).unwrap().collect::<std::result::Result<_, _>>().unwrap();
    assert_same_records(&records, &back);
}

#[test]
fn csv_typed_metadata_and_layouts() {
    let text = "id,vector,color,n,ratio,flag,quoted_num,empty,empty_quoted\n\
                1,0.5;1.5,red,3,0.25,TRUE,\"3\",,\"\"\n";
    let rows = csv_records(text, CsvOptions::default());
    let r = rows[0].as_ref().unwrap();
    assert_eq!(r.id, 1);
    assert_eq!(r.vector, vec![0.5, 1.5]);
    assert_eq!(
        r.metadata,
        meta(&[
            ("color", "red".into()),
            ("n", MetaValue::Int(3)),
            ("ratio", MetaValue::Float(0.25)),
            ("flag", MetaValue::Bool(true)),
            ("quoted_num", "3".into()),
            ("empty_quoted", "".into()),
        ])
    );

    // Strings that merely look special stay strings.
    let text = "id,vector,a,b,c\n1,1,nan,inf,1.2.3\n";
    let r = csv_records(text, CsvOptions::default()).remove(0).unwrap();
    assert_eq!(r.metadata, meta(&[("a", "nan".into()), ("b", "inf".into()), ("c", "1.2.3".into())]));

    // Prefix columns in any order, with extra columns.
    let text = "v2,id,v0,note,v1\n3,9,1,x,2\n";
    let options = CsvOptions { vector: VectorColumns::Prefix("v".into()), ..CsvOptions::default() };
    let r = csv_records(text, options.clone()).remove(0).unwrap();
    assert_eq!((r.id, r.vector.clone()), (9, vec![1.0, 2.0, 3.0]));
    assert_eq!(r.metadata, meta(&[("note", "x".into())]));
    // A gap in the numbering.
    let err = CsvReader::new(Cursor::new("id,v0,v2\n1,2,3\n"), options).unwrap_err();
    assert!(matches!(err, FormatError::MissingColumn { ref column, .. } if column == "v1"), "{err:?}");
    assert_eq!(err.to_string(), "missing column `v1` in the CSV header (its columns: `id`, `v0`, `v2`)");

    // Whitespace separator, brackets, selected metadata columns, auto ids.
    let text = "vector,a,b\n\"[1 2  3]\",x,y\n  4\t5 6 ,z,w\n";
    let options = CsvOptions {
        vector: VectorColumns::Single { column: "vector".into(), separator: ' ' },
        metadata_columns: Some(vec!["b".into()]),
        auto_id: true,
        ..CsvOptions::default()
    };
    let rows: Vec<Record> = csv_records(text, options).into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(rows[0].id, 0);
    assert_eq!(rows[1].id, 1);
    assert_eq!(rows[0].vector, vec![1.0, 2.0, 3.0]);
    assert_eq!(rows[1].vector, vec![4.0, 5.0, 6.0]);
    assert_eq!(rows[1].metadata, meta(&[("b", "w".into())]));

    // Missing columns and bad options are reported up front.
    for (text, options) in [
        ("vector\n1\n", CsvOptions::default()),
        ("id,x\n1,1\n", CsvOptions::default()),
        (
            "id,vector\n1,1\n",
            CsvOptions { metadata_columns: Some(vec!["nope".into()]), ..CsvOptions::default() },
        ),
    ] {
        assert!(matches!(CsvReader::new(Cursor::new(text), options), Err(FormatError::MissingColumn { .. })));
    }
    assert!(matches!(
        CsvReader::new(Cursor::new("id,vector,id\n"), CsvOptions::default()),
        Err(FormatError::Parse { line: 1, .. })
    ));
    assert!(matches!(CsvReader::new(Cursor::new(""), CsvOptions::default()), Err(FormatError::Parse { .. })));
    assert!(matches!(
        CsvReader::new(Cursor::new("id,vector\n"), CsvOptions { delimiter: '"', ..CsvOptions::default() }),
        Err(FormatError::InvalidArgument { .. })
    ));
}

#[test]
fn csv_quoting_edge_cases() {
    let text = "\u{feff}id,vector,note\r\n\
                1,1;2,\"a, b\"\r\n\
                2,3;4,\"she said \"\"hi\"\"\"\r\n\
                \r\n\
                3,5;6,\"two\nlines\"\n\
                4,7;8,\"\"\"\"\n\
                5,\"9;10\",plain\n\
                6,11;12,\"unterminated\n";
    let rows = csv_records(text, CsvOptions::default());
    assert_eq!(rows.len(), 6);
    let ok: Vec<&Record> = rows.iter().take(5).map(|r| r.as_ref().unwrap()).collect();
    assert_eq!(ok[0].metadata["note"], MetaValue::from("a, b"));
    assert_eq!(ok[1].metadata["note"], MetaValue::from("she said \"hi\""));
    assert_eq!(ok[2].metadata["note"], MetaValue::from("two\nlines"));
    assert_eq!(ok[3].metadata["note"], MetaValue::from("\""));
    assert_eq!(ok[4].vector, vec![9.0, 10.0]);
    assert_eq!(ok[4].metadata["note"], MetaValue::from("plain"));
    // The unterminated quote runs to the end of input; the row starts at line 9.
    match &rows[5] {
        Err(RowError { line: 9, error: FormatError::Parse { column: Some(9), .. } }) => {}
        other => panic!("{other:?}"),
    }

    // Per-row errors, with lines counted across a multi-line record.
    let text = "id,vector,note\n\
                1,1;2,\"x\ny\"\n\
                2,1;2,a\"b\n\
                3,1;2,\"a\"b\n\
                4,1;2\n\
                5,1;2,x,extra\n\
                ,1;2,x\n\
                -3,1;2,x\n\
                18446744073709551616,1;2,x\n\
                9,1;x,x\n\
                10,1;,x\n\
                11,,x\n\
                12,1;2;3,x\n\
                13,NaN;1,x\n\
                14,1;1e39,x\n\
                15,1;2,ok\n";
    let rows = csv_records(text, CsvOptions::default());
    let lines: Vec<usize> = rows.iter().filter_map(|r| r.as_ref().err().map(|e| e.line)).collect();
    assert_eq!(lines, (4..=16).collect::<Vec<_>>());
    let kinds: Vec<String> = rows
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| match &e.error {
            FormatError::Parse { column: Some(c), .. } => format!("parse@{c}"),
            FormatError::Parse { field: Some(f), .. } => format!("parse:{f}"),
            FormatError::Parse { .. } => "parse".into(),
            FormatError::MissingField { field, .. } => format!("missing:{field}"),
            FormatError::DimensionMismatch { record, .. } => format!("dim@{record}"),
            FormatError::NonFinite { record, component, .. } => format!("nonfinite@{record}.{component}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "parse@8",
            "parse@10",
            "parse",
            "parse",
            "missing:id",
            "parse:id",
            "parse:id",
            "parse:vector",
            "parse:vector",
            "missing:vector",
            "dim@11",
            "nonfinite@12.0",
            "nonfinite@13.1",
        ]
    );
    let first = rows[0].as_ref().unwrap();
    assert_eq!(first.metadata["note"], MetaValue::from("x\ny"));
    let last = rows.last().unwrap().as_ref().unwrap();
    assert_eq!(last.id, 15);
}

#[test]
fn csv_error_columns_count_characters() {
    // Columns are characters, not bytes, on both sides of a quoted field, and quoted text is
    // copied only where a doubled quote changes it.
    let text = "id,vector,note\n\
                1,1;2,é\"x\n\
                2,1;2,\"é\"x\n\
                3,1;2,\"é\"\"\",ü\"\n\
                4,1;2,\"é\"\"\"\n\
                5,1;2,\"é\"\n";
    let rows = csv_records(text, CsvOptions::default());
    let column = |i: usize| match &rows[i] {
        Err(RowError { error: FormatError::Parse { column, .. }, .. }) => *column,
        other => panic!("row {i}: {other:?}"),
    };
    assert_eq!(column(0), Some(8));
    assert_eq!(column(1), Some(10));
    assert_eq!(column(2), Some(14));
    assert_eq!(rows[3].as_ref().unwrap().metadata["note"], MetaValue::from("é\""));
    assert_eq!(rows[4].as_ref().unwrap().metadata["note"], MetaValue::from("é"));
}

#[test]
fn csv_writer_validates() {
    let rec = |id, v: Vec<f32>, m: Metadata| Record { id, vector: v, metadata: m, expires_at: None };
    let recs = vec![rec(1, vec![1.0, 2.0], Metadata::new()), rec(2, vec![1.0], Metadata::new())];
    assert!(matches!(
        write_csv_to(Vec::new(), &recs, &CsvOptions::default()),
        Err(FormatError::DimensionMismatch { record: 1, .. })
    ));
    let recs = vec![rec(1, vec![f32::NAN], Metadata::new())];
    assert!(matches!(
        write_csv_to(Vec::new(), &recs, &CsvOptions::default()),
        Err(FormatError::NonFinite { .. })
    ));
    let recs = vec![rec(1, vec![1.0], meta(&[("x", MetaValue::Float(f64::INFINITY))]))];
    assert!(matches!(
        write_csv_to(Vec::new(), &recs, &CsvOptions::default()),
        Err(FormatError::InvalidArgument { .. })
    ));
    let recs = vec![rec(1, vec![1.0], meta(&[("id", MetaValue::Int(1))]))];
    assert!(matches!(
        write_csv_to(Vec::new(), &recs, &CsvOptions::default()),
        Err(FormatError::InvalidArgument { .. })
    ));
    // Nothing is written when validation fails.
    let mut out = Vec::new();
    let recs = vec![rec(1, vec![1.0], Metadata::new()), rec(2, vec![f32::INFINITY], Metadata::new())];
    assert!(write_csv_to(&mut out, &recs, &CsvOptions::default()).is_err());
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------
// JSON Lines.

#[cfg(feature = "formats")]
mod jsonl {
    use super::*;

    fn jsonl_records(text: &str, options: JsonlOptions) -> Vec<std::result::Result<Record, RowError>> {
        JsonlReader::new(Cursor::new(text.as_bytes()), options).unwrap().collect()
    }

    #[test]
    fn jsonl_expiry_must_be_unix_milliseconds() {
        let line = |e: &str| format!("{{\"id\": 1, \"vector\": [1.0], \"expires_at\": {e}}}\n");
        let got = jsonl_records(&(line("1700000000000") + &line("null")), JsonlOptions::default());
        let ok: Vec<Option<u64>> = got.into_iter().map(|r| r.unwrap().expires_at).collect();
        assert_eq!(ok, [Some(1_700_000_000_000), None]);
        for bad in ["-1", "1.5", "\"1700\"", "true", "18446744073709551616"] {
            let r = jsonl_records(&line(bad), JsonlOptions::default());
            let e = r[0].as_ref().unwrap_err().to_string();
            assert!(e.contains("line 1") && e.contains("`expires_at`"), "{bad}: {e}");
        }
        let same = JsonlOptions { expires_field: "id".into(), ..JsonlOptions::default() };
        assert!(JsonlReader::new(Cursor::new(&b""[..]), same).is_err());
    }

    #[test]
    fn jsonl_round_trip_random() {
        let mut rng = rng("jsonl_round_trip_random");
        let dir = TempDir::new("jsonl_rt");
        for dim in [1, 4, 33] {
            let mut records = random_records(&mut rng, 50, dim);
            // JSON Lines also carry expiry times (CSV does not).
            for r in &mut records {
                r.expires_at = match rng.random_range(0..3) {
                    0 => None,
                    1 => Some(u64::MAX),
                    _ => Some(rng.random_range(0..u64::MAX / 2)),
                };
            }
            let path = dir.path("r.jsonl");
            let options = JsonlOptions::default();
            assert_eq!(write_jsonl(&path, &records, &options).unwrap(), 50);
            let (good, bad) = collect_with_max_errors(JsonlReader::open(&path, options).unwrap(), 0).unwrap();
            assert!(bad.is_empty());
            assert_same_records(&records, &good);
        }
        // Custom field names.
        let records = random_records(&mut rng, 5, 2);
        let options = JsonlOptions {
            id_field: "key".into(),
            vector_field: "emb\"edding".into(),
            metadata_field: "attrs".into(),
            expires_field: "ttl".into(),
            ..JsonlOptions::default()
        };
        let mut records = records;
        records[1].expires_at = Some(1_700_000_000_000);
        let mut out = Vec::new();
        write_jsonl_to(&mut out, &records, &options).unwrap();
        assert!(out.starts_with(b"{\"key\":"));
        let back: Vec<Record> = JsonlReader::new(Cursor::new(&out), options)
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_same_records(&records, &back);
    }

    #[test]
    fn jsonl_fields() {
        let text = r#"{"id": 7, "vector": [0.1, 0.2], "metadata": {"color": "red", "n": 3, "x": 1.5, "b": false, "z": null}}
{"vector": [1, 2], "id": "8", "extra": {"ignored": [1, 2]}}

{"id": 9, "vector": [1e-3, -2E2], "metadata": null}
"#;
        let rows: Vec<Record> =
            jsonl_records(text, JsonlOptions::default()).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].id, 7);
        assert_eq!(rows[0].vector, vec![0.1f32, 0.2]);
        assert_eq!(
            rows[0].metadata,
            meta(&[
                ("color", "red".into()),
                ("n", MetaValue::Int(3)),
                ("x", MetaValue::Float(1.5)),
                ("b", MetaValue::Bool(false)),
            ])
        );
        assert_eq!((rows[1].id, rows[1].metadata.len()), (8, 0));
        assert_eq!(rows[2].vector, vec![1e-3f32, -200.0]);

        // Missing ids: an error, unless auto_id (then the row index, blank lines not counted).
        let text = "{\"vector\": [1]}\n\n{\"id\": 5, \"vector\": [2]}\n{\"id\": null, \"vector\": [3]}\n";
        let rows = jsonl_records(text, JsonlOptions::default());
        assert!(
            matches!(&rows[0], Err(RowError { line: 1, error: FormatError::MissingField { field, .. } }) if field == "id")
        );
        assert_eq!(rows[1].as_ref().unwrap().id, 5);
        assert!(matches!(&rows[2], Err(RowError { line: 4, error: FormatError::MissingField { .. } })));
        let auto = JsonlOptions { auto_id: true, ..JsonlOptions::default() };
        let ids: Vec<u64> = jsonl_records(text, auto).into_iter().map(|r| r.unwrap().id).collect();
        assert_eq!(ids, vec![0, 5, 2]);

        let bad_lines = [
            ("{\"id\": 1}", "missing:vector"),
            ("{\"id\": 1, \"vector\": []}", "baddim"),
            ("{\"id\": 1, \"vector\": [1, \"2\"]}", "parse:vector"),
            ("{\"id\": 1, \"vector\": [[1], [2]]}", "parse:vector"),
            ("{\"id\": 1, \"vector\": \"1,2\"}", "parse:vector"),
            ("{\"id\": 1, \"vector\": [1, null]}", "parse:vector"),
            ("{\"id\": 1, \"vector\": [1, 1e39]}", "nonfinite"),
            ("{\"id\": -1, \"vector\": [1]}", "parse:id"),
            ("{\"id\": 1.5, \"vector\": [1]}", "parse:id"),
            ("{\"id\": 1e3, \"vector\": [1]}", "parse:id"),
            ("{\"id\": 18446744073709551616, \"vector\": [1]}", "parse:id"),
            ("{\"id\": true, \"vector\": [1]}", "parse:id"),
            ("{\"id\": 1, \"vector\": [1], \"metadata\": [1]}", "parse:metadata"),
            ("{\"id\": 1, \"vector\": [1], \"metadata\": {\"a\": [1]}}", "parse:metadata"),
            ("{\"id\": 1, \"vector\": [1], \"metadata\": {\"a\": {}}}", "parse:metadata"),
            ("{\"id\": 1, \"vector\": [1], \"metadata\": {\"a\": 9223372036854775808}}", "parse:metadata"),
            ("{\"id\": 1, \"vector\": [1], \"metadata\": {\"a\": 1e400}}", "parse:metadata"),
            ("{\"id\": 1, \"vector\": [1, 2]", "parse@col"),
            ("[1, 2]", "parse@col"),
            ("{\"id\": 1, \"vector\": [1]} trailing", "parse@col"),
            ("{\"id\": 1, \"vector\": [1, 2, 3]}", "dim"),
        ];
        let mut text = String::from("{\"id\": 0, \"vector\": [1]}\n");
        for (line, _) in &bad_lines {
            text.push_str(line);
            text.push('\n');
        }
        let rows = jsonl_records(&text, JsonlOptions::default());
        assert_eq!(rows.len(), bad_lines.len() + 1);
        for (i, (row, (line, want))) in rows.iter().skip(1).zip(&bad_lines).enumerate() {
            let e = row.as_ref().expect_err(line);
            assert_eq!(e.line, i + 2, "{line}");
            let got = match &e.error {
                FormatError::MissingField { field, .. } => format!("missing:{field}"),
                FormatError::BadDimension { dim: 0, .. } => "baddim".into(),
                FormatError::NonFinite { .. } => "nonfinite".into(),
                FormatError::Parse { column: Some(_), .. } => "parse@col".into(),
                FormatError::Parse { field: Some(f), .. } => format!("parse:{f}"),
                FormatError::DimensionMismatch { expected: 1, got: 3, .. } => "dim".into(),
                other => format!("{other:?}"),
            };
            assert_eq!(&got, want, "{line}: {:?}", e.error);
        }
        // Invalid UTF-8 is a row error too.
        let bytes = b"{\"id\": 1, \"vector\": [1]}\n{\"id\": \xff}\n{\"id\": 3, \"vector\": [1]}\n";
        let rows: Vec<_> = JsonlReader::new(&bytes[..], JsonlOptions::default()).unwrap().collect();
        assert_eq!(rows.len(), 3);
        assert!(matches!(
            &rows[1],
            Err(RowError { line: 2, error: FormatError::Parse { column: Some(8), .. } })
        ));
        assert!(rows[2].is_ok());
    }

    #[test]
    fn jsonl_long_lines_and_options() {
        let long = format!("{{\"id\": 1, \"vector\": [{}1]}}", "1, ".repeat(100));
        let text = format!("{long}\n{{\"id\": 2, \"vector\": [1]}}\n");
        let options = JsonlOptions { max_line_bytes: 64, ..JsonlOptions::default() };
        let rows = jsonl_records(&text, options);
        assert!(matches!(
            &rows[0],
            Err(RowError { line: 1, error: FormatError::LineTooLong { limit: 64, .. } })
        ));
        assert_eq!(rows[1].as_ref().unwrap().id, 2);

        let same = JsonlOptions { vector_field: "id".into(), ..JsonlOptions::default() };
        assert!(matches!(JsonlReader::new(Cursor::new(""), same), Err(FormatError::InvalidArgument { .. })));
        let dim2 = JsonlOptions { expected_dim: Some(2), ..JsonlOptions::default() };
        let rows = jsonl_records("{\"id\": 1, \"vector\": [1]}\n{\"id\": 2, \"vector\": [1, 2]}\n", dim2);
        assert!(matches!(
            &rows[0],
            Err(RowError { error: FormatError::DimensionMismatch { expected: 2, got: 1, .. }, .. })
        ));
        assert!(rows[1].is_ok());
    }

    /// A malformed line is reported at the file's line and column, once, without the position
    /// serde_json counts inside the one line it was given.
    #[test]
    fn jsonl_parse_errors_give_one_position() {
        let mut text = String::new();
        for i in 0..10 {
            text.push_str(&format!("{{\"id\": {i}, \"vector\": [1, 2]}}\n"));
        }
        text.push_str("{\"id\": 10, \"vector\": [1,x]}\n");
        text.push_str("{\"id\": 11, \"vector\": [1, 2], \"metadata\": 5}\n");
        let rows = jsonl_records(&text, JsonlOptions::default());
        assert_eq!(rows[10].as_ref().unwrap_err().to_string(), "line 11, column 25: expected value");
        let e = rows[11].as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("line 12, field `metadata`: expected an object") && !e.contains(" at line "),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------------------
// Error budget, I/O failures, error traits.

#[cfg(feature = "formats")]
#[test]
fn max_errors_budget() {
    let mut text = String::new();
    for i in 0..10 {
        if i % 3 == 1 {
            text.push_str("{\"id\": \"bad\", \"vector\": [1]}\n"); // lines 2, 5, 8
        } else {
            text.push_str(&format!("{{\"id\": {i}, \"vector\": [1]}}\n"));
        }
    }
    let reader = || JsonlReader::new(Cursor::new(text.clone()), JsonlOptions::default()).unwrap();
    let (good, bad) = collect_with_max_errors(reader(), 3).unwrap();
    assert_eq!(good.len(), 7);
    assert_eq!(bad.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2, 5, 8]);
    match collect_with_max_errors(reader(), 2) {
        Err(FormatError::TooManyErrors { max_errors: 2, errors }) => {
            assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2, 5, 8]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        collect_with_max_errors(reader(), 0),
        Err(FormatError::TooManyErrors { max_errors: 0, ref errors }) if errors.len() == 1
    ));
}

#[test]
fn max_errors_budget_csv() {
    let csv = "id,vector\n1,1\nx,1\n2,1\n3,\n";
    let r = CsvReader::new(Cursor::new(csv), CsvOptions::default()).unwrap();
    let (good, bad) = collect_with_max_errors(r, 2).unwrap();
    assert_eq!((good.len(), bad.len()), (2, 2));
    let r = CsvReader::new(Cursor::new(csv), CsvOptions::default()).unwrap();
    let err = collect_with_max_errors(r, 1).unwrap_err();
    assert!(err.to_string().contains("more than 1"), "{err}");
}

/// A reader that yields `data`, then fails.
struct Failing<'a>(&'a [u8]);

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn io_failures_are_fatal_and_typed() {
    #[cfg(feature = "formats")]
    {
        let data = b"{\"id\": 1, \"vector\": [1]}\n{\"id\": 2, \"vec";
        let mut r = JsonlReader::new(BufReader::new(Failing(data)), JsonlOptions::default()).unwrap();
        assert!(r.next().unwrap().is_ok());
        let e = r.next().unwrap().unwrap_err();
        assert!(e.is_fatal());
        assert!(matches!(e.error, FormatError::Io { op: "reading", .. }));
        assert!(r.next().is_none());
        let r = JsonlReader::new(BufReader::new(Failing(data)), JsonlOptions::default()).unwrap();
        assert!(matches!(collect_with_max_errors(r, 100), Err(FormatError::Io { .. })));
    }

    let r = CsvReader::new(BufReader::new(Failing(b"id,vector\n1,1\n2,")), CsvOptions::default()).unwrap();
    let items: Vec<_> = r.collect();
    assert_eq!(items.len(), 2);
    assert!(items[1].as_ref().unwrap_err().is_fatal());

    let bytes = fvecs_bytes(&[vec![1.0, 2.0]]);
    let items: Vec<_> = VecsReader::new(Failing(&bytes), ElementKind::F32).collect();
    assert_eq!(items.len(), 2);
    assert!(matches!(items[1], Err(FormatError::Io { .. })));
    assert!(matches!(read_npy_from(Failing(b"\x93NUMPY")), Err(FormatError::Io { .. })));

    // Missing files name the path; unknown extensions are refused.
    let missing = Path::new("/nonexistent/dir/x.fvecs");
    let err = read_fvecs(missing).unwrap_err();
    match &err {
        FormatError::Io { path: Some(p), op: "opening", .. } => assert_eq!(p, missing),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("/nonexistent/dir/x.fvecs"));
    assert!(std::error::Error::source(&err).is_some());
    assert!(matches!(read_vectors("x.txt"), Err(FormatError::UnknownFormat { .. })));
    assert!(matches!(read_vectors("x"), Err(FormatError::UnknownFormat { .. })));
}

#[test]
fn error_traits_and_messages() {
    fn assert_traits<T: std::error::Error + Send + Sync + 'static>() {}
    assert_traits::<FormatError>();
    assert_traits::<RowError>();
    let e = FormatError::Truncated { record: 3, offset: 100, needed: 16, available: 2 };
    assert_eq!(e.to_string(), "truncated record 3 at byte 100: needed 16 more bytes, 2 available");
    let e = RowError { line: 4, error: FormatError::MissingField { line: 4, field: "id".into() } };
    assert_eq!(e.to_string(), "line 4: missing field `id`");
    let e =
        FormatError::Parse { line: 2, column: Some(5), field: Some("vector".into()), reason: "bad".into() };
    assert_eq!(e.to_string(), "line 2, column 5, field `vector`: bad");
    // A row error states one position, the file's.
    let e = RowError { line: 2, error: e };
    assert_eq!(e.to_string(), "line 2, column 5, field `vector`: bad");
    let e = RowError { line: 7, error: FormatError::DimensionMismatch { record: 6, expected: 3, got: 2 } };
    assert_eq!(e.to_string(), "line 7: dimension mismatch in record 6: expected 3, got 2");
}

// ---------------------------------------------------------------------------
// Mutated inputs: no reader panics or allocates much, whatever the bytes.

fn mutate(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..rng.random_range(1..5) {
        match rng.random_range(0..4) {
            0 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            1 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            2 => {
                let i = rng.random_range(0..=b.len());
                b.truncate(i);
            }
            _ => {
                let i = rng.random_range(0..=b.len());
                const BYTES: &[u8] = b"\"\n,;[]{}0-.e\xff\x00";
                b.insert(i, BYTES[rng.random_range(0..BYTES.len())]);
            }
        }
    }
    b
}

#[test]
fn mutated_inputs_never_panic() {
    let mut rng = rng("mutated_inputs_never_panic");
    let rows = random_rows(&mut rng, 4, 3);
    let fv = fvecs_bytes(&rows);
    let mut iv = Vec::new();
    write_ivecs_to(&mut iv, [[1, 2, 3], [4, 5, 6]]).unwrap();
    let mut npy = Vec::new();
    write_npy_to(&mut npy, &VecSet::new(3, rows.concat(), ElementKind::F32).unwrap()).unwrap();
    let mut ids = Vec::new();
    write_npy_ids_to(&mut ids, &[1, 2, 3]).unwrap();
    let records = random_records(&mut rng, 4, 3);
    let mut csv = Vec::new();
    write_csv_to(&mut csv, &records, &CsvOptions::default()).unwrap();

    for _ in 0..3000 {
        let (_, max) = max_alloc_during(|| {
            let b = mutate(&mut rng, &fv);
            let _ = VecsReader::new(Cursor::new(&b), ElementKind::F32).count();
            let _ = read_vecs_from(Cursor::new(&b), ElementKind::U8);
            let _ = read_ivecs_from(Cursor::new(mutate(&mut rng, &iv)));
            let b = mutate(&mut rng, &npy);
            let _ = read_npy_from(Cursor::new(&b));
            let _ = read_npy_ids_from(Cursor::new(&b));
            let _ = read_npy_ids_from(Cursor::new(mutate(&mut rng, &ids)));
            let b = mutate(&mut rng, &csv);
            if let Ok(r) = CsvReader::new(Cursor::new(&b), CsvOptions::default()) {
                let _ = r.count();
            }
        });
        assert!(max < 4 << 20, "allocated {max} bytes");
    }
}

#[cfg(feature = "formats")]
#[test]
fn mutated_jsonl_never_panics() {
    let mut rng = rng("mutated_jsonl_never_panics");
    let records = random_records(&mut rng, 4, 3);
    let mut text = Vec::new();
    write_jsonl_to(&mut text, &records, &JsonlOptions::default()).unwrap();
    for _ in 0..3000 {
        let b = mutate(&mut rng, &text);
        let r = JsonlReader::new(Cursor::new(&b), JsonlOptions::default()).unwrap();
        let _ = r.count();
    }
    // Deep nesting anywhere in a line cannot overflow the stack.
    let deep = format!(
        "{{\"id\": 1, \"vector\": [1], \"x\": {}{}}}\n{{\"id\": 1, \"vector\": {}1{}}}\n",
        "[".repeat(200_000),
        "]".repeat(200_000),
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let rows: Vec<_> = JsonlReader::new(Cursor::new(deep), JsonlOptions::default()).unwrap().collect();
    assert_eq!(rows.len(), 2);
    // An ignored field is skipped without recursion; a nested vector is refused.
    assert_eq!(rows[0].as_ref().unwrap().id, 1);
    assert!(rows[1].is_err());
}

// ---------------------------------------------------------------------------
// CSV expiry column.

/// The expiry column (`expires_at` by default, or as named) is read as the record's expiry, not
/// metadata; an empty field never expires; a bad value is a bad row naming its line and column,
/// and the rows after it still read.
#[test]
fn csv_expiry_column_is_read_and_bad_values_name_line_and_column() {
    let text = "id,vector,expires_at,lang\n1,1;2,1700000000000,\"en\"\n2,3;4,,fr\n3,5;6,soon,de\n4,7;8,-5,x\n5,9;9,007,y\n";
    let rows = csv_records(text, CsvOptions::default());
    let ok = |i: usize| rows[i].as_ref().unwrap_or_else(|e| panic!("row {i}: {e}"));
    assert_eq!(ok(0).expires_at, Some(1_700_000_000_000));
    assert_eq!(ok(0).metadata, meta(&[("lang", "en".into())]), "the expiry is not metadata");
    assert_eq!((ok(1).expires_at, ok(1).metadata.len()), (None, 1));
    assert_eq!(ok(4).expires_at, Some(7));
    for (i, line, value) in [(2, 4, "soon"), (3, 5, "-5")] {
        let err = rows[i].as_ref().unwrap_err();
        assert_eq!(err.line, line);
        match &err.error {
            FormatError::Parse { line: l, field: Some(f), reason, .. } => {
                assert_eq!((*l, f.as_str()), (line, "expires_at"));
                assert!(reason.contains(value), "{reason}");
            }
            other => panic!("row {i}: {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&format!("line {line}")) && msg.contains("`expires_at`"), "{msg}");
    }
    // Too large for a u64.
    let rows = csv_records("id,vector,expires_at\n1,1,99999999999999999999\n", CsvOptions::default());
    assert!(rows[0].as_ref().unwrap_err().to_string().contains("does not fit"), "{:?}", rows[0]);

    // Another name; the default name is then ordinary metadata.
    let text = "id,vector,ttl,expires_at\n1,1;2,42,43\n";
    let opts = CsvOptions { expires_column: Some("ttl".into()), ..CsvOptions::default() };
    let r = csv_records(text, opts).remove(0).unwrap();
    assert_eq!((r.expires_at, r.metadata), (Some(42), meta(&[("expires_at", MetaValue::Int(43))])));
    // None: no expiry column at all.
    let opts = CsvOptions { expires_column: None, ..CsvOptions::default() };
    let r = csv_records("id,vector,expires_at\n1,1,5\n", opts).remove(0).unwrap();
    assert_eq!((r.expires_at, r.metadata), (None, meta(&[("expires_at", MetaValue::Int(5))])));
    // A column cannot be the id and the expiry, nor be listed as metadata too.
    let opts = CsvOptions { expires_column: Some("id".into()), ..CsvOptions::default() };
    assert!(matches!(
        CsvReader::new(Cursor::new("id,vector\n"), opts),
        Err(FormatError::InvalidArgument { name: "expires_column", .. })
    ));
    let opts = CsvOptions { metadata_columns: Some(vec!["expires_at".into()]), ..CsvOptions::default() };
    assert!(matches!(
        CsvReader::new(Cursor::new("id,vector,expires_at\n"), opts),
        Err(FormatError::InvalidArgument { name: "metadata_columns", .. })
    ));
}

/// Records with expiry times written as CSV read back with the same expiry; without any expiry
/// no column is written (the file is as before); a metadata key named like the expiry column is
/// refused rather than read back as an expiry.
#[test]
fn csv_expiry_round_trips() {
    let mut recs: Vec<Record> = (0..20u64)
        .map(|i| Record {
            id: i,
            vector: vec![i as f32, 0.5],
            metadata: meta(&[("n", MetaValue::Int(i as i64))]),
            expires_at: i.is_multiple_of(3).then_some(1_000 + i),
        })
        .collect();
    for opts in [
        CsvOptions::default(),
        CsvOptions { expires_column: Some("ttl".into()), delimiter: ';', ..CsvOptions::default() },
        CsvOptions { metadata_columns: Some(vec!["n".into()]), ..CsvOptions::default() },
    ] {
        let mut out = Vec::new();
        write_csv_to(&mut out, &recs, &opts).unwrap();
        let text = String::from_utf8(out).unwrap();
        let name = opts.expires_column.clone().unwrap();
        assert!(text.lines().next().unwrap().contains(&name), "{text}");
        let back: Vec<Record> = csv_records(&text, opts.clone()).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(back, recs, "{opts:?}");
    }
    // No expiry anywhere: no column (unless the columns are fixed by an explicit list).
    let plain: Vec<Record> = recs.iter().cloned().map(|r| Record { expires_at: None, ..r }).collect();
    let mut out = Vec::new();
    write_csv_to(&mut out, &plain, &CsvOptions::default()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap().lines().next(), Some("id,vector,n"));
    let fixed = CsvOptions { metadata_columns: Some(vec!["n".into()]), ..CsvOptions::default() };
    let mut out = Vec::new();
    write_csv_to(&mut out, &[], &fixed).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "id,vector,expires_at,n\n");
    // A metadata key that would read back as the expiry.
    recs[1].metadata.insert("expires_at".into(), MetaValue::Int(1));
    let err = write_csv_to(Vec::new(), &recs, &CsvOptions::default()).unwrap_err();
    assert!(err.to_string().contains("expiry column"), "{err}");
}
