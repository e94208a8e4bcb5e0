//! Hand-decoding of the two tiny protobufs a checkpoint index holds: `BundleHeaderProto` (the
//! value of key "") and `BundleEntryProto` (the value of every tensor key), from TF
//! `core/protobuf/tensor_bundle.proto`, `framework/tensor_shape.proto` and `versions.proto`.
//! Only the wire format is implemented (varint, fixed32/64, length-delimited); unknown fields are
//! skipped as protobuf requires, groups are rejected. Proto3 defaults apply to absent fields.

use crate::varint::read_varint64;

/// One field read off the wire.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates `(field number, value)` over a serialized message.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let item = self.read_one();
        if item.is_err() {
            self.buf = &[];
        }
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn read_one(&mut self) -> Result<(u64, Value<'a>), String> {
        let (tag, rest) = read_varint64(self.buf).ok_or("truncated field tag")?;
        let field = tag >> 3;
        if field == 0 {
            return Err("field number 0".into());
        }
        let (value, rest) = match tag & 7 {
            0 => {
                let (v, rest) = read_varint64(rest).ok_or("truncated varint")?;
                (Value::Varint(v), rest)
            }
            1 => {
                if rest.len() < 8 {
                    return Err("truncated fixed64".into());
                }
                (Value::Fixed64, &rest[8..])
            }
            2 => {
                let (len, rest) = read_varint64(rest).ok_or("truncated length")?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= rest.len())
                    .ok_or("length-delimited field runs past the end")?;
                (Value::Bytes(&rest[..len]), &rest[len..])
            }
            5 => {
                if rest.len() < 4 {
                    return Err("truncated fixed32".into());
                }
                let mut b = [0u8; 4];
                b.copy_from_slice(&rest[..4]);
                (Value::Fixed32(u32::from_le_bytes(b)), &rest[4..])
            }
            other => return Err(format!("unsupported wire type {other} (field {field})")),
        };
        self.buf = rest;
        Ok((field, value))
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

fn wrong_type(message: &str, field: u64) -> String {
    format!("{message}: field {field} has the wrong wire type")
}

/// `BundleHeaderProto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub num_shards: i32,
    /// 0 = little, 1 = big.
    pub endianness: u64,
    pub producer: i32,
    pub min_consumer: i32,
    pub bad_consumers: Vec<i32>,
}

pub(crate) fn decode_header(buf: &[u8]) -> Result<Header, String> {
    let mut h = Header {
        num_shards: 0,
        endianness: 0,
        producer: 0,
        min_consumer: 0,
        bad_consumers: Vec::new(),
    };
    for f in fields(buf) {
        match f? {
            (1, Value::Varint(v)) => h.num_shards = v as i32,
            (2, Value::Varint(v)) => h.endianness = v,
            (3, Value::Bytes(b)) => decode_version(b, &mut h)?,
            (n @ 1..=3, _) => return Err(wrong_type("BundleHeaderProto", n)),
            _ => {}
        }
    }
    Ok(h)
}

fn decode_version(buf: &[u8], h: &mut Header) -> Result<(), String> {
    for f in fields(buf) {
        match f? {
            (1, Value::Varint(v)) => h.producer = v as i32,
            (2, Value::Varint(v)) => h.min_consumer = v as i32,
            (3, Value::Varint(v)) => h.bad_consumers.push(v as i32),
            (3, Value::Bytes(mut packed)) => {
                while !packed.is_empty() {
                    let (v, rest) =
                        read_varint64(packed).ok_or("VersionDef: bad packed bad_consumers")?;
                    h.bad_consumers.push(v as i32);
                    packed = rest;
                }
            }
            (n @ 1..=3, _) => return Err(wrong_type("VersionDef", n)),
            _ => {}
        }
    }
    Ok(())
}

/// `BundleEntryProto`, with the shape flattened into dims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub dtype: i32,
    pub dims: Vec<i64>,
    pub unknown_rank: bool,
    pub shard_id: i32,
    pub offset: i64,
    pub size: i64,
    pub crc32c: u32,
    pub num_slices: usize,
}

pub(crate) fn decode_entry(buf: &[u8]) -> Result<Entry, String> {
    let mut e = Entry {
        dtype: 0,
        dims: Vec::new(),
        unknown_rank: false,
        shard_id: 0,
        offset: 0,
        size: 0,
        crc32c: 0,
        num_slices: 0,
    };
    for f in fields(buf) {
        match f? {
            (1, Value::Varint(v)) => e.dtype = v as i32,
            (2, Value::Bytes(b)) => decode_shape(b, &mut e)?,
            (3, Value::Varint(v)) => e.shard_id = v as i32,
            (4, Value::Varint(v)) => e.offset = v as i64,
            (5, Value::Varint(v)) => e.size = v as i64,
            (6, Value::Fixed32(v)) => e.crc32c = v,
            (7, Value::Bytes(_)) => e.num_slices += 1,
            (n @ 1..=7, _) => return Err(wrong_type("BundleEntryProto", n)),
            _ => {}
        }
    }
    Ok(e)
}

fn decode_shape(buf: &[u8], e: &mut Entry) -> Result<(), String> {
    for f in fields(buf) {
        match f? {
            (2, Value::Bytes(dim)) => {
                let mut size = 0i64;
                for g in fields(dim) {
                    match g? {
                        (1, Value::Varint(v)) => size = v as i64,
                        (2, Value::Bytes(_)) => {} // dim name
                        (n @ 1..=2, _) => return Err(wrong_type("TensorShapeProto.Dim", n)),
                        _ => {}
                    }
                }
                e.dims.push(size);
            }
            (3, Value::Varint(v)) => e.unknown_rank = v != 0,
            (n @ 2..=3, _) => return Err(wrong_type("TensorShapeProto", n)),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn typical_header_bytes() {
        let h = decode_header(&[0x08, 0x01, 0x1a, 0x02, 0x08, 0x01]).unwrap();
        assert_eq!(h.num_shards, 1);
        assert_eq!(h.endianness, 0);
        assert_eq!(h.producer, 1);
        assert_eq!(h.min_consumer, 0);
    }

    #[test]
    fn entry_with_shape_offset_size_crc() {
        // dtype FLOAT, shape [4], offset 0x10, size 0x10, crc 0x2b277035.
        let bytes = [
            0x08, 0x01, 0x12, 0x04, 0x12, 0x02, 0x08, 0x04, 0x20, 0x10, 0x28, 0x10, 0x35, 0x35,
            0x70, 0x27, 0x2b,
        ];
        let e = decode_entry(&bytes).unwrap();
        assert_eq!(e.dtype, 1);
        assert_eq!(e.dims, vec![4]);
        assert_eq!((e.offset, e.size, e.crc32c), (16, 16, 0x2b27_7035));
    }

    #[test]
    fn malformed_protos_are_errors() {
        assert!(decode_entry(&[0x12, 0x05, 0x12]).is_err()); // length past end
        assert!(decode_entry(&[0x0b]).is_err()); // group wire type
        assert!(decode_entry(&[0x35, 0x00]).is_err()); // truncated fixed32
        assert!(decode_entry(&[0x0a, 0x00]).is_err()); // dtype as bytes
        assert!(decode_header(&[0x00, 0x00]).is_err()); // field 0
    }
}
