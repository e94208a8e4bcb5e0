//! Test helpers: fixture paths, a copy-to-tempdir helper, and a minimal LevelDB table reader and
//! writer used to re-encode the real TensorFlow fixtures into variants the reader must accept
//! (Snappy blocks) or reject (bad entries). Deliberately independent of the crate's own table
//! code, so the two check each other.

#![allow(dead_code)]

pub mod fuzz;

use std::path::{Path, PathBuf};

/// Key/value pairs in table order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("model.ckpt")
}

/// Copies a fixture checkpoint's files into a fresh temp dir and returns (dir, prefix).
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture(name);
    let src_dir = src.parent().unwrap();
    for f in std::fs::read_dir(src_dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    let prefix = dir.path().join("model.ckpt");
    (dir, prefix)
}

pub fn index_path(prefix: &Path) -> PathBuf {
    PathBuf::from(format!("{}.index", prefix.display()))
}

pub fn data_path(prefix: &Path, shard: usize, of: usize) -> PathBuf {
    PathBuf::from(format!("{}.data-{shard:05}-of-{of:05}", prefix.display()))
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = buf[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

pub fn masked_crc(data: &[u8], kind: u8) -> u32 {
    let c = crc32c::crc32c_append(crc32c::crc32c(data), &[kind]);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// (offset, size) pairs of the footer's metaindex and index handles.
pub fn footer_handles(file: &[u8]) -> ((u64, u64), (u64, u64)) {
    let footer = &file[file.len() - 48..];
    let mut pos = 0;
    let m = (get_varint(footer, &mut pos), get_varint(footer, &mut pos));
    let i = (get_varint(footer, &mut pos), get_varint(footer, &mut pos));
    (m, i)
}

/// Decodes an uncompressed block's entries (no validation).
pub fn decode_block(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let n = u32::from_le_bytes(block[block.len() - 4..].try_into().unwrap()) as usize;
    let end = block.len() - 4 - 4 * n;
    let mut pos = 0;
    let mut key = Vec::new();
    let mut out = Vec::new();
    while pos < end {
        let shared = get_varint(block, &mut pos) as usize;
        let non_shared = get_varint(block, &mut pos) as usize;
        let vlen = get_varint(block, &mut pos) as usize;
        key.truncate(shared);
        key.extend_from_slice(&block[pos..pos + non_shared]);
        pos += non_shared;
        out.push((key.clone(), block[pos..pos + vlen].to_vec()));
        pos += vlen;
    }
    out
}

/// Every key/value pair of an uncompressed table, plus the number of data blocks.
pub fn table_entries(file: &[u8]) -> (KeyValues, usize) {
    let (_, (io, is)) = footer_handles(file);
    let index = decode_block(&file[io as usize..(io + is) as usize]);
    let mut out = Vec::new();
    for (_, handle) in &index {
        let mut pos = 0;
        let off = get_varint(handle, &mut pos) as usize;
        let size = get_varint(handle, &mut pos) as usize;
        out.extend(decode_block(&file[off..off + size]));
    }
    (out, index.len())
}

/// Encodes a block as LevelDB's BlockBuilder does.
pub fn encode_block(entries: &[(Vec<u8>, Vec<u8>)], restart_interval: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut restarts = vec![0u32];
    let mut prev: &[u8] = &[];
    for (i, (k, v)) in entries.iter().enumerate() {
        let shared = if i % restart_interval == 0 {
            if i > 0 {
                restarts.push(out.len() as u32);
            }
            0
        } else {
            prev.iter().zip(k).take_while(|(a, b)| a == b).count()
        };
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, (k.len() - shared) as u64);
        put_varint(&mut out, v.len() as u64);
        out.extend_from_slice(&k[shared..]);
        out.extend_from_slice(v);
        prev = k;
    }
    for r in &restarts {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
    out
}

/// Appends a block and its trailer; returns its handle bytes.
pub fn append_block(file: &mut Vec<u8>, contents: &[u8], snappy: bool) -> Vec<u8> {
    let (body, kind) = if snappy {
        (
            snap::raw::Encoder::new().compress_vec(contents).unwrap(),
            1u8,
        )
    } else {
        (contents.to_vec(), 0u8)
    };
    let mut handle = Vec::new();
    put_varint(&mut handle, file.len() as u64);
    put_varint(&mut handle, body.len() as u64);
    file.extend_from_slice(&body);
    file.push(kind);
    file.extend_from_slice(&masked_crc(&body, kind).to_le_bytes());
    handle
}

/// Writes a whole table: `entries` split into data blocks of `per_block` entries (restart
/// interval 16), an empty metaindex, an index block (restart interval 1) whose separators are
/// each block's last key, and the footer. Data blocks are Snappy-compressed when `snappy`.
pub fn build_table(entries: &[(Vec<u8>, Vec<u8>)], per_block: usize, snappy: bool) -> Vec<u8> {
    let mut file = Vec::new();
    let mut index = Vec::new();
    for chunk in entries.chunks(per_block.max(1)) {
        let handle = append_block(&mut file, &encode_block(chunk, 16), snappy);
        index.push((chunk.last().unwrap().0.clone(), handle));
    }
    let meta = append_block(&mut file, &encode_block(&[], 16), false);
    let idx = append_block(&mut file, &encode_block(&index, 1), false);
    let mut footer = Vec::new();
    footer.extend_from_slice(&meta);
    footer.extend_from_slice(&idx);
    footer.resize(40, 0);
    footer.extend_from_slice(&0xdb47_7524_8b80_fb57u64.to_le_bytes());
    file.extend_from_slice(&footer);
    file
}

/// Replaces the first occurrence of `from` in `buf` by `to`.
pub fn replace_once(buf: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = buf
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("pattern {from:02x?} not found in {buf:02x?}"));
    let mut out = buf[..at].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&buf[at + from.len()..]);
    out
}
