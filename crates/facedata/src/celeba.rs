//! The CelebA aligned layout (formats.md §6.1): `img_align_celeba/*.jpg` plus
//! `list_attr_celeba.txt`, and optionally `list_eval_partition.txt` and `identity_CelebA.txt`.
//!
//! Parsing is strict: a wrong header count, a row with the wrong number of values, a value other
//! than ±1, duplicate names, rows without an image and images without a row are errors naming the
//! file and line. Whitespace runs, CRLF line ends and a UTF-8 BOM are accepted. Where skipping is a
//! reasonable policy (rows without image, images without row) [`OpenOptions`] can turn the error
//! into a counted warning. Rows come out sorted by file name, which is the image order everywhere.
//!
//! The writers used by `synth-faces` sit here too, so reading and writing share one definition of
//! the format. Decoding the images is left to `batches.rs` and `align_check.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The 40 CelebA attribute names in file order (formats.md §6.1).
pub const CELEBA_ATTRIBUTES: [&str; 40] = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
];

/// Index of `Smiling` in [`CELEBA_ATTRIBUTES`] (the attribute `modify_attribute.py` sweeps).
pub const SMILING: usize = 31;

/// Index of an attribute name in [`CELEBA_ATTRIBUTES`].
pub fn attribute_index(name: &str) -> Option<usize> {
    CELEBA_ATTRIBUTES.iter().position(|a| *a == name)
}

/// File names inside a CelebA directory.
pub const IMAGE_DIR: &str = "img_align_celeba";
pub const ATTR_FILE: &str = "list_attr_celeba.txt";
pub const PARTITION_FILE: &str = "list_eval_partition.txt";
pub const IDENTITY_FILE: &str = "identity_CelebA.txt";

/// A parsed attribute file with any number of attributes (the low-level reader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeTable {
    /// Attribute names from line 2.
    pub fields: Vec<String>,
    /// Rows in file order.
    pub rows: Vec<AttributeRow>,
}

/// One row of an attribute file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeRow {
    pub file_name: String,
    /// One value per field, each −1 or 1.
    pub values: Vec<i8>,
    /// 1-based line number in the file, for later error messages.
    pub line: usize,
}

/// Lines of a text file with the BOM removed, CRLF accepted, blank lines dropped; each with its
/// 1-based line number.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        Error::parse(path, line, "expected UTF-8 text")
    })
}

/// Reads and parses an attribute file (`list_attr_celeba.txt` format, any number of fields).
pub fn read_attribute_file(path: &Path) -> Result<AttributeTable> {
    parse_attributes(path, &read_text(path)?)
}

/// Bad lines of one text file, gathered in one pass so the user fixes them all at once.
struct LineProblems<'a> {
    path: &'a Path,
    problems: Vec<(usize, String)>,
    /// Bad lines beyond [`LineProblems::KEPT`], counted but not kept (bounded memory).
    more: usize,
}

impl<'a> LineProblems<'a> {
    const KEPT: usize = 1000;

    fn new(path: &'a Path) -> Self {
        LineProblems {
            path,
            problems: Vec::new(),
            more: 0,
        }
    }

    fn push(&mut self, line: usize, message: impl Into<String>) {
        if self.problems.len() < Self::KEPT {
            self.problems.push((line, message.into()));
        } else {
            self.more += 1;
        }
    }

    /// A problem of the header, kept whatever the count (it explains the others).
    fn push_first(&mut self, line: usize, message: impl Into<String>) {
        self.problems.insert(0, (line, message.into()));
    }

    /// `Ok(value)` when no line was bad; one bad line is an [`Error::Parse`] as before, several
    /// are an [`Error::Lines`] listing each.
    fn finish<T>(mut self, value: T) -> Result<T> {
        match self.problems.len() + self.more {
            0 => Ok(value),
            1 => {
                let (line, message) = self.problems.remove(0);
                Err(Error::parse(self.path, line, message))
            }
            _ => {
                self.problems.sort_by_key(|(line, _)| *line);
                Err(Error::Lines {
                    path: self.path.to_owned(),
                    problems: self.problems,
                    more: self.more,
                })
            }
        }
    }
}

