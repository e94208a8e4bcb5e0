//! A pure-Rust reader for TensorFlow V2 checkpoints ("tensor bundles", what `tf.train.Saver`
//! writes since TF 1.0 and what facenet's DFC-VAE models ship as): `<prefix>.index`, a
//! LevelDB-style table mapping tensor names to `BundleEntryProto`s, and the
//! `<prefix>.data-SSSSS-of-NNNNN` shards holding the raw little-endian tensor bytes. See
//! `/work/shared/spec/formats.md` §4 for the format.
//!
//! Every checksum is checked (index block trailers at open, each tensor's CRC-32C at read) and
//! every malformed input is a [`CkptError`] naming the file and, where it applies, the tensor;
//! nothing here panics on bad bytes. No TensorFlow is needed.
//!
//! ```no_run
//! # fn main() -> Result<(), vaepipe_tfckpt::CkptError> {
//! use vaepipe_tfckpt::Checkpoint;
//! let ckpt = Checkpoint::open(std::path::Path::new("models/20170512/model-20170512-110547.ckpt-250000"))?;
//! for name in ckpt.names() {
//!     let info = ckpt.info(name)?;
//!     println!("{name} {:?} {:?}", info.dtype, info.shape);
//! }
//! let w: Vec<f32> = ckpt.read_f32("InceptionResnetV1/Conv2d_1a_3x3/weights")?;
//! # let _ = w; Ok(()) }
//! ```
//!
//! Not supported: string/complex tensors (listed by [`Checkpoint::names`], refused by
//! [`Checkpoint::read`]), partitioned variables (entries with slices, likewise refused; their
//! per-slice keys, which start with a NUL byte, are not listed), big-endian bundles.

mod crc;
mod error;
mod proto;
mod table;
mod varint;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use crc::{mask, masked_crc32c, unmask};
pub use error::CkptError;

/// The bundle format version this reader implements (TF `kTensorBundleVersion`).
const TENSOR_BUNDLE_VERSION: i32 = 1;
/// Shard file names carry five digits; more shards than this cannot be named.
const MAX_SHARDS: i32 = 99_999;

/// A TensorFlow `DataType` this crate knows (TF `core/framework/types.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Float,
    Double,
    Int32,
    UInt8,
    Int16,
    Int8,
    String,
    Complex64,
    Int64,
    Bool,
    BFloat16,
    UInt16,
    Complex128,
    Half,
    UInt32,
    UInt64,
}

impl DType {
    /// Maps a `DataType` enum value; `None` for values this crate does not know.
    pub fn from_tf(value: i32) -> Option<DType> {
        Some(match value {
            1 => DType::Float,
            2 => DType::Double,
            3 => DType::Int32,
            4 => DType::UInt8,
            5 => DType::Int16,
            6 => DType::Int8,
            7 => DType::String,
            8 => DType::Complex64,
            9 => DType::Int64,
            10 => DType::Bool,
            14 => DType::BFloat16,
            17 => DType::UInt16,
            18 => DType::Complex128,
            19 => DType::Half,
            22 => DType::UInt32,
            23 => DType::UInt64,
            _ => return None,
        })
    }

    /// The `DataType` enum value.
    pub fn to_tf(self) -> i32 {
        match self {
            DType::Float => 1,
            DType::Double => 2,
            DType::Int32 => 3,
            DType::UInt8 => 4,
            DType::Int16 => 5,
            DType::Int8 => 6,
            DType::String => 7,
            DType::Complex64 => 8,
            DType::Int64 => 9,
            DType::Bool => 10,
            DType::BFloat16 => 14,
            DType::UInt16 => 17,
            DType::Complex128 => 18,
            DType::Half => 19,
            DType::UInt32 => 22,
            DType::UInt64 => 23,
        }
    }

