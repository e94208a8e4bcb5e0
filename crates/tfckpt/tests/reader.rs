//! Reads the checkpoints real TensorFlow wrote (tests/fixtures, see make_fixtures.py) and checks
//! exact names, shapes and values; then corrupts copies of them in temp dirs and checks that each
//! kind of damage is an error naming the right file and tensor, never a panic.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure

mod common;

use std::fs;

use common::*;
use vaepipe_tfckpt::{Checkpoint, CkptError, DType, TensorData};

const BASIC_NAMES: &[&str] = &[
    "InceptionResnetV1/Conv2d_1a_3x3/BatchNorm/beta",
    "InceptionResnetV1/Conv2d_1a_3x3/BatchNorm/moving_variance",
    "InceptionResnetV1/Conv2d_1a_3x3/weights",
    "decoder/Fc_1/weights",
    "encoder/Fc_1/biases",
    "encoder/Fc_1/weights",
    "global_step",
    "misc/empty",
    "misc/half",
    "misc/int16",
    "misc/int32",
    "misc/uint8",
];

fn many_name(i: usize) -> String {
    format!("many/layer_{i:05}/Conv2d_0a_1x1/weights_{}", i % 7)
}

#[test]
fn basic_names_shapes_and_dtypes() {
    let ckpt = Checkpoint::open(&fixture("basic")).unwrap();
    assert_eq!(ckpt.names(), BASIC_NAMES);
    assert_eq!(ckpt.index().num_shards(), 1);
    assert_eq!(ckpt.index().data_blocks(), 1);
    let info = |n: &str| ckpt.info(n).unwrap().clone();
    let w = info("InceptionResnetV1/Conv2d_1a_3x3/weights");
    assert_eq!(
        (w.dtype, w.shape.clone(), w.numel()),
        (DType::Float, vec![3, 3, 3, 4], 108)
    );
    assert_eq!(info("global_step").dtype, DType::Int64);
    assert_eq!(info("global_step").shape, Vec::<usize>::new());
    assert_eq!(info("global_step").numel(), 1);
    assert_eq!(info("encoder/Fc_1/weights").shape, vec![6, 2]);
    assert_eq!(info("encoder/Fc_1/biases").dtype, DType::Double);
    assert_eq!(info("decoder/Fc_1/weights").shape, vec![2, 3]);
    assert_eq!(info("misc/int32").dtype, DType::Int32);
    assert_eq!(info("misc/uint8").dtype, DType::UInt8);
    assert_eq!(info("misc/int16").dtype, DType::Int16);
    assert_eq!(info("misc/half").dtype, DType::Half);
    assert_eq!(info("misc/empty").shape, vec![0, 3]);
    ckpt.verify().unwrap();
}