/// Parses attribute-file text; `path` is only used in error messages. Every bad line is
/// reported, not only the first (see issue 15).
pub fn parse_attributes(path: &Path, text: &str) -> Result<AttributeTable> {
    let mut problems = LineProblems::new(path);
    let mut lines = content_lines(text);
    let (count_line, count_text) = lines
        .next()
        .ok_or_else(|| Error::parse(path, 1, "expected the image count, found an empty file"))?;
    let declared: Option<usize> = count_text.trim().parse().ok();
    if declared.is_none() {
        problems.push(
            count_line,
            format!("expected the image count, found `{}`", count_text.trim()),
        );
    }
    let Some((fields_line, fields_text)) = lines.next() else {
        problems.push(
            count_line + 1,
            "expected the line of attribute names, found end of file",
        );
        return problems.finish(AttributeTable {
            fields: Vec::new(),
            rows: Vec::new(),
        });
    };
    let fields: Vec<String> = fields_text.split_whitespace().map(str::to_owned).collect();
    if fields.is_empty() {
        return Err(Error::parse(path, fields_line, "expected attribute names"));
    }
    let mut seen_field: HashMap<&str, usize> = HashMap::new();
    for (i, f) in fields.iter().enumerate() {
        if let Some(first) = seen_field.insert(f, i) {
            problems.push(
                fields_line,
                format!(
                    "attribute `{f}` appears twice (columns {} and {})",
                    first + 1,
                    i + 1
                ),
            );
        }
    }

    let capacity = declared.unwrap_or(0).min(1 << 20);
    let mut rows = Vec::with_capacity(capacity);
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(capacity);
    let mut row_count = 0;
    for (line, text) in lines {
        let mut tokens = text.split_whitespace();
        let Some(name) = tokens.next() else { continue };
        row_count += 1;
        let values: Vec<&str> = tokens.collect();
        if values.len() != fields.len() {
            problems.push(
                line,
                format!(
                    "expected a file name and {} values, found {} values",
                    fields.len(),
                    values.len()
                ),
            );
            continue;
        }
        let mut parsed = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            match *v {
                "1" | "+1" => parsed.push(1i8),
                "-1" => parsed.push(-1i8),
                other => problems.push(
                    line,
                    format!("value `{other}` for `{}`: expected 1 or -1", fields[i]),
                ),
            }
        }
        if let Some(first) = seen.insert(name.to_owned(), line) {
            problems.push(
                line,
                format!("duplicate row for `{name}` (first at line {first})"),
            );
            continue;
        }
        if parsed.len() == fields.len() {
            rows.push(AttributeRow {
                file_name: name.to_owned(),
                values: parsed,
                line,
            });
        }
    }
    if let Some(declared) = declared.filter(|d| *d != row_count) {
        problems.push_first(
            count_line,
            format!("header says {declared} images but the file has {row_count} rows"),
        );
    }
    problems.finish(AttributeTable { fields, rows })
}

/// Parses a two-column `name value` file (partition or identity list) into name → (value, line),
/// reporting every bad line.
fn parse_pairs<T: std::str::FromStr>(
    path: &Path,
    text: &str,
    what: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<BTreeMap<String, (T, usize)>> {
    let mut problems = LineProblems::new(path);
    let mut out = BTreeMap::new();
    for (line, l) in content_lines(text) {
        let tokens: Vec<&str> = l.split_whitespace().collect();
        if tokens.len() != 2 {
            problems.push(
                line,
                format!(
                    "expected `<file name> <{what}>`, found {} fields",
                    tokens.len()
                ),
            );
            continue;
        }
        let Some(value) = tokens[1].parse::<T>().ok().filter(|v| valid(v)) else {
            problems.push(line, format!("expected {what}, found `{}`", tokens[1]));
            continue;
        };
        if let Some((_, first)) = out.get(tokens[0]) {
            let first: usize = *first;
            problems.push(
                line,
                format!("duplicate row for `{}` (first at line {first})", tokens[0]),
            );
            continue;
        }
        out.insert(tokens[0].to_owned(), (value, line));
    }
    problems.finish(out)
}

/// Parses `list_eval_partition.txt` text: `000001.jpg 0` with 0 train, 1 val, 2 test.
pub fn parse_partitions(path: &Path, text: &str) -> Result<BTreeMap<String, (u8, usize)>> {
    parse_pairs(path, text, "a partition 0, 1 or 2", |p: &u8| *p <= 2)
}

/// Parses `identity_CelebA.txt` text: `000001.jpg 2880`.
pub fn parse_identities(path: &Path, text: &str) -> Result<BTreeMap<String, (u32, usize)>> {
    parse_pairs(path, text, "an identity number", |_: &u32| true)
}

/// What to do when the attribute rows and the image folder disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mismatch {
    /// Fail with an error naming the first offending file (and line).
    #[default]
    Error,
    /// Drop the row (or ignore the image) and count it in [`CelebA::warnings`].
    Skip,
}