    /// Bytes per element in a data file; `None` for strings (variable length).
    pub fn size_of(self) -> Option<usize> {
        match self {
            DType::Bool | DType::UInt8 | DType::Int8 => Some(1),
            DType::Int16 | DType::UInt16 | DType::Half | DType::BFloat16 => Some(2),
            DType::Float | DType::Int32 | DType::UInt32 => Some(4),
            DType::Double | DType::Int64 | DType::UInt64 | DType::Complex64 => Some(8),
            DType::Complex128 => Some(16),
            DType::String => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DType::Float => "float32",
            DType::Double => "float64",
            DType::Int32 => "int32",
            DType::UInt8 => "uint8",
            DType::Int16 => "int16",
            DType::Int8 => "int8",
            DType::String => "string",
            DType::Complex64 => "complex64",
            DType::Int64 => "int64",
            DType::Bool => "bool",
            DType::BFloat16 => "bfloat16",
            DType::UInt16 => "uint16",
            DType::Complex128 => "complex128",
            DType::Half => "float16",
            DType::UInt32 => "uint32",
            DType::UInt64 => "uint64",
        };
        f.write_str(s)
    }
}

/// A tensor's type and shape (dims in TF order; empty for a scalar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements (1 for a scalar). Cannot overflow for a parsed entry: the index parser
    /// rejects shapes whose element count does not fit in `usize`.
    pub fn numel(&self) -> usize {
        self.shape
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d))
    }
}