#[test]
fn basic_exact_values() {
    let ckpt = Checkpoint::open(&fixture("basic")).unwrap();
    let conv: Vec<f32> = (0..108).map(|i| (i as f32 - 54.0) * 0.25).collect();
    assert_eq!(
        ckpt.read_f32("InceptionResnetV1/Conv2d_1a_3x3/weights")
            .unwrap(),
        conv
    );
    assert_eq!(
        ckpt.read("InceptionResnetV1/Conv2d_1a_3x3/BatchNorm/beta")
            .unwrap(),
        TensorData::F32(vec![0.5, -1.5, 2.25, 3.0])
    );
    assert_eq!(
        ckpt.read_f32("InceptionResnetV1/Conv2d_1a_3x3/BatchNorm/moving_variance")
            .unwrap(),
        vec![1.0, 2.0, 4.0, 8.0]
    );
    let fc: Vec<f32> = (0..12).map(|i| i as f32 / 4.0).collect();
    assert_eq!(ckpt.read_f32("encoder/Fc_1/weights").unwrap(), fc);
    // float64: exact via read(), rounded to nearest via read_f32().
    assert_eq!(
        ckpt.read("encoder/Fc_1/biases").unwrap(),
        TensorData::F64(vec![0.1, -0.2])
    );
    assert_eq!(
        ckpt.read_f32("encoder/Fc_1/biases").unwrap(),
        vec![0.1f32, -0.2f32]
    );
    let dec: Vec<f64> = (0..6).map(|i| i as f64 * 1.5 - 2.0).collect();
    assert_eq!(
        ckpt.read("decoder/Fc_1/weights").unwrap(),
        TensorData::F64(dec)
    );
    // int64 scalar beyond 2^24: exact as i64, refused as f32.
    assert_eq!(
        ckpt.read("global_step").unwrap(),
        TensorData::I64(vec![1_234_567_890_123])
    );
    assert_eq!(
        ckpt.read_i64("global_step").unwrap(),
        vec![1_234_567_890_123]
    );
    let err = ckpt.read_f32("global_step").unwrap_err();
    assert!(matches!(err, CkptError::Conversion { .. }), "{err}");
    assert_eq!(err.tensor(), Some("global_step"));
    assert_eq!(
        ckpt.read("misc/int32").unwrap(),
        TensorData::I32(vec![-3, -2, -1, 0, 1, i32::MAX])
    );
    assert!(ckpt.read_f32("misc/int32").is_err()); // i32::MAX is not exact in f32
    assert_eq!(
        ckpt.read_i64("misc/int32").unwrap(),
        vec![-3, -2, -1, 0, 1, i32::MAX as i64]
    );
    assert_eq!(
        ckpt.read("misc/uint8").unwrap(),
        TensorData::U8(vec![0, 1, 128, 255])
    );
    assert_eq!(
        ckpt.read_f32("misc/uint8").unwrap(),
        vec![0.0, 1.0, 128.0, 255.0]
    );
    assert_eq!(
        ckpt.read("misc/int16").unwrap(),
        TensorData::I16(vec![-32768, 0, 32767])
    );
    assert_eq!(
        ckpt.read_f32("misc/half").unwrap(),
        vec![1.0, -2.5, 65504.0]
    );
    assert_eq!(
        ckpt.read("misc/half").unwrap(),
        TensorData::F16Bits(vec![0x3c00, 0xc100, 0x7bff])
    );
    assert_eq!(ckpt.read("misc/empty").unwrap(), TensorData::F32(vec![]));
    let err = ckpt.read_i64("encoder/Fc_1/weights").unwrap_err();
    assert!(matches!(err, CkptError::Conversion { .. }), "{err}");
}

#[test]
fn missing_tensor_is_not_found() {
    let ckpt = Checkpoint::open(&fixture("basic")).unwrap();
    let err = ckpt.read("encoder/Fc_9/weights").unwrap_err();
    assert!(matches!(err, CkptError::NotFound { .. }), "{err}");
    assert_eq!(err.tensor(), Some("encoder/Fc_9/weights"));
    assert!(ckpt.info("").is_err()); // the header is not a tensor
}

#[test]
fn many_spans_several_index_blocks() {
    let ckpt = Checkpoint::open(&fixture("many")).unwrap();
    assert!(
        ckpt.index().data_blocks() >= 2,
        "{}",
        ckpt.index().data_blocks()
    );
    let mut expected: Vec<String> = (0..7000).map(many_name).collect();
    expected.sort();
    assert_eq!(ckpt.names(), expected);
    for i in (0..7000).step_by(7).chain([6999]) {
        let name = many_name(i);
        assert_eq!(ckpt.info(&name).unwrap().shape, Vec::<usize>::new());
        assert_eq!(
            ckpt.read_f32(&name).unwrap(),
            vec![i as f32 * 0.5],
            "{name}"
        );
    }
    ckpt.verify().unwrap();
}

#[test]
fn sharded_checkpoint() {
    let ckpt = Checkpoint::open(&fixture("sharded")).unwrap();
    assert_eq!(ckpt.index().num_shards(), 2);
    assert_eq!(
        ckpt.names(),
        ["global_step", "shard0/a", "shard1/b", "shard1/c"]
    );
    let a: Vec<f32> = (0..10).map(|i| i as f32 + 0.5).collect();
    assert_eq!(ckpt.read_f32("shard0/a").unwrap(), a);
    assert_eq!(ckpt.read_i64("global_step").unwrap(), vec![42]);
    assert_eq!(ckpt.read_f32("global_step").unwrap(), vec![42.0]);
    assert_eq!(
        ckpt.read("shard1/b").unwrap(),
        TensorData::F64(vec![-3.0, -2.0, -1.0, 0.0, 1.0, 2.0])
    );
    assert_eq!(
        ckpt.read("shard1/c").unwrap(),
        TensorData::I32(vec![7, -8, 9])
    );
    assert_eq!(ckpt.index().location("shard0/a").unwrap().shard, 0);
    assert_eq!(ckpt.index().location("shard1/c").unwrap().shard, 1);
    assert!(ckpt
        .shard_path(1)
        .ends_with("model.ckpt.data-00001-of-00002"));
}

