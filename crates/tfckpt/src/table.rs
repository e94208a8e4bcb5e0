//! The LevelDB-style sorted string table that a TensorFlow checkpoint's `.index` file is
//! (TF `core/lib/io/{table_format.txt,format.cc,block_builder.cc}`, spec formats.md §4): the
//! 48-byte footer with its magic, block handles, block trailers (compression byte + masked
//! CRC-32C), uncompressed and Snappy blocks, entries with shared-prefix keys and the restart
//! array. Works on the whole file in memory and returns every key/value pair in order; it checks
//! everything it can (checksums, bounds, restart points, strictly increasing keys, index
//! separators) and never panics on bad input.

use std::borrow::Cow;

use crate::crc;
use crate::varint::{read_varint32, read_varint64};

/// Footer size: two block handles padded to 40 bytes, then the 8-byte magic.
pub(crate) const FOOTER_LEN: usize = 48;
/// `kTableMagicNumber`, stored as two little-endian u32 (low word first) = one LE u64.
pub(crate) const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Compression byte + masked CRC-32C after every block.
pub(crate) const BLOCK_TRAILER_LEN: usize = 5;

/// Snappy never expands more than ~21x (a 3-byte copy tag yields at most 64 bytes); anything
/// claiming more is corrupt, and refusing it keeps a hostile length from allocating gigabytes.
const MAX_SNAPPY_RATIO: usize = 32;

/// A block may decode to at most this many times its size (plus 1 MiB); see `parse_block`.
const MAX_DECODED_RATIO: usize = 64;

/// Key/value pairs in table order.
pub(crate) type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a table could not be read (the caller adds the file name).
#[derive(Debug)]
pub(crate) enum TableError {
    Malformed(String),
    Checksum {
        offset: u64,
        stored: u32,
        computed: u32,
    },
}

fn malformed(reason: impl Into<String>) -> TableError {
    TableError::Malformed(reason.into())
}

/// Where a block lives in the file (size excludes the trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    /// Decodes `varint64 offset, varint64 size` from the front of `buf`, returning the rest.
    fn decode(buf: &[u8]) -> Option<(BlockHandle, &[u8])> {
        let (offset, rest) = read_varint64(buf)?;
        let (size, rest) = read_varint64(rest)?;
        Some((BlockHandle { offset, size }, rest))
    }
}

/// Everything in a table: its key/value pairs in key order, plus how many data blocks held them.
#[derive(Debug)]
pub(crate) struct Table {
    pub entries: KeyValues,
    pub data_blocks: usize,
}

/// Reads a whole table held in `file`.
pub(crate) fn read_table(file: &[u8]) -> Result<Table, TableError> {
    if file.len() < FOOTER_LEN {
        return Err(malformed(format!(
            "file is {} bytes, shorter than the {FOOTER_LEN}-byte table footer (truncated?)",
            file.len()
        )));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&footer[40..48]);
    let magic = u64::from_le_bytes(magic);
    if magic != TABLE_MAGIC {
        return Err(malformed(format!(
            "bad table magic {magic:#018x} (expected {TABLE_MAGIC:#018x}; truncated or not a checkpoint index?)"
        )));
    }
    let (metaindex, rest) = BlockHandle::decode(&footer[..40])
        .ok_or_else(|| malformed("bad metaindex handle in footer"))?;
    let (index, _) =
        BlockHandle::decode(rest).ok_or_else(|| malformed("bad index handle in footer"))?;

    let limit = file.len() - FOOTER_LEN;
    // The metaindex is empty in TF checkpoints (no filter blocks); it must still be a valid block.
    let meta = read_block(file, limit, metaindex, "metaindex")?;
    parse_block(&meta, "metaindex")?;

    let index_contents = read_block(file, limit, index, "index")?;
    let index_entries = parse_block(&index_contents, "index")?;

    let data_blocks = index_entries.len();
    let mut entries: KeyValues = Vec::new();
    let mut prev_separator: Option<Vec<u8>> = None;
    for (n, (separator, handle_bytes)) in index_entries.into_iter().enumerate() {
        let handle = match BlockHandle::decode(&handle_bytes) {
            Some((h, [])) => h,
            _ => return Err(malformed(format!("index entry {n}: bad block handle"))),
        };
        let what = format!("data block {n}");
        let contents = read_block(file, limit, handle, &what)?;
        let block = parse_block(&contents, &what)?;
        if let (Some(first), Some(prev)) = (block.first(), prev_separator.as_ref()) {
            if first.0 <= *prev {
                return Err(malformed(format!(
                    "{what}: first key is not above the previous block's index separator"
                )));
            }
        }
        if let Some(last) = block.last() {
            if last.0 > separator {
                return Err(malformed(format!(
                    "{what}: last key is above its index separator"
                )));
            }
        }
        for (key, value) in block {
            if let Some((prev_key, _)) = entries.last() {
                if key <= *prev_key {
                    return Err(malformed(format!(
                        "{what}: keys are not strictly increasing"
                    )));
                }
            }
            entries.push((key, value));
        }
        prev_separator = Some(separator);
    }
    Ok(Table {
        entries,
        data_blocks,
    })
}