/// A tensor's values, row-major over [`TensorInfo::shape`]. Half and bfloat16 are kept as their
/// raw bit patterns (use [`Checkpoint::read_f32`] to widen them exactly).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16Bits(Vec<u16>),
    BF16Bits(Vec<u16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::F16Bits(v) | TensorData::BF16Bits(v) | TensorData::U16(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a tensor's bytes are in the data shards (for diagnostics and tooling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorLocation {
    /// Shard number (`.data-SSSSS-of-…`).
    pub shard: usize,
    /// Byte offset in the shard.
    pub offset: u64,
    /// Byte length.
    pub size: u64,
    /// Masked CRC-32C of the bytes, as stored in the entry.
    pub masked_crc32c: u32,
}

/// Where a tensor's bytes are, from its `BundleEntryProto`.
#[derive(Debug, Clone)]
struct Entry {
    info: TensorInfo,
    shard: usize,
    offset: u64,
    size: u64,
    crc32c: u32,
    sliced: bool,
}

/// A parsed `.index` file: the header's shard count and every tensor entry, validated (known
/// dtype, known rank, size = numel × sizeof, shard in range). Touches no data file; this is what
/// the index fuzz target drives.
#[derive(Debug, Clone)]
pub struct Index {
    file: PathBuf,
    num_shards: usize,
    data_blocks: usize,
    entries: BTreeMap<String, Entry>,
}

impl Index {
    /// Parses the bytes of an index file; `file` is only used in error messages.
    pub fn parse(file: &Path, bytes: &[u8]) -> Result<Index, CkptError> {
        let index_err = |reason: String| CkptError::Index {
            file: file.to_path_buf(),
            reason,
        };
        let table = table::read_table(bytes).map_err(|e| match e {
            table::TableError::Malformed(reason) => index_err(reason),
            table::TableError::Checksum {
                offset,
                stored,
                computed,
            } => CkptError::BlockChecksum {
                file: file.to_path_buf(),
                offset,
                stored,
                computed,
            },
        })?;

        let mut pairs = table.entries.into_iter();
        let header = match pairs.next() {
            Some((key, value)) if key.is_empty() => proto::decode_header(&value)
                .map_err(|e| index_err(format!("bad BundleHeaderProto: {e}")))?,
            _ => return Err(index_err("no header entry (empty key) in the table".into())),
        };
        if header.endianness != 0 {
            return Err(index_err(format!(
                "bundle endianness {} is not little-endian (big-endian bundles are not supported)",
                header.endianness
            )));
        }
        if !(1..=MAX_SHARDS).contains(&header.num_shards) {
            return Err(index_err(format!(
                "header num_shards {} is not in 1..={MAX_SHARDS}",
                header.num_shards
            )));
        }
        if header.producer < 0
            || header.min_consumer > TENSOR_BUNDLE_VERSION
            || header.bad_consumers.contains(&TENSOR_BUNDLE_VERSION)
        {
            return Err(index_err(format!(
                "bundle version (producer {}, min_consumer {}, bad_consumers {:?}) cannot be read by a version-{TENSOR_BUNDLE_VERSION} reader",
                header.producer, header.min_consumer, header.bad_consumers
            )));
        }
        let num_shards = header.num_shards as usize;

        let mut entries = BTreeMap::new();
        for (key, value) in pairs {
            if key.first() == Some(&0) {
                continue; // a partitioned variable's slice key (TF never names tensors "\0...")
            }
            let name = String::from_utf8(key).map_err(|e| {
                index_err(format!(
                    "tensor name {:?} is not valid UTF-8",
                    String::from_utf8_lossy(e.as_bytes())
                ))
            })?;
            let entry = parse_entry(&value, num_shards).map_err(|reason| CkptError::Entry {
                file: file.to_path_buf(),
                tensor: name.clone(),
                reason,
            })?;
            entries.insert(name, entry);
        }
        Ok(Index {
            file: file.to_path_buf(),
            num_shards,
            data_blocks: table.data_blocks,
            entries,
        })
    }

    /// Number of data shards the header declares.
    pub fn num_shards(&self) -> usize {
        self.num_shards
    }

    /// Number of data blocks in the index table (usually 1: blocks are 256 KiB).
    pub fn data_blocks(&self) -> usize {
        self.data_blocks
    }

    /// Tensor names, sorted bytewise (TF's order).
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// A tensor's dtype and shape.
    pub fn info(&self, name: &str) -> Result<&TensorInfo, CkptError> {
        self.entry(name).map(|e| &e.info)
    }

    /// Where a tensor's bytes are stored.
    pub fn location(&self, name: &str) -> Result<TensorLocation, CkptError> {
        self.entry(name).map(|e| TensorLocation {
            shard: e.shard,
            offset: e.offset,
            size: e.size,
            masked_crc32c: e.crc32c,
        })
    }

    fn entry(&self, name: &str) -> Result<&Entry, CkptError> {
        self.entries.get(name).ok_or_else(|| CkptError::NotFound {
            file: self.file.clone(),
            tensor: name.to_string(),
        })
    }
}

/// Validates one `BundleEntryProto`; the error is the reason, to be wrapped with file and name.
fn parse_entry(value: &[u8], num_shards: usize) -> Result<Entry, String> {
    let e = proto::decode_entry(value).map_err(|err| format!("bad BundleEntryProto: {err}"))?;
    let dtype = DType::from_tf(e.dtype).ok_or_else(|| format!("unknown dtype {}", e.dtype))?;
    if e.unknown_rank {
        return Err("shape has unknown rank".into());
    }
    let shape = e
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d} in shape")))
        .collect::<Result<Vec<usize>, String>>()?;
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory"))?;
    let shard = usize::try_from(e.shard_id)
        .ok()
        .filter(|&s| s < num_shards)
        .ok_or_else(|| {
            format!(
                "shard_id {} is not below num_shards {num_shards}",
                e.shard_id
            )
        })?;
    let offset = u64::try_from(e.offset).map_err(|_| format!("negative offset {}", e.offset))?;
    let size = u64::try_from(e.size).map_err(|_| format!("negative size {}", e.size))?;
    offset
        .checked_add(size)
        .ok_or_else(|| format!("offset {offset} + size {size} overflows"))?;
    let sliced = e.num_slices > 0;
    if !sliced {
        if let Some(elem) = dtype.size_of() {
            let expected = shape
                .iter()
                .try_fold(elem as u64, |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(|| format!("shape {shape:?} of {dtype} overflows in bytes"))?;
            if expected != size {
                return Err(format!(
                    "size {size} bytes does not match shape {shape:?} x {dtype} ({expected} bytes)"
                ));
            }
        }
    }
    Ok(Entry {
        info: TensorInfo { dtype, shape },
        shard,
        offset,
        size,
        crc32c: e.crc32c,
        sliced,
    })
}

/// An open checkpoint: its parsed index and the paths of its data shards.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    prefix: PathBuf,
    index: Index,
}

