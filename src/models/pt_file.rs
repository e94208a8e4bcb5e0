//! Reads the tensors of a `torch.save`d state dict (PyTorch's zip format: `<name>/data.pkl` + one
//! `<name>/data/<key>` entry per storage, stored uncompressed) without Python.
//!
//! Why not tch: `Tensor::loadz_multi` goes through libtorch's `torch::jit::_load_parameters`,
//! whose unpickler does not know `collections.OrderedDict` and fails with "Expected
//! GenericDict but got None" on every `model.state_dict()` (an OrderedDict) — facenet-pytorch's
//! released weights included; it only reads plain dicts. This reader understands the pickle
//! subset `torch.save` writes (protocol 2, plus the protocol-4 framing opcodes): dicts and
//! OrderedDicts of tensors rebuilt by `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`
//! over persistent-id storages. Anything else in the file is ignored; a value that is not a
//! tensor is skipped. Little-endian storages only (every x86/ARM save).

use std::collections::HashMap;

use tch::{Kind, Tensor};

/// What can go wrong reading a `.pt` file; the caller adds the path.
#[derive(Debug, thiserror::Error)]
pub enum PtError {
    #[error("not a PyTorch zip archive: {0}")]
    Zip(String),
    #[error("unsupported pickle content: {0}")]
    Pickle(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// The named tensors of a state dict, in the file's order.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, PtError> {
    let entries = zip_entries(bytes)?;
    let (pkl_name, pkl) = entries
        .iter()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .ok_or_else(|| PtError::Zip("no data.pkl entry".into()))?;
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    let root = Unpickler::new(pkl).run()?;
    let Value::Dict(items) = root else {
        return Err(PtError::Pickle("the top-level object is not a dict".into()));
    };
    let storages: HashMap<&str, &[u8]> = entries
        .iter()
        .filter_map(|(n, d)| {
            n.strip_prefix(prefix)?
                .strip_prefix("data/")
                .map(|k| (k, *d))
        })
        .collect();
    let mut out = Vec::new();
    for (key, value) in items {
        let (
            Value::Str(name),
            Value::Tensor {
                key,
                kind,
                offset,
                size,
                stride,
            },
        ) = (key, value)
        else {
            continue;
        };
        let data = storages
            .get(key.as_str())
            .ok_or_else(|| PtError::Zip(format!("no storage `{key}` for tensor `{name}`")))?;
        let numel = (data.len() / kind.elt_size_in_bytes()) as i64;
        let storage = Tensor::f_from_data_size(data, &[numel], kind)?;
        let t = storage
            .f_as_strided(size.as_slice(), stride.as_slice(), offset)?
            .f_contiguous()?;
        out.push((name, t));
    }
    Ok(out)
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, PtError> {
    b.get(i..i + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| PtError::Zip("truncated".into()))
}

fn u32_at(b: &[u8], i: usize) -> Result<u32, PtError> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| PtError::Zip("truncated".into()))
}

fn u64_at(b: &[u8], i: usize) -> Result<u64, PtError> {
    b.get(i..i + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| PtError::Zip("truncated".into()))
}