/// Options for [`CelebA::open_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// A row whose image is not in `img_align_celeba/`.
    pub row_without_image: Mismatch,
    /// An image in `img_align_celeba/` that has no attribute row.
    pub image_without_row: Mismatch,
}

/// Counted problems that [`OpenOptions`] allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Warnings {
    /// Rows dropped because their image is missing (names, sorted).
    pub rows_without_image: Vec<String>,
    /// Images ignored because they have no row (names, sorted).
    pub images_without_row: Vec<String>,
    /// Files in `img_align_celeba/` that are not images (ignored).
    pub non_image_files: usize,
    /// Attribute columns found in another place than CelebA's, mapped by name:
    /// "`Smiling` is column 1 (CelebA's 32)", in file order.
    pub moved_columns: Vec<String>,
}

/// One CelebA image with its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CelebARow {
    /// Name as written in the attribute file (`000001.jpg`).
    pub file_name: String,
    /// Name of the file on disk; differs from `file_name` only in the extension, when the folder
    /// holds the PNG release (`000001.png`): rows are matched by stem as facenet does.
    pub image_file: String,
    /// The 40 values (−1 / 1) in [`CELEBA_ATTRIBUTES`] order.
    pub attributes: [i8; 40],
    /// 0 train, 1 val, 2 test, when `list_eval_partition.txt` is present.
    pub partition: Option<u8>,
    /// Identity number, when `identity_CelebA.txt` is present.
    pub identity: Option<u32>,
}

/// An opened CelebA directory.
#[derive(Clone, Debug)]
pub struct CelebA {
    /// The directory that holds `img_align_celeba/` and the text files.
    pub dir: PathBuf,
    /// Attribute names (always [`CELEBA_ATTRIBUTES`]).
    pub fields: Vec<String>,
    /// Rows sorted by file name.
    pub rows: Vec<CelebARow>,
    /// What was skipped under [`OpenOptions`].
    pub warnings: Warnings,
}

impl CelebA {
    /// Opens strictly: every mismatch is an error.
    pub fn open(dir: &Path) -> Result<CelebA> {
        CelebA::open_with(dir, OpenOptions::default())
    }