impl Checkpoint {
    /// Opens `<prefix>.index`, validates the whole table and every entry, and checks that each
    /// referenced shard exists and is long enough for its tensors (the tensor bytes themselves
    /// are read and checksummed by [`Checkpoint::read`]).
    pub fn open(prefix: &Path) -> Result<Checkpoint, CkptError> {
        let index_path = suffixed(prefix, ".index");
        let bytes = std::fs::read(&index_path).map_err(|source| CkptError::Io {
            file: index_path.clone(),
            source,
        })?;
        let index = Index::parse(&index_path, &bytes)?;
        let ckpt = Checkpoint {
            prefix: prefix.to_path_buf(),
            index,
        };
        let used: BTreeSet<usize> = ckpt
            .index
            .entries
            .values()
            .filter(|e| !e.sliced)
            .map(|e| e.shard)
            .collect();
        let mut lens = BTreeMap::new();
        for shard in used {
            let path = ckpt.shard_path(shard);
            let len = std::fs::metadata(&path)
                .map_err(|source| CkptError::Io { file: path, source })?
                .len();
            lens.insert(shard, len);
        }
        for (name, e) in &ckpt.index.entries {
            let Some(&len) = lens.get(&e.shard) else {
                continue;
            };
            ckpt.check_bounds(name, e, len)?;
        }
        Ok(ckpt)
    }

    /// The prefix this checkpoint was opened with.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The parsed index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Path of data shard `shard`: `<prefix>.data-SSSSS-of-NNNNN`.
    pub fn shard_path(&self, shard: usize) -> PathBuf {
        suffixed(
            &self.prefix,
            &format!(".data-{shard:05}-of-{:05}", self.index.num_shards),
        )
    }

    /// Tensor names, sorted bytewise (TF's order).
    pub fn names(&self) -> Vec<&str> {
        self.index.names()
    }

    /// A tensor's dtype and shape.
    pub fn info(&self, name: &str) -> Result<&TensorInfo, CkptError> {
        self.index.info(name)
    }

    /// Reads a tensor, checking its CRC-32C, in its stored type.
    pub fn read(&self, name: &str) -> Result<TensorData, CkptError> {
        let entry = self.index.entry(name)?;
        let bytes = self.read_bytes(name, entry)?;
        let dtype = entry.info.dtype;
        Ok(match dtype {
            DType::Float => TensorData::F32(decode(&bytes, f32::from_le_bytes)),
            DType::Double => TensorData::F64(decode(&bytes, f64::from_le_bytes)),
            DType::Half => TensorData::F16Bits(decode(&bytes, u16::from_le_bytes)),
            DType::BFloat16 => TensorData::BF16Bits(decode(&bytes, u16::from_le_bytes)),
            DType::Int8 => TensorData::I8(decode(&bytes, i8::from_le_bytes)),
            DType::Int16 => TensorData::I16(decode(&bytes, i16::from_le_bytes)),
            DType::Int32 => TensorData::I32(decode(&bytes, i32::from_le_bytes)),
            DType::Int64 => TensorData::I64(decode(&bytes, i64::from_le_bytes)),
            DType::UInt8 => TensorData::U8(bytes),
            DType::UInt16 => TensorData::U16(decode(&bytes, u16::from_le_bytes)),
            DType::UInt32 => TensorData::U32(decode(&bytes, u32::from_le_bytes)),
            DType::UInt64 => TensorData::U64(decode(&bytes, u64::from_le_bytes)),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::String | DType::Complex64 | DType::Complex128 => {
                // read_bytes refuses these before reading.
                return Err(self.unsupported(name, dtype));
            }
        })
    }

