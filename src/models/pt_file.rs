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
//!
//! A `.pt` file is untrusted input (downloaded weights), so reading one stays bounded in time
//! and memory by the file's size: pickle objects live in one arena and the memo shares them
//! by index (a memo that doubles a value costs one slot, not a copy), the object count and
//! nesting depth are capped, every offset is checked arithmetic, and a tensor must fit inside
//! its storage and may not hold more elements than it (a zero stride cannot turn four bytes
//! into gigabytes).

use std::collections::HashMap;

use tch::{Kind, Tensor};

/// Most pickle objects one file may create; facenet-pytorch's full net needs about 5,000.
const MAX_NODES: usize = 1 << 22;
/// Deepest nesting of pickle containers; a state dict nests 4 deep.
const MAX_DEPTH: u32 = 100;
/// The tensors read may share storages, but not hold more than this many times the file's
/// bytes in total.
const MAX_SHARING: usize = 4;

/// What can go wrong reading a `.pt` file; the caller adds the path.
#[derive(Debug, thiserror::Error)]
pub enum PtError {
    #[error("not a PyTorch zip archive: {0}")]
    Zip(String),
    #[error("unsupported pickle content: {0}")]
    Pickle(String),
    #[error("tensor `{name}` does not fit its storage: {why}")]
    Tensor { name: String, why: String },
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
    let pickle = Unpickler::new(pkl).run()?;
    let Node::Dict(items) = pickle.node(pickle.root) else {
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
    let budget = bytes.len().saturating_mul(MAX_SHARING);
    let mut total = 0usize;
    let mut out = Vec::new();
    for &(key, value) in items {
        let (Node::Str(name), Node::Tensor(view)) = (pickle.node(key), pickle.node(value)) else {
            continue;
        };
        let data = storages.get(view.key.as_str()).ok_or_else(|| {
            PtError::Zip(format!("no storage `{}` for tensor `{name}`", view.key))
        })?;
        let (slice, bytes_out) = view.slice_of(data).map_err(|why| PtError::Tensor {
            name: name.clone(),
            why,
        })?;
        total = total.saturating_add(bytes_out);
        if total > budget {
            return Err(PtError::Tensor {
                name: name.clone(),
                why: format!(
                    "the tensors so far hold {total} bytes, more than {MAX_SHARING}× the file's {}",
                    bytes.len()
                ),
            });
        }
        let elt = view.kind.elt_size_in_bytes();
        let storage = Tensor::f_from_data_size(slice, &[(slice.len() / elt) as i64], view.kind)?;
        let t = storage
            .f_as_strided(view.size.as_slice(), view.stride.as_slice(), 0)?
            .f_contiguous()?;
        out.push((name.clone(), t));
    }
    Ok(out)
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view into a storage.
#[derive(Debug, Clone)]
struct TensorView {
    key: String,
    kind: Kind,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

impl TensorView {
    /// The bytes of `storage` the view reads (from its offset to its last element) and the
    /// bytes it materialises, or why it does not fit: negative numbers, an extent past the
    /// storage's end, or more elements than the storage holds (zero or overlapping strides).
    fn slice_of<'d>(&self, storage: &'d [u8]) -> Result<(&'d [u8], usize), String> {
        let elt = self.kind.elt_size_in_bytes();
        let held = storage.len() / elt;
        let too_big = || format!("size {:?} overflows", self.size);
        if self.size.len() != self.stride.len() {
            return Err(format!(
                "size {:?} and stride {:?} differ in length",
                self.size, self.stride
            ));
        }
        let offset = usize::try_from(self.offset).map_err(|_| "negative offset".to_string())?;
        let mut numel = 1usize;
        let mut last = 0usize; // index of the last element, relative to the offset
        for (&n, &s) in self.size.iter().zip(&self.stride) {
            let n = usize::try_from(n).map_err(|_| format!("negative size {:?}", self.size))?;
            let s = usize::try_from(s).map_err(|_| format!("negative stride {:?}", self.stride))?;
            numel = numel.checked_mul(n).ok_or_else(too_big)?;
            if n > 0 {
                last = (n - 1)
                    .checked_mul(s)
                    .and_then(|d| last.checked_add(d))
                    .ok_or_else(too_big)?;
            }
        }
        if numel == 0 {
            return Ok((&storage[..0], 0));
        }
        let end = offset
            .checked_add(last)
            .and_then(|i| i.checked_add(1))
            .ok_or_else(too_big)?;
        if end > held {
            return Err(format!(
                "offset {offset}, size {:?} and stride {:?} reach element {end}, but the storage holds {held}",
                self.size, self.stride
            ));
        }
        if numel > held {
            return Err(format!(
                "size {:?} has {numel} elements, more than its storage's {held} (stride {:?})",
                self.size, self.stride
            ));
        }
        Ok((&storage[offset * elt..end * elt], numel * elt))
    }
}

fn truncated() -> PtError {
    PtError::Zip("truncated".into())
}

/// `len` bytes at `i`, or an error when they are not all inside `b` (no overflow on a huge
/// `i`).
fn bytes_at(b: &[u8], i: usize, len: usize) -> Result<&[u8], PtError> {
    i.checked_add(len)
        .and_then(|end| b.get(i..end))
        .ok_or_else(truncated)
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, PtError> {
    let s = bytes_at(b, i, 2)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], i: usize) -> Result<u32, PtError> {
    let s = bytes_at(b, i, 4)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], i: usize) -> Result<u64, PtError> {
    let s = bytes_at(b, i, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// `a + b` for offsets read from the file.
fn add(a: usize, b: usize) -> Result<usize, PtError> {
    a.checked_add(b).ok_or_else(truncated)
}

fn offset(v: u64) -> Result<usize, PtError> {
    usize::try_from(v).map_err(|_| truncated())
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
    let mut directory = u32_at(b, eocd + 16)? as u64;
    // ZIP64: the locator sits just before the EOCD and points at the ZIP64 EOCD record.
    if (count == 0xFFFF || directory == 0xFFFF_FFFF)
        && eocd >= 20
        && u32_at(b, eocd - 20)? == 0x0706_4b50
    {
        let z = offset(u64_at(b, eocd - 20 + 8)?)?;
        count = u64_at(b, add(z, 32)?)?;
        directory = u64_at(b, add(z, 48)?)?;
    }
    let mut entries = Vec::new();
    let mut p = offset(directory)?;
    // Each entry takes at least 46 bytes, so a bogus count ends at the file's end.
    for _ in 0..count {
        if u32_at(b, p)? != 0x0201_4b50 {
            return Err(PtError::Zip("bad central directory entry".into()));
        }
        let method = u16_at(b, add(p, 10)?)?;
        let mut size = u32_at(b, add(p, 20)?)? as u64;
        let name_len = u16_at(b, add(p, 28)?)? as usize;
        let extra_len = u16_at(b, add(p, 30)?)? as usize;
        let comment_len = u16_at(b, add(p, 32)?)? as usize;
        let mut local = u32_at(b, add(p, 42)?)? as u64;
        let name_start = add(p, 46)?;
        let name = String::from_utf8_lossy(bytes_at(b, name_start, name_len)?).into_owned();
        // ZIP64 extended information: present values replace the 0xFFFFFFFF fields, in order.
        let mut e = add(name_start, name_len)?;
        let extra_end = add(e, extra_len)?;
        while add(e, 4)? <= extra_end {
            let (id, len) = (u16_at(b, e)?, u16_at(b, e + 2)? as usize);
            if id == 1 {
                let mut f = e + 4;
                if u32_at(b, p + 24)? == 0xFFFF_FFFF {
                    f = add(f, 8)?; // uncompressed size
                }
                if size == 0xFFFF_FFFF {
                    size = u64_at(b, f)?;
                    f = add(f, 8)?;
                }
                if local == 0xFFFF_FFFF {
                    local = u64_at(b, f)?;
                }
            }
            e = add(e, 4 + len)?;
        }
        if method != 0 {
            return Err(PtError::Zip(format!(
                "entry `{name}` is compressed (method {method})"
            )));
        }
        let l = offset(local)?;
        if u32_at(b, l)? != 0x0403_4b50 {
            return Err(PtError::Zip(format!("bad local header for `{name}`")));
        }
        let header = 30 + u16_at(b, add(l, 26)?)? as usize + u16_at(b, add(l, 28)?)? as usize;
        let data = bytes_at(b, add(l, header)?, offset(size)?)
            .map_err(|_| PtError::Zip(format!("entry `{name}` is truncated")))?;
        entries.push((name, data));
        p = add(extra_end, comment_len)?;
    }
    Ok(entries)
}

/// An index into [`Pickle::nodes`]: objects are shared by index, never copied.
type Id = u32;

#[derive(Debug)]
enum Node {
    Mark,
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(String),
    Storage { key: String, kind: Kind },
    Tensor(TensorView),
    Other,
}

/// The unpickled objects: a flat arena (dropping it recurses into nothing) and the root.
struct Pickle {
    nodes: Vec<Node>,
    root: Id,
}

impl Pickle {
    fn node(&self, id: Id) -> &Node {
        &self.nodes[id as usize]
    }
}

struct Unpickler<'a> {
    b: &'a [u8],
    pos: usize,
    stack: Vec<Id>,
    memo: HashMap<u32, Id>,
    nodes: Vec<Node>,
    /// Nesting depth of each node (1 for a scalar).
    depth: Vec<u32>,
}

/// The one `Mark` node every MARK opcode pushes.
const MARK: Id = 0;

impl<'a> Unpickler<'a> {
    fn new(b: &'a [u8]) -> Self {
        Unpickler {
            b,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            nodes: vec![Node::Mark],
            depth: vec![1],
        }
    }

    /// Adds a node whose children are `children`, checking the caps.
    fn alloc(&mut self, node: Node, children: &[Id]) -> Result<Id, PtError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(PtError::Pickle(format!(
                "more than {MAX_NODES} objects (at byte {})",
                self.pos
            )));
        }
        let depth = 1 + children
            .iter()
            .map(|&c| self.depth[c as usize])
            .max()
            .unwrap_or(0);
        self.check_depth(depth)?;
        self.nodes.push(node);
        self.depth.push(depth);
        Ok((self.nodes.len() - 1) as Id)
    }