/// (name, data) of every stored (uncompressed) entry, from the central directory.
fn zip_entries(b: &[u8]) -> Result<Vec<(String, &[u8])>, PtError> {
    const EOCD: u32 = 0x0605_4b50;
    let search_from = b.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..b.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(b, i).ok() == Some(EOCD))
        .ok_or_else(|| PtError::Zip("no end-of-central-directory record".into()))?;
    let mut count = u16_at(b, eocd + 10)? as u64;
    let mut offset = u32_at(b, eocd + 16)? as u64;
    // ZIP64: the locator sits just before the EOCD and points at the ZIP64 EOCD record.
    if (count == 0xFFFF || offset == 0xFFFF_FFFF)
        && eocd >= 20
        && u32_at(b, eocd - 20)? == 0x0706_4b50
    {
        let z = u64_at(b, eocd - 20 + 8)? as usize;
        count = u64_at(b, z + 32)?;
        offset = u64_at(b, z + 48)?;
    }
    let mut entries = Vec::new();
    let mut p = offset as usize;
    for _ in 0..count {
        if u32_at(b, p)? != 0x0201_4b50 {
            return Err(PtError::Zip("bad central directory entry".into()));
        }
        let method = u16_at(b, p + 10)?;
        let mut size = u32_at(b, p + 20)? as u64;
        let name_len = u16_at(b, p + 28)? as usize;
        let extra_len = u16_at(b, p + 30)? as usize;
        let comment_len = u16_at(b, p + 32)? as usize;
        let mut local = u32_at(b, p + 42)? as u64;
        let name = String::from_utf8_lossy(
            b.get(p + 46..p + 46 + name_len)
                .ok_or_else(|| PtError::Zip("truncated".into()))?,
        )
        .into_owned();
        // ZIP64 extended information: present values replace the 0xFFFFFFFF fields, in order.
        let mut e = p + 46 + name_len;
        let extra_end = e + extra_len;
        while e + 4 <= extra_end {
            let (id, len) = (u16_at(b, e)?, u16_at(b, e + 2)? as usize);
            if id == 1 {
                let mut f = e + 4;
                if u32_at(b, p + 24)? == 0xFFFF_FFFF {
                    f += 8; // uncompressed size
                }
                if size == 0xFFFF_FFFF {
                    size = u64_at(b, f)?;
                    f += 8;
                }
                if local == 0xFFFF_FFFF {
                    local = u64_at(b, f)?;
                }
            }
            e += 4 + len;
        }
        if method != 0 {
            return Err(PtError::Zip(format!(
                "entry `{name}` is compressed (method {method})"
            )));
        }
        let l = local as usize;
        if u32_at(b, l)? != 0x0403_4b50 {
            return Err(PtError::Zip(format!("bad local header for `{name}`")));
        }
        let start = l + 30 + u16_at(b, l + 26)? as usize + u16_at(b, l + 28)? as usize;
        let data = b
            .get(start..start + size as usize)
            .ok_or_else(|| PtError::Zip(format!("entry `{name}` is truncated")))?;
        entries.push((name, data));
        p = extra_end + comment_len;
    }
    Ok(entries)
}

#[derive(Debug, Clone)]
enum Value {
    Mark,
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String),
    Storage {
        key: String,
        kind: Kind,
    },
    Tensor {
        key: String,
        kind: Kind,
        offset: i64,
        size: Vec<i64>,
        stride: Vec<i64>,
    },
    Other,
}

struct Unpickler<'a> {
    b: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(b: &'a [u8]) -> Self {
        Unpickler {
            b,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PtError> {
        let s = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or_else(|| PtError::Pickle("truncated pickle".into()))?;
        self.pos += n;
        Ok(s)
    }

    fn line(&mut self) -> Result<String, PtError> {
        let rest = &self.b[self.pos.min(self.b.len())..];
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| PtError::Pickle("unterminated line".into()))?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn pop(&mut self) -> Result<Value, PtError> {
        self.stack
            .pop()
            .ok_or_else(|| PtError::Pickle("stack underflow".into()))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PtError> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| PtError::Pickle("no mark".into()))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value, PtError> {
        self.stack
            .last_mut()
            .ok_or_else(|| PtError::Pickle("stack underflow".into()))
    }

    fn run(mut self) -> Result<Value, PtError> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Other), // NEWTRUE / NEWFALSE
                b'K' => {
                    let v = self.take(1)?[0] as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let s = self.take(2)?;
                    self.stack
                        .push(Value::Int(u16::from_le_bytes([s[0], s[1]]) as i64));
                }
                b'J' => {
                    let s = self.take(4)?;
                    self.stack.push(Value::Int(
                        i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64
                    ));
                }
                0x8a => {
                    let n = self.take(1)?[0] as usize;
                    let s = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &byte) in s.iter().enumerate().take(8) {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && s[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    self.take(8)?; // BINFLOAT: no float matters here
                    self.stack.push(Value::Other);
                }
                b'X' | b'T' | b'U' | 0x8c | b'B' | b'C' => {
                    let n = match op {
                        b'U' | 0x8c | b'C' => self.take(1)?[0] as usize,
                        _ => {
                            let s = self.take(4)?;
                            u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize
                        }
                    };
                    let s = self.take(n)?;
                    self.stack
                        .push(Value::Str(String::from_utf8_lossy(s).into_owned()));
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let items = self.stack.split_off(
                        self.stack
                            .len()
                            .checked_sub(n)
                            .ok_or_else(|| PtError::Pickle("stack underflow".into()))?,
                    );
                    self.stack.push(Value::Tuple(items));
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => self.take(1)?[0] as u32,
                        b'r' => {
                            let s = self.take(4)?;
                            u32::from_le_bytes([s[0], s[1], s[2], s[3]])
                        }
                        _ => self.memo.len() as u32,
                    };
                    let v = self.top()?.clone();
                    self.memo.insert(key, v);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        self.take(1)?[0] as u32
                    } else {
                        let s = self.take(4)?;
                        u32::from_le_bytes([s[0], s[1], s[2], s[3]])
                    };
                    let v = self
                        .memo
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| PtError::Pickle(format!("memo {key} missing")))?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(format!("{module}.{name}")));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(m), Value::Str(n)) = (module, name) else {
                        return Err(PtError::Pickle("STACK_GLOBAL without strings".into()));
                    };
                    self.stack.push(Value::Global(format!("{m}.{n}")));
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(storage(pid)?);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?);
                }
                0x81 => {
                    // NEWOBJ: cls, args
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(Value::Other);
                }
                b'b' => {
                    self.pop()?; // BUILD: state (OrderedDict `_metadata`, …) is not needed
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Value::Dict(d) = self.top()? {
                        d.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if let Value::Dict(d) = self.top()? {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top()? {
                        l.push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top()? {
                        l.extend(items);
                    }
                }
                _ => {
                    return Err(PtError::Pickle(format!(
                        "opcode 0x{op:02x} at byte {}",
                        self.pos - 1
                    )))
                }
            }
        }
    }
}