    /// Reads a tensor as f32. float32 is returned as stored; float16, bfloat16 and all 8/16-bit
    /// integers widen exactly; 32/64-bit integers are accepted when every value is exactly
    /// representable (|v| <= 2^24), otherwise [`CkptError::Conversion`]; float64 is rounded to
    /// the nearest f32 (documented loss of precision), and a finite value beyond f32's range is a
    /// [`CkptError::Conversion`]. Bool, string and complex tensors are refused.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, CkptError> {
        let data = self.read(name)?;
        let conv = |reason: String| CkptError::Conversion {
            file: self.index.file.clone(),
            tensor: name.to_string(),
            reason,
        };
        fn exact_ints<T: Copy + Into<i128>>(v: &[T]) -> Option<Vec<f32>> {
            const LIMIT: i128 = 1 << 24;
            v.iter()
                .map(|&x| {
                    let x: i128 = x.into();
                    (-LIMIT..=LIMIT).contains(&x).then_some(x as f32)
                })
                .collect()
        }
        let too_big =
            || conv("an integer value is not exactly representable as f32 (|v| > 2^24)".into());
        Ok(match data {
            TensorData::F32(v) => v,
            TensorData::F64(v) => {
                let out: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                if v.iter()
                    .zip(&out)
                    .any(|(x, y)| x.is_finite() && !y.is_finite())
                {
                    return Err(conv("a float64 value is beyond the range of f32".into()));
                }
                out
            }
            TensorData::F16Bits(v) => v.into_iter().map(f16_to_f32).collect(),
            TensorData::BF16Bits(v) => v
                .into_iter()
                .map(|b| f32::from_bits(u32::from(b) << 16))
                .collect(),
            TensorData::I8(v) => v.into_iter().map(f32::from).collect(),
            TensorData::I16(v) => v.into_iter().map(f32::from).collect(),
            TensorData::U8(v) => v.into_iter().map(f32::from).collect(),
            TensorData::U16(v) => v.into_iter().map(f32::from).collect(),
            TensorData::I32(v) => exact_ints(&v).ok_or_else(too_big)?,
            TensorData::I64(v) => exact_ints(&v).ok_or_else(too_big)?,
            TensorData::U32(v) => exact_ints(&v).ok_or_else(too_big)?,
            TensorData::U64(v) => exact_ints(&v).ok_or_else(too_big)?,
            TensorData::Bool(_) => return Err(conv("a bool tensor cannot be read as f32".into())),
        })
    }

    /// Reads an integer tensor (any width, signed or not) as i64; a uint64 value above
    /// `i64::MAX` or a non-integer tensor is a [`CkptError::Conversion`].
    pub fn read_i64(&self, name: &str) -> Result<Vec<i64>, CkptError> {
        let data = self.read(name)?;
        let conv = |reason: String| CkptError::Conversion {
            file: self.index.file.clone(),
            tensor: name.to_string(),
            reason,
        };
        Ok(match data {
            TensorData::I8(v) => v.into_iter().map(i64::from).collect(),
            TensorData::I16(v) => v.into_iter().map(i64::from).collect(),
            TensorData::I32(v) => v.into_iter().map(i64::from).collect(),
            TensorData::I64(v) => v,
            TensorData::U8(v) => v.into_iter().map(i64::from).collect(),
            TensorData::U16(v) => v.into_iter().map(i64::from).collect(),
            TensorData::U32(v) => v.into_iter().map(i64::from).collect(),
            TensorData::U64(v) => v
                .into_iter()
                .map(|x| i64::try_from(x).ok())
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| conv("a uint64 value is above i64::MAX".into()))?,
            other => {
                return Err(conv(format!(
                    "a {} tensor is not an integer tensor",
                    tensor_data_dtype(&other)
                )))
            }
        })
    }

    /// Reads every readable tensor and checks its checksum; returns the first problem found.
    /// String and complex tensors are skipped (this crate cannot decode them).
    pub fn verify(&self) -> Result<(), CkptError> {
        for (name, e) in &self.index.entries {
            if matches!(
                e.info.dtype,
                DType::String | DType::Complex64 | DType::Complex128
            ) || e.sliced
            {
                continue;
            }
            self.read_bytes(name, e)?;
        }
        Ok(())
    }

    fn unsupported(&self, name: &str, dtype: DType) -> CkptError {
        CkptError::Entry {
            file: self.index.file.clone(),
            tensor: name.to_string(),
            reason: format!("reading {dtype} tensors is not supported"),
        }
    }

    fn check_bounds(&self, name: &str, e: &Entry, len: u64) -> Result<(), CkptError> {
        // parse_entry checked that offset + size does not overflow.
        let end = e.offset.saturating_add(e.size);
        if end > len {
            return Err(CkptError::Entry {
                file: self.shard_path(e.shard),
                tensor: name.to_string(),
                reason: format!(
                    "bytes {}..{end} run past the end of the data file ({len} bytes; truncated?)",
                    e.offset
                ),
            });
        }
        Ok(())
    }

    /// Reads a tensor's raw bytes and checks them against the entry's masked CRC-32C.
    fn read_bytes(&self, name: &str, e: &Entry) -> Result<Vec<u8>, CkptError> {
        if matches!(
            e.info.dtype,
            DType::String | DType::Complex64 | DType::Complex128
        ) {
            return Err(self.unsupported(name, e.info.dtype));
        }
        if e.sliced {
            return Err(CkptError::Entry {
                file: self.index.file.clone(),
                tensor: name.to_string(),
                reason: "partitioned (sliced) variables are not supported".into(),
            });
        }
        let path = self.shard_path(e.shard);
        let entry_err = |reason: String| CkptError::Entry {
            file: path.clone(),
            tensor: name.to_string(),
            reason,
        };
        let mut file = File::open(&path).map_err(|source| CkptError::Io {
            file: path.clone(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| CkptError::Io {
                file: path.clone(),
                source,
            })?
            .len();
        self.check_bounds(name, e, len)?;
        let size = usize::try_from(e.size)
            .map_err(|_| entry_err(format!("size {} does not fit in memory", e.size)))?;
        let mut bytes = vec![0u8; size];
        file.seek(SeekFrom::Start(e.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|err| {
                entry_err(format!(
                    "reading {size} bytes at offset {}: {err}",
                    e.offset
                ))
            })?;
        let computed = masked_crc32c(&bytes);
        if computed != e.crc32c {
            return Err(CkptError::DataChecksum {
                file: path,
                tensor: name.to_string(),
                stored: e.crc32c,
                computed,
            });
        }
        Ok(bytes)
    }
}

fn tensor_data_dtype(d: &TensorData) -> DType {
    match d {
        TensorData::F32(_) => DType::Float,
        TensorData::F64(_) => DType::Double,
        TensorData::F16Bits(_) => DType::Half,
        TensorData::BF16Bits(_) => DType::BFloat16,
        TensorData::I8(_) => DType::Int8,
        TensorData::I16(_) => DType::Int16,
        TensorData::I32(_) => DType::Int32,
        TensorData::I64(_) => DType::Int64,
        TensorData::U8(_) => DType::UInt8,
        TensorData::U16(_) => DType::UInt16,
        TensorData::U32(_) => DType::UInt32,
        TensorData::U64(_) => DType::UInt64,
        TensorData::Bool(_) => DType::Bool,
    }
}

/// `prefix` with `suffix` appended to its last component (prefixes contain dots, e.g.
/// `model.ckpt-250000`, so `Path::with_extension` would be wrong).
fn suffixed(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Decodes little-endian fixed-size elements; `bytes.len()` is a multiple of `N` because the
/// entry's size was checked against numel × sizeof.
fn decode<T, const N: usize>(bytes: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from_le(a)
        })
        .collect()
}

/// IEEE half → f32, exact (every half is representable as an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    match exp {
        0 => {
            // zero or subnormal: mant × 2^-24
            let v = mant as f32 / 16_777_216.0;
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn half_widening() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc100), -2.5);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn dtype_roundtrip() {
        for v in 0..30 {
            if let Some(d) = DType::from_tf(v) {
                assert_eq!(d.to_tf(), v);
            }
        }
        assert_eq!(DType::from_tf(0), None);
        assert_eq!(DType::from_tf(101), None); // reference types are never stored
    }
}