    fn check_depth(&self, depth: u32) -> Result<(), PtError> {
        if depth > MAX_DEPTH {
            return Err(PtError::Pickle(format!(
                "objects nested more than {MAX_DEPTH} deep (at byte {})",
                self.pos
            )));
        }
        Ok(())
    }

    fn push(&mut self, node: Node) -> Result<(), PtError> {
        let id = self.alloc(node, &[])?;
        self.stack.push(id);
        Ok(())
    }

    /// Records that `container` now holds `children` (a mutable list or dict grew).
    fn grew(&mut self, container: Id, children: &[Id]) -> Result<(), PtError> {
        let deepest = children
            .iter()
            .map(|&c| self.depth[c as usize])
            .max()
            .unwrap_or(0);
        let depth = self.depth[container as usize].max(deepest + 1);
        self.check_depth(depth)?;
        self.depth[container as usize] = depth;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PtError> {
        let s = self
            .pos
            .checked_add(n)
            .and_then(|end| self.b.get(self.pos..end))
            .ok_or_else(|| PtError::Pickle("truncated pickle".into()))?;
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, PtError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
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

    fn pop(&mut self) -> Result<Id, PtError> {
        self.stack
            .pop()
            .ok_or_else(|| PtError::Pickle("stack underflow".into()))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, PtError> {
        let mark = self
            .stack
            .iter()
            .rposition(|&v| v == MARK)
            .ok_or_else(|| PtError::Pickle("no mark".into()))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&self) -> Result<Id, PtError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| PtError::Pickle("stack underflow".into()))
    }

    fn str_of(&self, id: Id) -> Option<&str> {
        match &self.nodes[id as usize] {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn run(mut self) -> Result<Pickle, PtError> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Pickle {
                        nodes: self.nodes,
                        root,
                    });
                }
                b'(' => self.stack.push(MARK),
                b'N' => self.push(Node::None)?,
                0x88 | 0x89 => self.push(Node::Other)?, // NEWTRUE / NEWFALSE
                b'K' => {
                    let v = self.take(1)?[0] as i64;
                    self.push(Node::Int(v))?;
                }
                b'M' => {
                    let s = self.take(2)?;
                    self.push(Node::Int(u16::from_le_bytes([s[0], s[1]]) as i64))?;
                }
                b'J' => {
                    let s = self.take(4)?;
                    self.push(Node::Int(
                        i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64
                    ))?;
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
                    self.push(Node::Int(v))?;
                }
                b'G' => {
                    self.take(8)?; // BINFLOAT: no float matters here
                    self.push(Node::Other)?;
                }
                b'X' | b'T' | b'U' | 0x8c | b'B' | b'C' => {
                    let n = match op {
                        b'U' | 0x8c | b'C' => self.take(1)?[0] as usize,
                        _ => self.u32()? as usize,
                    };
                    let s = self.take(n)?;
                    self.push(Node::Str(String::from_utf8_lossy(s).into_owned()))?;
                }
                b')' => self.push(Node::Tuple(Vec::new()))?,
                b']' => self.push(Node::List(Vec::new()))?,
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    let id = self.alloc(Node::Tuple(Vec::new()), &items)?;
                    self.nodes[id as usize] = Node::Tuple(items);
                    self.stack.push(id);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let from = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or_else(|| PtError::Pickle("stack underflow".into()))?;
                    let items = self.stack.split_off(from);
                    let id = self.alloc(Node::Tuple(Vec::new()), &items)?;
                    self.nodes[id as usize] = Node::Tuple(items);
                    self.stack.push(id);
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => self.take(1)?[0] as u32,
                        b'r' => self.u32()?,
                        _ => self.memo.len() as u32,
                    };
                    let v = self.top()?;
                    self.memo.insert(key, v);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        self.take(1)?[0] as u32
                    } else {
                        self.u32()?
                    };
                    let v = *self
                        .memo
                        .get(&key)
                        .ok_or_else(|| PtError::Pickle(format!("memo {key} missing")))?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Node::Global(format!("{module}.{name}")))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (self.str_of(module), self.str_of(name)) else {
                        return Err(PtError::Pickle("STACK_GLOBAL without strings".into()));
                    };
                    let global = format!("{m}.{n}");
                    self.push(Node::Global(global))?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let node = storage(&self.nodes, pid)?;
                    self.push(node)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    match reduce(&self.nodes, callable, args)? {
                        Reduced::New(node) => self.push(node)?,
                        Reduced::Same(id) => self.stack.push(id),
                    }
                }
                0x81 => {
                    // NEWOBJ: cls, args
                    self.pop()?;
                    self.pop()?;
                    self.push(Node::Other)?;
                }
                b'b' => {
                    self.pop()?; // BUILD: state (OrderedDict `_metadata`, …) is not needed
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    if let Node::Dict(items) = &mut self.nodes[d as usize] {
                        items.push((k, v));
                        self.grew(d, &[k, v])?;
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    if let Node::Dict(dict) = &mut self.nodes[d as usize] {
                        dict.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                        self.grew(d, &items)?;
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    if let Node::List(list) = &mut self.nodes[l as usize] {
                        list.push(v);
                        self.grew(l, &[v])?;
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    if let Node::List(list) = &mut self.nodes[l as usize] {
                        list.extend_from_slice(&items);
                        self.grew(l, &items)?;
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
fn storage(nodes: &[Node], pid: Id) -> Result<Node, PtError> {
    let Node::Tuple(items) = &nodes[pid as usize] else {
        return Err(PtError::Pickle("persistent id is not a tuple".into()));
    };
    let node = |i: usize| items.get(i).map(|&id| &nodes[id as usize]);
    match (node(0), node(1), node(2)) {
        (Some(Node::Str(tag)), Some(Node::Global(ty)), Some(Node::Str(key)))
            if tag == "storage" =>
        {
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
            Ok(Node::Storage {
                key: key.clone(),
                kind,
            })
        }
        _ => Err(PtError::Pickle("persistent id is not a storage".into())),
    }
}

fn ints(nodes: &[Node], id: Id) -> Option<Vec<i64>> {
    match &nodes[id as usize] {
        Node::Tuple(items) | Node::List(items) => items
            .iter()
            .map(|&i| match nodes[i as usize] {
                Node::Int(n) => Some(n),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// What a REDUCE leaves on the stack: a new object, or one of its arguments
/// (`_rebuild_parameter` returns its tensor).
enum Reduced {
    New(Node),
    Same(Id),
}

fn reduce(nodes: &[Node], callable: Id, args: Id) -> Result<Reduced, PtError> {
    let Node::Global(name) = &nodes[callable as usize] else {
        return Ok(Reduced::New(Node::Other));
    };
    let Node::Tuple(args) = &nodes[args as usize] else {
        return Ok(Reduced::New(Node::Other));
    };
    Ok(Reduced::New(match name.as_str() {
        "collections.OrderedDict" | "builtins.dict" => Node::Dict(Vec::new()),
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
            let arg = |i: usize| args.get(i).map(|&id| (id, &nodes[id as usize]));
            match (arg(0), arg(1), arg(2), arg(3)) {
                (
                    Some((_, Node::Storage { key, kind })),
                    Some((_, Node::Int(offset))),
                    Some((size, _)),
                    Some((stride, _)),
                ) => {
                    let (Some(size), Some(stride)) = (ints(nodes, size), ints(nodes, stride))
                    else {
                        return Err(PtError::Pickle(
                            "tensor size/stride are not integers".into(),
                        ));
                    };
                    Node::Tensor(TensorView {
                        key: key.clone(),
                        kind: *kind,
                        offset: *offset,
                        size,
                        stride,
                    })
                }
                _ => {
                    return Err(PtError::Pickle(
                        "unexpected _rebuild_tensor arguments".into(),
                    ))
                }
            }
        }
        "torch._utils._rebuild_parameter" => match args.first() {
            Some(&tensor) => return Ok(Reduced::Same(tensor)),
            None => Node::Other,
        },
        _ => Node::Other,
    }))
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

    // Hostile files, generated here: a stored zip as torch.save writes, and pickles by opcode.

    /// A zip of stored (uncompressed) entries, CRCs left zero (the reader does not check them).
    fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data) in entries {
            let local = out.len() as u32;
            let (size, name_len) = (data.len() as u32, name.len() as u16);
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method 0, time, date
            out.extend([0; 4]); // crc
            out.extend(size.to_le_bytes());
            out.extend(size.to_le_bytes());
            out.extend(name_len.to_le_bytes());
            out.extend([0, 0]); // extra
            out.extend(name.as_bytes());
            out.extend(*data);
            central.extend(0x0201_4b50u32.to_le_bytes());
            central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // versions … date
            central.extend([0; 4]); // crc
            central.extend(size.to_le_bytes());
            central.extend(size.to_le_bytes());
            central.extend(name_len.to_le_bytes());
            central.extend([0; 8]); // extra, comment, disk, internal attributes
            central.extend([0; 4]); // external attributes
            central.extend(local.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let (directory, count) = (out.len() as u32, entries.len() as u16);
        let directory_size = central.len() as u32;
        out.extend(central);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0; 4]);
        out.extend(count.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend(directory_size.to_le_bytes());
        out.extend(directory.to_le_bytes());
        out.extend([0, 0]);
        out
    }

    fn unicode(s: &str) -> Vec<u8> {
        let mut out = vec![b'X'];
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
        out
    }

    fn int_tuple(values: &[i32]) -> Vec<u8> {
        let mut out = vec![b'('];
        for v in values {
            out.push(b'J');
            out.extend(v.to_le_bytes());
        }
        out.push(b't');
        out
    }

    /// `{"w": _rebuild_tensor_v2(FloatStorage "0", 0, size, stride, False, OrderedDict())}`.
    fn tensor_pickle(size: &[i32], stride: &[i32]) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'('];
        p.extend(unicode("w"));
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        p.extend(unicode("storage"));
        p.extend(b"ctorch\nFloatStorage\n");
        p.extend(unicode("0"));
        p.extend(unicode("cpu"));
        p.extend([b'K', 1, b't', b'Q', b'K', 0]);
        p.extend(int_tuple(size));
        p.extend(int_tuple(stride));
        p.push(0x89);
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend(b"tRu.");
        p
    }

    fn tensor_file(size: &[i32], stride: &[i32], storage: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = storage.iter().flat_map(|v| v.to_le_bytes()).collect();
        stored_zip(&[
            ("archive/data.pkl", &tensor_pickle(size, stride)),
            ("archive/data/0", &data),
        ])
    }

    #[test]
    fn a_view_inside_its_storage_reads_with_its_strides() {
        // The generators make what the reader accepts: a transposed 2×2 view.
        let file = tensor_file(&[2, 2], &[1, 2], &[1.0, 2.0, 3.0, 4.0]);
        let tensors = read_state_dict(&file).unwrap();
        assert_eq!(tensors[0].0, "w");
        let values = Vec::<f32>::try_from(tensors[0].1.flatten(0, -1)).unwrap();
        assert_eq!(values, [1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn a_zero_stride_cannot_turn_four_bytes_into_gigabytes() {
        // 60000 × 60000 floats is 14.4 GB, all read from one stored float.
        let file = tensor_file(&[60_000, 60_000], &[0, 0], &[1.0]);
        assert!(file.len() < 600, "{} bytes", file.len());
        let err = read_state_dict(&file).unwrap_err();
        assert!(
            matches!(&err, PtError::Tensor { name, .. } if name == "w"),
            "{err}"
        );
        assert!(err.to_string().contains("more than its storage"), "{err}");
    }

    #[test]
    fn a_view_past_its_storage_or_with_negative_numbers_is_refused() {
        for (size, stride) in [(&[4][..], &[1][..]), (&[2], &[-1]), (&[-2], &[1])] {
            let err = read_state_dict(&tensor_file(size, stride, &[1.0, 2.0])).unwrap_err();
            assert!(
                matches!(err, PtError::Tensor { .. }),
                "{size:?} {stride:?}: {err}"
            );
        }
        let err = read_state_dict(&tensor_file(&[4], &[1], &[1.0, 2.0])).unwrap_err();
        assert!(err.to_string().contains("storage holds 2"), "{err}");
    }

    #[test]
    fn a_memo_that_doubles_is_shared_not_copied() {
        // x = []; 64 times: x = (x, x). Copying memo values would need 2^64 objects.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..64 {
            p.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
        }
        p.push(b'.');
        assert!(p.len() < 600);
        let pickle = Unpickler::new(&p).run().map_err(|e| e.to_string()).unwrap();
        assert!(pickle.nodes.len() < 100, "{} objects", pickle.nodes.len());
        let file = stored_zip(&[("archive/data.pkl", &p)]);
        let err = read_state_dict(&file).unwrap_err();
        assert!(err.to_string().contains("not a dict"), "{err}");
    }

    /// The pickle `p` is refused with an error containing `expected`.
    fn assert_refused(p: &[u8], expected: &str) {
        let err = Unpickler::new(p).run().err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(expected)),
            "{err:?}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // ((((…)))) five million deep, one byte per level.
        let mut p = vec![0x80, 2, b')'];
        p.resize(p.len() + 5_000_000, 0x85);
        p.push(b'.');
        assert_refused(&p, "nested more than");
        // Lists nested through appends are capped the same way.
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b']', 1000));
        p.extend(std::iter::repeat_n(b'a', 999));
        p.push(b'.');
        assert_refused(&p, "nested more than");
    }

    #[test]
    fn the_object_count_is_capped() {
        let mut p = vec![0x80, 2];
        p.resize(p.len() + MAX_NODES + 1, b'N');
        p.push(b'.');
        assert_refused(&p, "objects");
    }

    #[test]
    fn zip64_offsets_near_the_end_of_memory_are_an_error_not_a_panic() {
        // A ZIP64 end record at 0, its locator and the classic end record pointing at it.
        let zip64 = |record_at: u64, directory_at: u64| {
            let mut b = vec![0u8; 56];
            b[..4].copy_from_slice(&0x0606_4b50u32.to_le_bytes());
            b[32..40].copy_from_slice(&1u64.to_le_bytes()); // entries
            b[48..56].copy_from_slice(&directory_at.to_le_bytes());
            b.extend(0x0706_4b50u32.to_le_bytes());
            b.extend([0; 4]);
            b.extend(record_at.to_le_bytes());
            b.extend(1u32.to_le_bytes());
            b.extend(0x0605_4b50u32.to_le_bytes());
            b.extend([0; 6]);
            b.extend(0xFFFFu16.to_le_bytes());
            b.extend([0; 4]);
            b.extend(0xFFFF_FFFFu32.to_le_bytes());
            b.extend([0, 0]);
            b
        };
        for (record_at, directory_at) in [(0, u64::MAX - 1), (u64::MAX - 8, 0), (0, u64::MAX)] {
            let err = read_state_dict(&zip64(record_at, directory_at)).unwrap_err();
            assert!(matches!(err, PtError::Zip(_)), "{err}");
        }
    }
}
