//! A damaged or hostile snapshot gives an error, never a panic or a huge allocation: every byte
//! flip, every truncation, forged counts with valid checksums, future versions, random bytes.

use hnsw_batch::persist::{load_from_bytes, save_to_bytes, PersistError, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
use hnsw_batch::{Index, IndexConfig, Metric, Storage};
use rand::{Rng, SeedableRng};

fn small_index() -> Index {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let index = Index::new(IndexConfig::new(4, Metric::L2).m(4).ef_construction(8).seed(2)).unwrap();
    for id in 0..30u64 {
        let v: Vec<f32> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
        index.insert(id * 3, &v).unwrap();
    }
    index.delete(6).unwrap();
    index.update(9, &[0.5, 0.5, 0.5, 0.5]).unwrap();
    index
}

/// Section boundaries: (tag offset, payload offset, payload length).
fn sections(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 16;
    while pos < bytes.len() {
        let len = u64::from_le_bytes(bytes[pos + 4..pos + 12].try_into().unwrap()) as usize;
        out.push((pos, pos + 16, len));
        pos += 16 + len;
    }
    out
}

/// Rewrites a section's checksum after the test changed its payload.
fn fix_crc(bytes: &mut [u8], section: usize) {
    let (tag, payload, len) = sections(bytes)[section];
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[tag..tag + 12]);
    h.update(&bytes[payload..payload + len]);
    let crc = h.finalize();
    bytes[tag + 12..tag + 16].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn every_byte_flip_is_an_error() {
    let bytes = save_to_bytes(&small_index());
    assert!(load_from_bytes(&bytes).is_ok());
    for mask in [0x01u8, 0x80, 0xFF, 0x10] {
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= mask;
            match load_from_bytes(&b) {
                Err(_) => {}
                Ok(_) => panic!("flip {mask:#04x} at byte {i} of {} loaded", bytes.len()),
            }
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = save_to_bytes(&small_index());
    for len in 0..bytes.len() {
        let err = load_from_bytes(&bytes[..len]).err().unwrap_or_else(|| panic!("prefix of {len} loaded"));
        if len >= 16 {
            assert!(matches!(err, PersistError::Truncated { .. }), "prefix {len}: {err}");
        }
    }
    // Trailing garbage is rejected too.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(load_from_bytes(&longer), Err(PersistError::Corrupt { .. })));
}

#[test]
fn checksum_errors_name_the_section() {
    let bytes = save_to_bytes(&small_index());
    for (s, name) in ["params", "nodes", "entry"].iter().enumerate() {
        let (_, payload, _) = sections(&bytes)[s];
        let mut b = bytes.clone();
        b[payload] ^= 1;
        match load_from_bytes(&b) {
            Err(PersistError::ChecksumMismatch { section, .. }) => assert_eq!(section, *name),
            other => panic!("section {name}: {other:?}"),
        }
    }
}

#[test]
fn forged_counts_with_valid_checksums_fail_without_huge_allocations() {
    let bytes = save_to_bytes(&small_index());
    let (_, nodes, _) = sections(&bytes)[1];
    // Node count u32::MAX: checked against the bytes left before anything is allocated.
    let mut b = bytes.clone();
    b[nodes..nodes + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_crc(&mut b, 1);
    assert!(matches!(load_from_bytes(&b), Err(PersistError::Corrupt { .. })));
    // First node's level-0 link count u32::MAX (flags 1 + level 1 + id 8 + vector 16 bytes in).
    let mut b = bytes.clone();
    let links = nodes + 4 + 1 + 1 + 8 + 16;
    b[links..links + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_crc(&mut b, 1);
    assert!(matches!(load_from_bytes(&b), Err(PersistError::Corrupt { .. })));
    // The largest dimension the format allows makes every node record 256 KiB: the count no
    // longer fits the section.
    let (_, params, _) = sections(&bytes)[0];
    let mut b = bytes.clone();
    b[params..params + 4].copy_from_slice(&(1u32 << 16).to_le_bytes());
    fix_crc(&mut b, 0);
    assert!(matches!(load_from_bytes(&b), Err(PersistError::Corrupt { .. })));
    // Invalid parameters (m = 0).
    let mut b = bytes.clone();
    b[params + 6..params + 10].copy_from_slice(&0u32.to_le_bytes());
    fix_crc(&mut b, 0);
    assert!(matches!(load_from_bytes(&b), Err(PersistError::Corrupt { .. })));
    // A section length of u64::MAX.
    let (tag, _, _) = sections(&bytes)[1];
    let mut b = bytes.clone();
    b[tag + 4..tag + 12].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(load_from_bytes(&b), Err(PersistError::Truncated { section: "nodes", .. })));
}

/// A change to a snapshot's bytes.
type Forge = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
fn forged_graphs_with_valid_checksums_are_rejected() {
    let bytes = save_to_bytes(&small_index());
    let (_, nodes, _) = sections(&bytes)[1];
    let first_links = nodes + 4 + 1 + 1 + 8 + 16;
    let count = u32::from_le_bytes(bytes[first_links..first_links + 4].try_into().unwrap()) as usize;
    assert!(count >= 2);
    let link = move |i: usize| first_links + 4 + 4 * i;
    let cases: Vec<(&str, Forge)> = vec![
        ("dangling link", Box::new(move |b| b[link(0)..link(0) + 4].copy_from_slice(&1000u32.to_le_bytes()))),
        ("self link", Box::new(move |b| b[link(0)..link(0) + 4].copy_from_slice(&0u32.to_le_bytes()))),
        (
            "repeated link",
            Box::new(move |b| {
                let first: [u8; 4] = b[link(0)..link(0) + 4].try_into().unwrap();
                b[link(1)..link(1) + 4].copy_from_slice(&first);
            }),
        ),
        ("unknown node flags", Box::new(move |b| b[nodes + 4] = 0x04)),
        ("level above the maximum", Box::new(move |b| b[nodes + 5] = 200)),
        (
            "non-finite vector",
            Box::new(move |b| b[nodes + 14..nodes + 18].copy_from_slice(&f32::NAN.to_le_bytes())),
        ),
        (
            "duplicate live id",
            Box::new(move |b| {
                // Give the first node the id of the second (ids are 3 apart: 0, 3, ...).
                let second_id = u64::from_le_bytes(b[nodes + 6..nodes + 14].try_into().unwrap()) + 3;
                b[nodes + 6..nodes + 14].copy_from_slice(&second_id.to_le_bytes());
            }),
        ),
    ];
    for (name, forge) in cases {
        let mut b = bytes.clone();
        forge(&mut b);
        fix_crc(&mut b, 1);
        assert!(load_from_bytes(&b).is_err(), "{name} accepted");
    }
    // An entry point that is not on the top level.
    let (_, entry, _) = sections(&bytes)[2];
    let mut b = bytes.clone();
    b[entry + 5] = b[entry + 5].wrapping_add(1);
    fix_crc(&mut b, 2);
    assert!(load_from_bytes(&b).is_err());
    // No entry point although there are nodes.
    let mut b = bytes.clone();
    let (tag, _, _) = sections(&bytes)[2];
    b.truncate(entry);
    b.push(0);
    b[tag + 4..tag + 12].copy_from_slice(&1u64.to_le_bytes());
    fix_crc(&mut b, 2);
    assert!(load_from_bytes(&b).is_err());
}

#[test]
fn f16_snapshots_reject_non_finite_vectors_and_unknown_storage_codes() {
    let index =
        Index::new(IndexConfig::new(4, Metric::L2).m(4).ef_construction(8).storage(Storage::F16)).unwrap();
    for id in 0..10u64 {
        index.insert(id, &[id as f32, 0.5, -1.0, 2.0]).unwrap();
    }
    let bytes = save_to_bytes(&index);
    assert!(load_from_bytes(&bytes).is_ok());
    let (_, params, _) = sections(&bytes)[0];
    assert_eq!(bytes[params + 5], 2, "storage code of f16");
    let (_, nodes, _) = sections(&bytes)[1];
    // First node's first component: +inf, a NaN, -inf.
    for bits in [0x7c00u16, 0x7e01, 0xfc00] {
        let mut b = bytes.clone();
        b[nodes + 14..nodes + 16].copy_from_slice(&bits.to_le_bytes());
        fix_crc(&mut b, 1);
        let err = load_from_bytes(&b).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{bits:#x}: {err}");
    }
    let mut b = bytes.clone();
    b[params + 5] = 4;
    fix_crc(&mut b, 0);
    assert!(load_from_bytes(&b).is_err());
    // Code 3 is sq8, whose params are longer: the 39 bytes of an f16 index are not enough.
    let mut b = bytes.clone();
    b[params + 5] = 3;
    fix_crc(&mut b, 0);
    assert!(load_from_bytes(&b).is_err());
}

#[test]
fn sq8_snapshots_reject_damaged_parameters_and_non_finite_originals() {
    let index =
        Index::new(IndexConfig::new(4, Metric::L2).m(4).ef_construction(8).storage(Storage::Sq8)).unwrap();
    let items: Vec<(u64, Vec<f32>)> = (0..10u64).map(|id| (id, vec![id as f32, 0.5, -1.0, 2.0])).collect();
    hnsw_batch::BatchInsertable::insert_batch(&index, &items, &hnsw_batch::BatchOptions::new()).unwrap();
    let bytes = save_to_bytes(&index);
    assert!(load_from_bytes(&bytes).is_ok());
    let (_, params, _) = sections(&bytes)[0];
    assert_eq!(bytes[params + 5], 3, "storage code of sq8");
    // After the 39 common bytes: rerank (8), trained flag (1), record length (4), record.
    assert_eq!(bytes[params + 47], 1, "trained flag");
    let record = params + 52;
    for (at, what) in [(record, "magic"), (record + 12, "lo[0]"), (record + 12 + 32, "checksum")] {
        let mut b = bytes.clone();
        b[at] ^= 0x40;
        fix_crc(&mut b, 0);
        let err = load_from_bytes(&b).unwrap_err();
        assert!(err.to_string().contains("sq8 parameters"), "{what}: {err}");
    }
    // Untrained but with nodes.
    let mut b = bytes.clone();
    b[params + 47] = 0;
    // The record of dimension 4 is 48 bytes (header 12, lo 16, scale 16, CRC 4).
    b.drain(params + 48..params + 52 + 48);
    let len = (sections(&bytes)[0].2 - 52) as u64;
    let tag = params - 16;
    b[tag + 4..tag + 12].copy_from_slice(&len.to_le_bytes());
    fix_crc(&mut b, 0);
    let err = load_from_bytes(&b).unwrap_err();
    assert!(err.to_string().contains("no quantisation parameters"), "{err}");
    // Originals are f32: a NaN is refused.
    let (_, nodes, _) = sections(&bytes)[1];
    let mut b = bytes.clone();
    b[nodes + 14..nodes + 18].copy_from_slice(&f32::NAN.to_le_bytes());
    fix_crc(&mut b, 1);
    assert!(load_from_bytes(&b).unwrap_err().to_string().contains("non-finite"));
}

#[test]
fn future_version_is_unsupported() {
    let mut b = save_to_bytes(&small_index());
    b[8..12].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());
    match load_from_bytes(&b) {
        Err(e @ PersistError::UnsupportedVersion { found, supported }) => {
            assert_eq!(found, SNAPSHOT_VERSION + 1);
            assert_eq!(supported, SNAPSHOT_VERSION);
            assert_eq!(
                e.to_string(),
                format!(
                    "written by a newer version of hnsw-batch (format {found}, this build reads up to {supported})"
                )
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A damaged version field reads as corruption, not as a file from a newer build: no build
/// writes a version with any of its upper three bytes set, or version 0.
#[test]
fn damaged_version_field_is_corruption() {
    let bytes = save_to_bytes(&small_index());
    for flip in [0usize, 1, 2, 3] {
        let mut b = bytes.clone();
        if flip == 0 {
            b[8] = 0;
        } else {
            b[8 + flip] ^= 1;
        }
        match load_from_bytes(&b) {
            Err(e @ PersistError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("snapshot header: version field"), "{msg}");
                assert!(!msg.contains("newer"), "{msg}");
            }
            other => panic!("byte {flip}: {other:?}"),
        }
    }
    let mut b = bytes.clone();
    b[10] ^= 1; // 2 | 1 << 16 = 65538
    let msg = load_from_bytes(&b).unwrap_err().to_string();
    assert_eq!(msg, "corrupt data: snapshot header: version field 65538 (0x00010002) is no format version (this build reads version 2)");
}

#[test]
fn random_bytes_are_bad_magic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for len in [8usize, 9, 16, 17, 100, 4096] {
        for _ in 0..20 {
            let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if b[0] == SNAPSHOT_MAGIC[0] {
                b[0] = 0;
            }
            assert!(matches!(load_from_bytes(&b), Err(PersistError::BadMagic { .. })));
        }
    }
    // Random bytes behind a valid header fail somewhere, without panicking.
    for _ in 0..200 {
        let len = rng.random_range(0..300);
        let mut b = SNAPSHOT_MAGIC.to_vec();
        b.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend((0..len).map(|_| rng.random::<u8>()));
        assert!(load_from_bytes(&b).is_err());
    }
}