/// Returns a block's contents (decompressed if need be) after checking its trailer.
/// `limit` is where the footer starts: no block may reach into it.
pub(crate) fn read_block<'a>(
    file: &'a [u8],
    limit: usize,
    handle: BlockHandle,
    what: &str,
) -> Result<Cow<'a, [u8]>, TableError> {
    let start = usize::try_from(handle.offset).ok();
    let size = usize::try_from(handle.size).ok();
    let (start, end) = match (start, size) {
        (Some(s), Some(z)) => match s.checked_add(z) {
            Some(e) if e.checked_add(BLOCK_TRAILER_LEN).is_some_and(|t| t <= limit) => (s, e),
            _ => {
                return Err(malformed(format!(
                    "{what} block (offset {}, size {}) runs past the end of the table ({limit} bytes before the footer)",
                    handle.offset, handle.size
                )))
            }
        },
        _ => {
            return Err(malformed(format!(
                "{what} block handle (offset {}, size {}) is out of range",
                handle.offset, handle.size
            )))
        }
    };
    let data = &file[start..end];
    let kind = file[end];
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&file[end + 1..end + BLOCK_TRAILER_LEN]);
    let stored = u32::from_le_bytes(stored);
    let computed = crc::mask(crc32c::crc32c_append(crc32c::crc32c(data), &[kind]));
    // Under cargo-fuzz (`--cfg fuzzing`) a wrong CRC is let through, so that coverage-guided
    // mutations reach the block, entry and proto decoders instead of all dying here.
    if stored != computed && !cfg!(fuzzing) {
        return Err(TableError::Checksum {
            offset: handle.offset,
            stored,
            computed,
        });
    }
    match kind {
        0 => Ok(Cow::Borrowed(data)),
        1 => {
            let len = snap::raw::decompress_len(data)
                .map_err(|e| malformed(format!("{what} block: bad Snappy length header: {e}")))?;
            if len
                > data
                    .len()
                    .saturating_mul(MAX_SNAPPY_RATIO)
                    .saturating_add(64)
            {
                return Err(malformed(format!(
                    "{what} block: Snappy header claims {len} bytes from {} compressed bytes",
                    data.len()
                )));
            }
            snap::raw::Decoder::new()
                .decompress_vec(data)
                .map(Cow::Owned)
                .map_err(|e| malformed(format!("{what} block: Snappy decompression failed: {e}")))
        }
        other => Err(malformed(format!(
            "{what} block: unknown compression type {other}"
        ))),
    }
}

/// Decodes one block's entries, checking the restart array against the entry boundaries.
pub(crate) fn parse_block(block: &[u8], what: &str) -> Result<KeyValues, TableError> {
    let bad = |reason: &str| malformed(format!("{what} block: {reason}"));
    let len = block.len();
    if len < 4 {
        return Err(bad("shorter than its restart count"));
    }
    let num_restarts = u32_at(block, len - 4) as usize;
    if num_restarts == 0 {
        return Err(bad("restart count is 0"));
    }
    let max_restarts = (len - 4) / 4;
    if num_restarts > max_restarts {
        return Err(bad("restart count does not fit in the block"));
    }
    let data_end = len - 4 - 4 * num_restarts;
    let restarts: Vec<usize> = (0..num_restarts)
        .map(|i| u32_at(block, data_end + 4 * i) as usize)
        .collect();
    if restarts[0] != 0 {
        return Err(bad("first restart point is not 0"));
    }
    if restarts.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("restart points are not increasing"));
    }

    // Shared-prefix keys let a small block decode into far more bytes (each entry can repeat the
    // whole previous key for one byte of input); cap the decoded size so a hostile block cannot
    // allocate without bound. Real TF blocks decode to a few times their size.
    let budget = len
        .saturating_mul(MAX_DECODED_RATIO)
        .saturating_add(1 << 20);
    let mut decoded = 0usize;
    let mut entries: KeyValues = Vec::new();
    let mut next_restart = 0usize; // index into `restarts`
    let mut pos = 0usize;
    let mut key: Vec<u8> = Vec::new();
    while pos < data_end {
        let is_restart = restarts.get(next_restart) == Some(&pos);
        if is_restart {
            next_restart += 1;
        } else if restarts.get(next_restart).is_some_and(|&r| r < pos) {
            return Err(bad("a restart point is not at an entry boundary"));
        }
        let rest = &block[pos..data_end];
        let (shared, rest) = read_varint32(rest).ok_or_else(|| bad("bad entry header"))?;
        let (non_shared, rest) = read_varint32(rest).ok_or_else(|| bad("bad entry header"))?;
        let (value_len, rest) = read_varint32(rest).ok_or_else(|| bad("bad entry header"))?;
        let (shared, non_shared, value_len) =
            (shared as usize, non_shared as usize, value_len as usize);
        if shared > key.len() {
            return Err(bad("entry shares more key bytes than the previous key has"));
        }
        if is_restart && shared != 0 {
            return Err(bad("entry at a restart point shares key bytes"));
        }
        if non_shared.saturating_add(value_len) > rest.len() {
            return Err(bad("entry runs past the end of the block"));
        }
        key.truncate(shared);
        key.extend_from_slice(&rest[..non_shared]);
        let value = rest[non_shared..non_shared + value_len].to_vec();
        let header_len = (data_end - pos) - rest.len();
        pos += header_len + non_shared + value_len;
        if let Some((prev, _)) = entries.last() {
            if key <= *prev {
                return Err(bad("keys are not strictly increasing"));
            }
        }
        decoded = decoded.saturating_add(key.len() + value.len());
        if decoded > budget {
            return Err(bad("decodes to implausibly many key bytes"));
        }
        entries.push((key.clone(), value));
    }
    // An empty block carries the single restart point 0; otherwise every restart must have
    // been met at an entry boundary.
    let all_met = next_restart == restarts.len() || (data_end == 0 && restarts == [0]);
    if !all_met {
        return Err(bad("a restart point is past the last entry"));
    }
    Ok(entries)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}