    /// Opens with a policy for rows and images that don't match.
    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<CelebA> {
        let attr_path = dir.join(ATTR_FILE);
        let table = read_attribute_file(&attr_path)?;
        let mut warnings = Warnings::default();
        let order = column_order(&table.fields).map_err(|message| {
            let line = read_text(&attr_path)
                .ok()
                .and_then(|t| content_lines(&t).nth(1).map(|(l, _)| l))
                .unwrap_or(2);
            Error::parse(&attr_path, line, message)
        })?;
        if let Some(order) = &order {
            warnings.moved_columns = moved_columns(&table.fields, order);
            tracing::warn!(
                "{}: the attribute columns are in another order than CelebA's; mapped by name ({})",
                attr_path.display(),
                summarize(&warnings.moved_columns)
            );
        }
        let optional = |name: &str| -> Result<Option<(PathBuf, String)>> {
            let p = dir.join(name);
            if p.exists() {
                Ok(Some((p.clone(), read_text(&p)?)))
            } else {
                Ok(None)
            }
        };
        let partitions = optional(PARTITION_FILE)?
            .map(|(p, t)| parse_partitions(&p, &t).map(|m| (p, m)))
            .transpose()?;
        let identities = optional(IDENTITY_FILE)?
            .map(|(p, t)| parse_identities(&p, &t).map(|m| (p, m)))
            .transpose()?;

        // Images on disk, keyed by stem (facenet matches rows by the name before the first '.').
        let image_dir = dir.join(IMAGE_DIR);
        let mut by_stem: BTreeMap<String, String> = BTreeMap::new();
        let entries = std::fs::read_dir(&image_dir).map_err(|e| Error::io(&image_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&image_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !path.is_file() || !crate::has_image_extension(&path) {
                warnings.non_image_files += 1;
                continue;
            }
            let stem = stem_of(&name).to_owned();
            if let Some(other) = by_stem.insert(stem, name.clone()) {
                return Err(Error::Dataset {
                    path: image_dir,
                    message: format!("`{name}` and `{other}` are the same image in two formats"),
                });
            }
        }

        let mut rows = Vec::with_capacity(table.rows.len());
        let mut used: std::collections::HashSet<String> = Default::default();
        for row in table.rows {
            let stem = stem_of(&row.file_name);
            let Some(image_file) = by_stem.get(stem) else {
                match options.row_without_image {
                    Mismatch::Error => {
                        return Err(Error::parse(
                            &attr_path,
                            row.line,
                            format!(
                                "row `{}` has no image in {}",
                                row.file_name,
                                image_dir.display()
                            ),
                        ))
                    }
                    Mismatch::Skip => {
                        warnings.rows_without_image.push(row.file_name);
                        continue;
                    }
                }
            };
            used.insert(stem.to_owned());
            let mut attributes = [0i8; 40];
            match &order {
                None => attributes.copy_from_slice(&row.values),
                Some(order) => {
                    for (a, &column) in order.iter().enumerate() {
                        attributes[a] = row.values[column];
                    }
                }
            }
            let partition = lookup(&partitions, &row.file_name)?;
            let identity = lookup(&identities, &row.file_name)?;
            rows.push(CelebARow {
                image_file: image_file.clone(),
                file_name: row.file_name,
                attributes,
                partition,
                identity,
            });
        }
        for (stem, name) in &by_stem {
            if !used.contains(stem) {
                match options.image_without_row {
                    Mismatch::Error => {
                        return Err(Error::Dataset {
                            path: image_dir.join(name),
                            message: format!("image has no row in {}", attr_path.display()),
                        })
                    }
                    Mismatch::Skip => warnings.images_without_row.push(name.clone()),
                }
            }
        }
        rows.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        warnings.rows_without_image.sort();
        Ok(CelebA {
            dir: dir.to_owned(),
            fields: CELEBA_ATTRIBUTES.iter().map(|a| a.to_string()).collect(),
            rows,
            warnings,
        })
    }

    /// Paths of the images, in row order.
    pub fn image_paths(&self) -> Vec<PathBuf> {
        let d = self.dir.join(IMAGE_DIR);
        self.rows.iter().map(|r| d.join(&r.image_file)).collect()
    }

    /// Attribute matrix, row-major `[rows, 40]` as f32 ±1 (what `calculate_attribute_vectors` stores).
    pub fn attribute_matrix(&self) -> Vec<f32> {
        self.rows
            .iter()
            .flat_map(|r| r.attributes.iter().map(|v| *v as f32))
            .collect()
    }
}

/// For the file's attribute names: `None` when they are CelebA's in CelebA's order; `Some(order)`
/// with `order[a]` = the file column of [`CELEBA_ATTRIBUTES`]`[a]` when they are the same 40
/// names in another order; an error naming the unknown and missing names otherwise.
fn column_order(fields: &[String]) -> std::result::Result<Option<Vec<usize>>, String> {
    if fields == CELEBA_ATTRIBUTES {
        return Ok(None);
    }
    let unknown: Vec<&str> = fields
        .iter()
        .map(String::as_str)
        .filter(|f| attribute_index(f).is_none())
        .collect();
    let missing: Vec<&str> = CELEBA_ATTRIBUTES
        .iter()
        .copied()
        .filter(|a| !fields.iter().any(|f| f == a))
        .collect();
    if unknown.is_empty() && missing.is_empty() && fields.len() == CELEBA_ATTRIBUTES.len() {
        let order = CELEBA_ATTRIBUTES
            .iter()
            .map(|a| fields.iter().position(|f| f == a).unwrap_or(0))
            .collect();
        return Ok(Some(order));
    }
    let quote = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut message = format!(
        "expected the 40 CelebA attribute names (5_o_Clock_Shadow … Young, in any order), found {} names",
        fields.len()
    );
    if !unknown.is_empty() {
        message.push_str(&format!("; unknown: {}", quote(&unknown)));
    }
    if !missing.is_empty() {
        message.push_str(&format!("; missing: {}", quote(&missing)));
    }
    Err(message)
}

/// "`Smiling` is column 1 (CelebA's 32)" for each column not where CelebA has it.
fn moved_columns(fields: &[String], order: &[usize]) -> Vec<String> {
    let mut moved: Vec<(usize, String)> = order
        .iter()
        .enumerate()
        .filter(|(a, column)| a != *column)
        .map(|(a, &column)| {
            let text = format!(
                "`{}` is column {} (CelebA's {})",
                fields[column],
                column + 1,
                a + 1
            );
            (column, text)
        })
        .collect();
    moved.sort();
    moved.into_iter().map(|(_, t)| t).collect()
}

/// The first few moved columns, and how many more.
fn summarize(moved: &[String]) -> String {
    let mut text = moved.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if moved.len() > 3 {
        text.push_str(&format!(", and {} more", moved.len() - 3));
    }
    text
}

/// A parsed optional list: its path and name → (value, line).
type OptionalList<T> = Option<(PathBuf, BTreeMap<String, (T, usize)>)>;

/// Every row of the main file must have a row in the optional file.
fn lookup<T: Copy>(map: &OptionalList<T>, name: &str) -> Result<Option<T>> {
    match map {
        None => Ok(None),
        Some((path, m)) => m
            .get(name)
            .map(|(v, _)| Some(*v))
            .ok_or_else(|| Error::Dataset {
                path: path.clone(),
                message: format!("no row for `{name}`, which {ATTR_FILE} lists"),
            }),
    }
}

fn stem_of(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Writes `list_attr_celeba.txt` text in the exact CelebA format: the count, the names each
/// followed by a space, then `name` and each value right-aligned in a 2-wide field after a space.
pub fn format_attributes<'a>(
    rows: impl ExactSizeIterator<Item = (&'a str, &'a [i8; 40])>,
) -> String {
    let mut out = String::with_capacity(rows.len() * 132 + 700);
    let _ = writeln!(out, "{}", rows.len());
    for name in CELEBA_ATTRIBUTES {
        out.push_str(name);
        out.push(' ');
    }
    out.push('\n');
    for (name, values) in rows {
        out.push_str(name);
        for v in values {
            let _ = write!(out, " {v:>2}");
        }
        out.push('\n');
    }
    out
}

/// Writes a two-column `name value` list (`list_eval_partition.txt`, `identity_CelebA.txt`).
pub fn format_pairs<'a, T: std::fmt::Display + 'a>(
    rows: impl Iterator<Item = (&'a str, T)>,
) -> String {
    let mut out = String::new();
    for (name, v) in rows {
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr_text(rows: &[(&str, [i8; 40])]) -> String {
        format_attributes(rows.iter().map(|(n, v)| (*n, v)))
    }

    fn vals(smiling: i8) -> [i8; 40] {
        let mut v = [-1i8; 40];
        v[SMILING] = smiling;
        v
    }

    /// Parses `text` and returns the error message (with a fake path `a.txt`), or "ok".
    fn check_parse(text: &str) -> String {
        match parse_attributes(Path::new("a.txt"), text) {
            Ok(t) => format!("ok {} rows", t.rows.len()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn writer_matches_the_celeba_layout() {
        let text = attr_text(&[("000001.jpg", vals(1))]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "1");
        assert!(lines[1].starts_with("5_o_Clock_Shadow Arched_Eyebrows "));
        assert!(lines[1].ends_with("Young "));
        assert!(lines[2].starts_with("000001.jpg -1 -1 -1"));
        // Smiling is token 32 after the file name, right-aligned: "  1".
        let tokens: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(tokens[32], "1");
        assert!(lines[2].contains(" -1  1 -1"));
    }

    #[test]
    fn round_trip_with_crlf_bom_and_whitespace_runs() {
        let text = attr_text(&[("000001.jpg", vals(1)), ("000002.jpg", vals(-1))]);
        let mangled = format!(
            "\u{feff}{}",
            text.replace('\n', "\r\n").replace(' ', " \t ")
        );
        let t = parse_attributes(Path::new("a.txt"), &mangled).unwrap();
        assert_eq!(t.fields, CELEBA_ATTRIBUTES);
        assert_eq!(t.rows[0].values[SMILING], 1);
        assert_eq!(t.rows[1].values[SMILING], -1);
        assert_eq!(t.rows[1].line, 4);
    }

    #[test]
    fn header_count_mismatch() {
        let text = "3\nA B\nx.jpg 1 -1\ny.jpg -1 1\n";
        assert_eq!(
            check_parse(text),
            "a.txt:1: header says 3 images but the file has 2 rows"
        );
    }

    #[test]
    fn wrong_number_of_values() {
        let text = "2\nA B\nx.jpg 1 -1\ny.jpg -1\n";
        assert_eq!(
            check_parse(text),
            "a.txt:4: expected a file name and 2 values, found 1 values"
        );
    }

    #[test]
    fn value_other_than_plus_minus_one() {
        let text = "1\nA B\nx.jpg 1 0\n";
        assert_eq!(
            check_parse(text),
            "a.txt:3: value `0` for `B`: expected 1 or -1"
        );
    }

    #[test]
    fn duplicate_names() {
        let text = "2\nA B\nx.jpg 1 1\nx.jpg 1 1\n";
        assert_eq!(
            check_parse(text),
            "a.txt:4: duplicate row for `x.jpg` (first at line 3)"
        );
        assert_eq!(
            check_parse("0\nA A\n"),
            "a.txt:2: attribute `A` appears twice (columns 1 and 2)"
        );
    }

    #[test]
    fn bad_count_and_empty_file() {
        assert_eq!(
            check_parse("lots\nA\n"),
            "a.txt:1: expected the image count, found `lots`"
        );
        assert_eq!(
            check_parse(""),
            "a.txt:1: expected the image count, found an empty file"
        );
        assert_eq!(check_parse("1\nA\nx.jpg 1\n"), "ok 1 rows");
    }

    #[test]
    fn partition_and_identity_lines() {
        let p = Path::new("p.txt");
        let m = parse_partitions(p, "000001.jpg 0\r\n000002.jpg  2\n").unwrap();
        assert_eq!(m["000002.jpg"], (2, 2));
        let e = parse_partitions(p, "000001.jpg 0\n000002.jpg 3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.txt:2: expected a partition 0, 1 or 2, found `3`"
        );
        let e = parse_identities(p, "000001.jpg\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.txt:1: expected `<file name> <an identity number>`, found 1 fields"
        );
    }

    /// A CelebA dir with `images` on disk and `rows` in the attribute file.
    fn dir_with(images: &[&str], rows: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(IMAGE_DIR)).unwrap();
        for i in images {
            std::fs::write(d.path().join(IMAGE_DIR).join(i), b"x").unwrap();
        }
        let v = vals(1);
        let r: Vec<(&str, [i8; 40])> = rows.iter().map(|n| (*n, v)).collect();
        std::fs::write(d.path().join(ATTR_FILE), attr_text(&r)).unwrap();
        d
    }

    #[test]
    fn open_sorts_rows_and_reads_optional_files() {
        let d = dir_with(
            &["000002.jpg", "000001.jpg", "notes.txt"],
            &["000002.jpg", "000001.jpg"],
        );
        std::fs::write(
            d.path().join(PARTITION_FILE),
            "000001.jpg 0\n000002.jpg 1\n",
        )
        .unwrap();
        let c = CelebA::open(d.path()).unwrap();
        assert_eq!(c.rows[0].file_name, "000001.jpg");
        assert_eq!(c.rows[1].partition, Some(1));
        assert_eq!(c.rows[1].identity, None);
        assert_eq!(c.warnings.non_image_files, 1);
        assert!(c.image_paths()[0].ends_with("img_align_celeba/000001.jpg"));
    }

    #[test]
    fn row_without_image_names_the_line() {
        let d = dir_with(&["000001.jpg"], &["000001.jpg", "000002.jpg"]);
        let e = CelebA::open(d.path()).unwrap_err().to_string();
        let expect = format!(
            "list_attr_celeba.txt:4: row `000002.jpg` has no image in {}",
            d.path().join(IMAGE_DIR).display()
        );
        assert!(e.ends_with(&expect), "{e}");
        let c = CelebA::open_with(
            d.path(),
            OpenOptions {
                row_without_image: Mismatch::Skip,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.rows.len(), 1);
        assert_eq!(c.warnings.rows_without_image, ["000002.jpg"]);
    }

    #[test]
    fn image_without_row_is_an_error_or_a_warning() {
        let d = dir_with(&["000001.jpg", "000003.jpg"], &["000001.jpg"]);
        let e = CelebA::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("000003.jpg: image has no row in"), "{e}");
        let c = CelebA::open_with(
            d.path(),
            OpenOptions {
                image_without_row: Mismatch::Skip,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.warnings.images_without_row, ["000003.jpg"]);
    }

    #[test]
    fn png_release_matches_by_stem() {
        let d = dir_with(&["000001.png"], &["000001.jpg"]);
        let c = CelebA::open(d.path()).unwrap();
        assert_eq!(c.rows[0].image_file, "000001.png");
    }

    #[test]
    fn partition_file_missing_a_row() {
        let d = dir_with(&["000001.jpg", "000002.jpg"], &["000001.jpg", "000002.jpg"]);
        std::fs::write(d.path().join(PARTITION_FILE), "000001.jpg 0\n").unwrap();
        let e = CelebA::open(d.path()).unwrap_err().to_string();
        assert!(e.ends_with("list_eval_partition.txt: no row for `000002.jpg`, which list_attr_celeba.txt lists"), "{e}");
    }

    #[test]
    fn wrong_field_names_are_rejected() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(IMAGE_DIR)).unwrap();
        std::fs::write(d.path().join(ATTR_FILE), "0\nA B\n").unwrap();
        let e = CelebA::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("list_attr_celeba.txt:2: expected the 40 CelebA attribute names"),
            "{e}"
        );
    }

    /// See: issue 15. Every bad line in one pass, not only the first.
    #[test]
    fn every_bad_line_is_reported_in_one_pass() {
        let text = "5\nA B\nx.jpg 1 -1\ny.jpg -1\nz.jpg 1 2\nx.jpg 1 1\nw.jpg 1 1 1\n";
        assert_eq!(
            check_parse(text),
            "a.txt: 4 bad lines\n  \
             a.txt:4: expected a file name and 2 values, found 1 values\n  \
             a.txt:5: value `2` for `B`: expected 1 or -1\n  \
             a.txt:6: duplicate row for `x.jpg` (first at line 3)\n  \
             a.txt:7: expected a file name and 2 values, found 3 values"
        );
        let e = parse_partitions(Path::new("p.txt"), "a 0\nb 7\nc\na 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.txt: 3 bad lines\n  \
             p.txt:2: expected a partition 0, 1 or 2, found `7`\n  \
             p.txt:3: expected `<file name> <a partition 0, 1 or 2>`, found 1 fields\n  \
             p.txt:4: duplicate row for `a` (first at line 1)"
        );
    }

    #[test]
    fn thousands_of_bad_lines_are_counted_not_all_shown() {
        let mut text = String::from("3000\nA\n");
        for i in 0..3000 {
            text.push_str(&format!("{i}.jpg 0\n"));
        }
        let e = check_parse(&text);
        assert!(e.starts_with("a.txt: 3000 bad lines\n"), "{}", &e[..100]);
        assert!(
            e.ends_with("\n  … and 2950 more"),
            "{}",
            &e[e.len() - 100..]
        );
        assert_eq!(e.lines().count(), 52);
    }

    /// See: issue 15. The 40 names in another order are mapped by name, and said so.
    #[test]
    fn reordered_columns_are_mapped_by_name() {
        let d = dir_with(&["000001.jpg"], &["000001.jpg"]);
        let mut fields: Vec<&str> = CELEBA_ATTRIBUTES.to_vec();
        fields.swap(0, SMILING);
        let mut values = ["-1"; 40];
        values[0] = "1"; // the file's first column is Smiling
        let text = format!("1\n{}\n000001.jpg {}\n", fields.join(" "), values.join(" "));
        std::fs::write(d.path().join(ATTR_FILE), text).unwrap();
        let c = CelebA::open(d.path()).unwrap();
        assert_eq!(c.rows[0].attributes[SMILING], 1);
        assert_eq!(c.rows[0].attributes[0], -1);
        assert_eq!(c.fields, CELEBA_ATTRIBUTES);
        assert_eq!(
            c.warnings.moved_columns,
            [
                "`Smiling` is column 1 (CelebA's 32)",
                "`5_o_Clock_Shadow` is column 32 (CelebA's 1)"
            ]
        );
    }

    #[test]
    fn unknown_and_missing_names_are_named() {
        let d = dir_with(&["000001.jpg"], &["000001.jpg"]);
        let mut fields: Vec<&str> = CELEBA_ATTRIBUTES.to_vec();
        fields[SMILING] = "Smilling";
        let text = format!("0\n{}\n", fields.join(" "));
        std::fs::write(d.path().join(ATTR_FILE), text).unwrap();
        let e = CelebA::open(d.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("list_attr_celeba.txt:2: expected the 40 CelebA attribute names (5_o_Clock_Shadow … Young, in any order), found 40 names; unknown: `Smilling`; missing: `Smiling`"),
            "{e}"
        );
    }
}