/// `('storage', torch.FloatStorage, '0', 'cpu', numel)` → a storage reference.
fn storage(pid: Value) -> Result<Value, PtError> {
    let Value::Tuple(items) = pid else {
        return Err(PtError::Pickle("persistent id is not a tuple".into()));
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(ty), Value::Str(key), ..] if tag == "storage" => {
            let kind = match ty.rsplit('.').next().unwrap_or("") {
                "FloatStorage" => Kind::Float,
                "DoubleStorage" => Kind::Double,
                "HalfStorage" => Kind::Half,
                "BFloat16Storage" => Kind::BFloat16,
                "LongStorage" => Kind::Int64,
                "IntStorage" => Kind::Int,
                "ShortStorage" => Kind::Int16,
                "CharStorage" => Kind::Int8,
                "ByteStorage" => Kind::Uint8,
                "BoolStorage" => Kind::Bool,
                other => return Err(PtError::Pickle(format!("storage type `{other}`"))),
            };
            Ok(Value::Storage {
                key: key.clone(),
                kind,
            })
        }
        _ => Err(PtError::Pickle("persistent id is not a storage".into())),
    }
}

fn ints(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| {
                if let Value::Int(n) = i {
                    Some(*n)
                } else {
                    None
                }
            })
            .collect(),
        _ => None,
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, PtError> {
    let Value::Global(name) = callable else {
        return Ok(Value::Other);
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Ok(Value::Other),
    };
    Ok(match name.as_str() {
        "collections.OrderedDict" | "builtins.dict" => Value::Dict(Vec::new()),
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => match args.as_slice()
        {
            [Value::Storage { key, kind }, Value::Int(offset), size, stride, ..] => {
                let (Some(size), Some(stride)) = (ints(size), ints(stride)) else {
                    return Err(PtError::Pickle(
                        "tensor size/stride are not integers".into(),
                    ));
                };
                Value::Tensor {
                    key: key.clone(),
                    kind: *kind,
                    offset: *offset,
                    size,
                    stride,
                }
            }
            _ => {
                return Err(PtError::Pickle(
                    "unexpected _rebuild_tensor arguments".into(),
                ))
            }
        },
        "torch._utils._rebuild_parameter" => args.into_iter().next().unwrap_or(Value::Other),
        _ => Value::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_ordered_dict_state_dict_that_tch_cannot() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mini_facenet_pytorch.pt");
        let bytes = std::fs::read(path).unwrap();
        let tensors = read_state_dict(&bytes).unwrap();
        assert_eq!(tensors.len(), 226);
        assert_eq!(tensors[0].0, "conv2d_1a.conv.weight");
        assert_eq!(tensors[0].1.size(), [4, 3, 3, 3]);
        let (name, t) = &tensors[5];
        assert_eq!(
            (name.as_str(), t.kind()),
            ("conv2d_1a.bn.num_batches_tracked", Kind::Int64)
        );
        // conv2d_2a's gamma is linspace(0.5, 2.0, 4), written by the generator.
        let gamma = &tensors
            .iter()
            .find(|(n, _)| n == "conv2d_2a.bn.weight")
            .unwrap()
            .1;
        assert_eq!(Vec::<f32>::try_from(gamma).unwrap(), [0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            read_state_dict(b"not a zip"),
            Err(PtError::Zip(_))
        ));
        assert!(matches!(
            Unpickler::new(&[0x80, 2, 0xff]).run(),
            Err(PtError::Pickle(_))
        ));
    }
}