#[test]
fn rebuilt_tables_read_the_same_including_snappy_blocks() {
    let original = Checkpoint::open(&fixture("basic")).unwrap();
    let bytes = fs::read(index_path(&fixture("basic"))).unwrap();
    let (entries, blocks) = table_entries(&bytes);
    assert_eq!(blocks, 1);
    for (per_block, snappy) in [(1000, false), (1000, true), (3, true), (1, false)] {
        let (_dir, prefix) = copy_fixture("basic");
        let table = build_table(&entries, per_block, snappy);
        if snappy {
            // The first data block's trailer says Snappy.
            let (_, (io, is)) = footer_handles(&table);
            let index = decode_block(&table[io as usize..(io + is) as usize]);
            let mut pos = 0;
            let _off = get_varint(&index[0].1, &mut pos);
            let size = get_varint(&index[0].1, &mut pos);
            assert_eq!(table[size as usize], 1);
        }
        fs::write(index_path(&prefix), &table).unwrap();
        let ckpt = Checkpoint::open(&prefix).unwrap();
        assert_eq!(ckpt.names(), original.names());
        assert_eq!(
            ckpt.index().data_blocks(),
            entries.len().div_ceil(per_block)
        );
        for name in original.names() {
            assert_eq!(
                ckpt.read(name).unwrap(),
                original.read(name).unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn flipped_byte_in_a_block_is_a_checksum_error_naming_the_index() {
    let (_dir, prefix) = copy_fixture("basic");
    let path = index_path(&prefix);
    let mut bytes = fs::read(&path).unwrap();
    bytes[40] ^= 0x01; // inside a key in the data block
    fs::write(&path, &bytes).unwrap();
    let err = Checkpoint::open(&prefix).unwrap_err();
    assert!(
        matches!(err, CkptError::BlockChecksum { offset: 0, .. }),
        "{err}"
    );
    assert_eq!(err.file(), path);
    assert!(err.to_string().contains("model.ckpt.index"), "{err}");
}

#[test]
fn every_truncation_of_the_index_is_an_error() {
    let bytes = fs::read(index_path(&fixture("basic"))).unwrap();
    let (_dir, prefix) = copy_fixture("basic");
    let path = index_path(&prefix);
    for len in 0..bytes.len() {
        fs::write(&path, &bytes[..len]).unwrap();
        let err = Checkpoint::open(&prefix).unwrap_err();
        assert_eq!(err.file(), path, "len {len}: {err}");
    }
}

#[test]
fn bad_magic_is_an_error() {
    let (_dir, prefix) = copy_fixture("basic");
    let path = index_path(&prefix);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 1] = 0xdc;
    fs::write(&path, &bytes).unwrap();
    let err = Checkpoint::open(&prefix).unwrap_err();
    assert!(matches!(err, CkptError::Index { .. }), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn missing_index_or_shard_is_an_io_error_naming_it() {
    let err = Checkpoint::open(&fixture("basic").with_file_name("nope.ckpt")).unwrap_err();
    assert!(matches!(err, CkptError::Io { .. }), "{err}");
    assert!(err.file().ends_with("nope.ckpt.index"));

    let (_dir, prefix) = copy_fixture("sharded");
    fs::remove_file(data_path(&prefix, 1, 2)).unwrap();
    let err = Checkpoint::open(&prefix).unwrap_err();
    assert!(matches!(err, CkptError::Io { .. }), "{err}");
    assert_eq!(err.file(), data_path(&prefix, 1, 2));
}

#[test]
fn truncated_data_file_names_the_tensor() {
    let (_dir, prefix) = copy_fixture("basic");
    let ckpt = Checkpoint::open(&prefix).unwrap();
    // The tensor stored last in the data file.
    let last = ckpt
        .names()
        .into_iter()
        .max_by_key(|n| {
            let l = ckpt.index().location(n).unwrap();
            (l.offset + l.size, l.size)
        })
        .unwrap()
        .to_string();
    let data = data_path(&prefix, 0, 1);
    let len = fs::metadata(&data).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(len - 1).unwrap();
    drop(f);
    // At open ...
    let err = Checkpoint::open(&prefix).unwrap_err();
    assert!(matches!(err, CkptError::Entry { .. }), "{err}");
    assert_eq!(err.tensor(), Some(last.as_str()), "{err}");
    assert_eq!(err.file(), data);
    // ... and at read, if the file shrank after open.
    let err = ckpt.read(&last).unwrap_err();
    assert_eq!(err.tensor(), Some(last.as_str()), "{err}");
    assert!(err.to_string().contains("past the end"), "{err}");
}

#[test]
fn data_checksum_mismatch_names_the_tensor() {
    let (_dir, prefix) = copy_fixture("basic");
    let name = "InceptionResnetV1/Conv2d_1a_3x3/weights";
    let loc = Checkpoint::open(&prefix)
        .unwrap()
        .index()
        .location(name)
        .unwrap();
    let data = data_path(&prefix, 0, 1);
    let mut bytes = fs::read(&data).unwrap();
    bytes[(loc.offset + 5) as usize] ^= 0x40;
    fs::write(&data, &bytes).unwrap();
    let ckpt = Checkpoint::open(&prefix).unwrap(); // open does not read tensor bytes
    let err = ckpt.read_f32(name).unwrap_err();
    assert!(matches!(err, CkptError::DataChecksum { .. }), "{err}");
    assert_eq!(err.tensor(), Some(name));
    assert_eq!(err.file(), data);
    assert_eq!(ckpt.verify().unwrap_err().tensor(), Some(name));
    // Other tensors are still readable.
    assert_eq!(
        ckpt.read_i64("global_step").unwrap(),
        vec![1_234_567_890_123]
    );
}

/// Rewrites the basic fixture's index with `edit` applied to the value of `tensor`; returns the
/// temp dir (keep it alive while reading) and the open result.
fn with_edited_entry(
    tensor: &str,
    edit: impl Fn(&[u8]) -> Vec<u8>,
) -> (tempfile::TempDir, Result<Checkpoint, CkptError>) {
    let (dir, prefix) = copy_fixture("basic");
    let bytes = fs::read(index_path(&prefix)).unwrap();
    let (mut entries, _) = table_entries(&bytes);
    let e = entries
        .iter_mut()
        .find(|(k, _)| k == tensor.as_bytes())
        .unwrap();
    e.1 = edit(&e.1);
    fs::write(index_path(&prefix), build_table(&entries, 1000, false)).unwrap();
    (dir, Checkpoint::open(&prefix))
}

type Edit = Box<dyn Fn(&[u8]) -> Vec<u8>>;

#[test]
fn bad_entries_are_errors_naming_the_tensor() {
    let t = "misc/uint8"; // entry: 08 04 12 04 12 02 08 04 20 ec 04 28 04 35 <crc>
    let cases: Vec<(&str, Edit)> = vec![
        (
            "size",
            Box::new(|v| replace_once(v, &[0x28, 0x04], &[0x28, 0x05])),
        ),
        (
            "unknown dtype",
            Box::new(|v| replace_once(v, &[0x08, 0x04, 0x12], &[0x08, 0x63, 0x12])),
        ),
        ("shard_id", Box::new(|v| [v, &[0x18, 0x01][..]].concat())),
        (
            "negative dimension",
            Box::new(|v| {
                replace_once(
                    v,
                    &[0x12, 0x04, 0x12, 0x02, 0x08, 0x04],
                    &[
                        0x12, 0x0d, 0x12, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                        0xff, 0xff, 0x01,
                    ],
                )
            }),
        ),
        (
            "unknown rank",
            Box::new(|v| {
                replace_once(
                    v,
                    &[0x12, 0x04, 0x12, 0x02, 0x08, 0x04],
                    &[0x12, 0x06, 0x12, 0x02, 0x08, 0x04, 0x18, 0x01],
                )
            }),
        ),
        ("BundleEntryProto", Box::new(|v| v[..v.len() - 2].to_vec())), // truncated crc field
        (
            "past the end",
            Box::new(|v| replace_once(v, &[0x20, 0xec, 0x04], &[0x20, 0xff, 0x7f])),
        ),
    ];
    for (what, edit) in cases {
        let err = with_edited_entry(t, edit).1.unwrap_err();
        assert_eq!(err.tensor(), Some(t), "{what}: {err}");
        assert!(err.to_string().contains(t), "{what}: {err}");
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
}

#[test]
fn bad_header_is_an_error() {
    for (what, header) in [
        ("big-endian", vec![0x08, 0x01, 0x10, 0x01]),
        ("num_shards", vec![0x08, 0x00]),
        ("version", vec![0x08, 0x01, 0x1a, 0x02, 0x10, 0x05]),
        ("BundleHeaderProto", vec![0x08]),
    ] {
        let (_dir, prefix) = copy_fixture("basic");
        let bytes = fs::read(index_path(&prefix)).unwrap();
        let (mut entries, _) = table_entries(&bytes);
        entries[0].1 = header;
        fs::write(index_path(&prefix), build_table(&entries, 1000, false)).unwrap();
        let err = Checkpoint::open(&prefix).unwrap_err();
        assert!(matches!(err, CkptError::Index { .. }), "{what}: {err}");
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
}

#[test]
fn structural_table_damage_is_an_error() {
    let bytes = fs::read(index_path(&fixture("basic"))).unwrap();
    let (entries, _) = table_entries(&bytes);
    // Keys out of order (the CRCs are right: only the order is wrong).
    let mut swapped = entries.clone();
    swapped.swap(3, 4);
    // No header entry.
    let headless = entries[1..].to_vec();
    for (what, table) in [
        ("increasing", build_table(&swapped, 1000, false)),
        ("header", build_table(&headless, 1000, false)),
        ("index separator", build_table(&swapped, 2, false)),
    ] {
        let err =
            vaepipe_tfckpt::Index::parse(std::path::Path::new("x.index"), &table).unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
        assert!(err.to_string().contains("x.index"), "{err}");
    }
}

#[test]
fn string_tensors_are_listed_but_not_read() {
    let (_dir, ckpt) = with_edited_entry("misc/uint8", |v| {
        replace_once(v, &[0x08, 0x04, 0x12], &[0x08, 0x07, 0x12])
    });
    let ckpt = ckpt.unwrap();
    assert_eq!(ckpt.info("misc/uint8").unwrap().dtype, DType::String);
    let err = ckpt.read("misc/uint8").unwrap_err();
    assert_eq!(err.tensor(), Some("misc/uint8"));
    assert!(err.to_string().contains("string"), "{err}");
    ckpt.verify().unwrap(); // skips what it cannot decode
}

#[test]
fn a_shared_prefix_key_bomb_is_refused_quickly() {
    // 300k entries, each repeating the whole previous key plus one byte: ~1.3 MB on disk that
    // would decode to ~45 GB of keys. Must be an error, not an allocation.
    let mut block = vec![0x00, 0x01, 0x00, b'a'];
    for i in 1..300_000u64 {
        put_varint(&mut block, i);
        block.extend_from_slice(&[0x01, 0x00, b'a']);
    }
    block.extend_from_slice(&0u32.to_le_bytes());
    block.extend_from_slice(&1u32.to_le_bytes());
    let mut file = Vec::new();
    let data = append_block(&mut file, &block, false);
    let meta = append_block(&mut file, &encode_block(&[], 16), false);
    let idx = append_block(&mut file, &encode_block(&[(vec![b'b'], data)], 1), false);
    let mut footer = [meta, idx].concat();
    footer.resize(40, 0);
    footer.extend_from_slice(&0xdb47_7524_8b80_fb57u64.to_le_bytes());
    file.extend_from_slice(&footer);
    let start = std::time::Instant::now();
    let err = vaepipe_tfckpt::Index::parse(std::path::Path::new("bomb.index"), &file).unwrap_err();
    assert!(err.to_string().contains("implausibly"), "{err}");
    assert!(start.elapsed().as_secs() < 5);
}
