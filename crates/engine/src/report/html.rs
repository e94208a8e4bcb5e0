//! `report.html`: one static, self-contained page per run, per sweep variant and per sweep.
//!
//! Readable offline: inline CSS, no scripts, no external assets. From the top: a "did it work?"
//! list (one sentence per stage, [`sections::verdict`]), the sweep table, the DAG (an inline SVG
//! laid out here, scaled to the page width), the stage table (each row linking to its entry, its
//! manifest and its log tail), the training curves and the attribute charts (inline SVG,
//! [`charts`]), originals next to reconstructions, the other images, each stage's
//! `metrics.json` scalars, and the log tails. Images are the PNGs stages wrote, embedded byte
//! for byte as base64 `data:` URIs (click one to enlarge it: a CSS checkbox, no script).
//! Nothing is decoded, so the engine needs no image library.
//!
//! While a run goes on, [`super::live`] rewrites the page at each training save: a running
//! stage's curves and grids then come from the directory it named in `StageCx::saved`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::sections;
use super::{format_metric, read_metrics, table, SweepSummary};
use crate::cache::manifest::Manifest;
use crate::cache::CacheStore;
use crate::scheduler::{Outcome, RunReport, SweepPlan};

/// One stage on a page.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub status: String,
    pub elapsed_s: Option<f64>,
    pub compute_s: Option<f64>,
    /// Indices into the page's nodes.
    pub deps: Vec<usize>,
    /// Names of the external inputs it reads.
    pub inputs: Vec<String>,
    /// Its cache entry directory.
    pub dir: PathBuf,
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// Why it failed or was skipped.
    pub note: Option<String>,
    /// Its `runs/` links, relative to the runs directory.
    pub links: Vec<PathBuf>,
    /// While it runs: where its live files (metrics, grids) are.
    pub live_dir: Option<PathBuf>,
    /// The last lines of its log: (where they come from, the lines).
    pub log: Option<(String, Vec<String>)>,
}

impl Node {
    /// Where its files are now: the live directory while it runs, else its entry.
    pub fn files_dir(&self) -> &Path {
        self.live_dir.as_deref().unwrap_or(&self.dir)
    }
}

/// A whole page.
#[derive(Debug, Clone, Default)]
pub struct Page<'a> {
    pub title: String,
    pub subtitle: String,
    pub nodes: Vec<Node>,
    pub sweep: Option<&'a SweepSummary>,
    /// Extra images (caption, PNG path), e.g. a sweep's contact sheet.
    pub images: Vec<(String, PathBuf)>,
    /// The page's directory relative to the runs directory (`demo`, `smile/alfa-0.5`), so that
    /// a stage row links to its entry through its `runs/` link.
    pub runs_subdir: PathBuf,
    /// A line shown while the run goes on (the live page).
    pub banner: Option<String>,
}

/// What the run knows of a stage so far, for [`nodes_with`].
pub enum Known<'o> {
    Outcome(&'o Outcome),
    /// Running; its live files are in the directory, once it named one.
    Running(Option<&'o Path>),
    /// Not started yet (while a run goes on).
    Waiting,
    /// No run: only the cache says.
    Unknown,
}

/// The nodes of the whole plan (`variant: None`) or of one variant, with the run's outcomes.
pub fn nodes(
    plan: &SweepPlan,
    report: Option<&RunReport>,
    store: &CacheStore,
    variant: Option<usize>,
) -> Vec<Node> {
    nodes_with(
        plan,
        store,
        variant,
        &|i| match report.and_then(|r| r.results.get(i)) {
            Some((_, o)) => Known::Outcome(o),
            None => Known::Unknown,
        },
    )
}

/// Like [`nodes`], with what the run knows of plan stage `i` from `known(i)`.
pub fn nodes_with<'o>(
    plan: &SweepPlan,
    store: &CacheStore,
    variant: Option<usize>,
    known: &dyn Fn(usize) -> Known<'o>,
) -> Vec<Node> {
    let selected: Vec<(String, usize)> = match variant {
        Some(v) => plan.variant_stages.get(v).cloned().unwrap_or_default(),
        None => plan
            .plan
            .stages
            .iter()
            .enumerate()
            .map(|(i, ps)| (ps.name.clone(), i))
            .collect(),
    };
    let position: BTreeMap<usize, usize> = selected
        .iter()
        .enumerate()
        .map(|(p, (_, i))| (*i, p))
        .collect();
    selected
        .iter()
        .map(|(name, i)| {
            let ps = &plan.plan.stages[*i];
            let dir = store.entry_dir(&ps.key);
            let manifest = Manifest::read(&dir, Some(&ps.key));
            let known = known(*i);
            let live_dir = match &known {
                Known::Running(dir) => dir.map(Path::to_path_buf),
                _ => None,
            };
            let (status, elapsed, note) = match known {
                Known::Running(_) => ("running".to_owned(), None, None),
                Known::Waiting if manifest.is_none() => ("waiting".to_owned(), None, None),
                Known::Outcome(o) => (
                    o.status().to_owned(),
                    match o {
                        Outcome::Ran { duration, .. } => Some(duration.as_secs_f64()),
                        Outcome::Hit { .. } => Some(0.0),
                        _ => None,
                    },
                    match o {
                        Outcome::Failed { error } => Some(error.clone()),
                        Outcome::Skipped { because } => Some(because.clone()),
                        _ => None,
                    },
                ),
                _ if manifest.is_some() => ("cached".to_owned(), None, None),
                _ => ("missing".to_owned(), None, None),
            };
            let log = log_tail(
                store,
                &ps.key.to_string(),
                live_dir.as_deref().unwrap_or(&dir),
                note.as_deref(),
            );
            let mut inputs: Vec<String> =
                ps.input_records.values().map(|r| r.input.clone()).collect();
            inputs.dedup();
            Node {
                name: name.clone(),
                kind: ps.kind.clone(),
                key: ps.key.to_string(),
                status,
                elapsed_s: elapsed,
                compute_s: manifest.as_ref().map(|m| m.duration_s),
                deps: ps
                    .deps
                    .iter()
                    .filter_map(|d| position.get(d).copied())
                    .collect(),
                inputs,
                metrics: read_metrics(&dir),
                dir,
                note,
                links: ps.links.clone(),
                live_dir,
                log,
            }
        })
        .collect()
}

/// The last lines of a stage's log: its newest Slurm job log, else why it failed, else the last
/// lines of its `metrics.jsonl` (local stages log to the terminal).
fn log_tail(
    store: &CacheStore,
    key: &str,
    files: &Path,
    note: Option<&str>,
) -> Option<(String, Vec<String>)> {
    let logs = crate::executor::jobs::jobs_dir(store.root()).join("logs");
    let newest = std::fs::read_dir(&logs).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(key) && n.ends_with(".log")
            })
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .map(|e| e.path())
    });
    if let Some(path) = newest {
        if let Some(lines) = crate::executor::jobs::log_tail(&path, 30) {
            return Some((path.display().to_string(), lines));
        }
    }
    if let Some(note) = note {
        return Some((
            "the error".to_owned(),
            note.lines().map(str::to_owned).collect(),
        ));
    }
    let path = files.join("metrics.jsonl");
    crate::executor::jobs::log_tail(&path, 5)
        .filter(|l| !l.is_empty())
        .map(|l| (path.display().to_string(), l))
}

/// Renders and writes a page.
pub fn write(page: &Page<'_>, path: &Path) -> io::Result<()> {
    crate::atomic_file::write_atomic(path, render(page).as_bytes())
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}\
h1{font-size:1.5em;margin-bottom:0}h2{margin-top:2em;border-bottom:1px solid #ddd}\
.sub{color:#666}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-variant-numeric:tabular-nums}\
th{background:#f4f4f4}code{font-size:.9em}.ran{background:#c8e6c9}.hit{background:#e3f2fd}\
.cached{background:#eee}.failed{background:#ffcdd2}.skipped,.cancelled{background:#ffe0b2}\
.running{background:#fff59d}.missing,.waiting{background:#fafafa}\
.banner{background:#fff59d;padding:.5em 1em;border-radius:4px}\
.verdict{font-size:1.05em}ul.verdict li{margin:.2em 0}\
figure{display:inline-block;margin:.5em;vertical-align:top;max-width:100%}\
figcaption{color:#555;font-size:.9em}\
.dag{max-width:100%;height:auto}.charts{display:flex;flex-wrap:wrap;gap:8px}\
.pair{display:flex;gap:12px;align-items:flex-start}.pair figure{flex:1;margin:.5em 0;min-width:0}\
.zoom input{display:none}.zoom img{display:block;max-width:100%;border:1px solid #ddd;cursor:zoom-in;image-rendering:pixelated}\
.pair .zoom img{width:100%}\
.zoom input:checked+img{position:fixed;top:2vh;left:2vw;width:96vw;height:96vh;max-width:none;object-fit:contain;z-index:9;\
background:#fff;box-shadow:0 0 0 100vmax rgba(0,0,0,.75);cursor:zoom-out}\
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:12px}\
svg{font-family:system-ui,sans-serif;font-size:12px}";

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn secs(s: Option<f64>) -> String {
    s.map_or(String::new(), |s| format!("{s:.2}s"))
}

/// The href of a stage's entry from the page: through its `runs/` link when the page's
/// directory holds it, else the entry's absolute path.
fn entry_href(page: &Page<'_>, n: &Node) -> String {
    if n.live_dir.is_none() {
        for link in &n.links {
            if let Ok(rel) = link.strip_prefix(&page.runs_subdir) {
                if !rel.as_os_str().is_empty() && !page.runs_subdir.as_os_str().is_empty() {
                    return rel.to_string_lossy().into_owned();
                }
            }
        }
    }
    let dir = n.files_dir();
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("file://{}", abs.display())
}

/// The page as HTML text.
pub fn render(page: &Page<'_>) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1><p class=\"sub\">{}</p>\n",
        esc(&page.title),
        esc(&page.title),
        esc(&page.subtitle)
    );
    if let Some(banner) = &page.banner {
        let _ = writeln!(h, "<p class=\"banner\">{}</p>", esc(banner));
    }
    let views: Vec<(Option<sections::Series>, Option<serde_json::Value>)> = page
        .nodes
        .iter()
        .map(|n| {
            let metrics = std::fs::read(n.files_dir().join("metrics.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            (sections::read_series(n.files_dir()), metrics)
        })
        .collect();
    let verdict: Vec<String> = page
        .nodes
        .iter()
        .zip(&views)
        .flat_map(|(n, (series, metrics))| {
            sections::verdict(&n.name, series.as_ref(), metrics.as_ref())
        })
        .collect();
    if !verdict.is_empty() {
        h.push_str("<h2>Did it work?</h2><ul class=\"verdict\">\n");
        for line in &verdict {
            let _ = writeln!(h, "<li>{}</li>", esc(line));
        }
        h.push_str("</ul>\n");
    }
    if let Some(sweep) = page.sweep {
        let (header, rows) = table(sweep);
        let _ = write!(h, "<h2>Sweep</h2><table><tr>");
        for c in &header {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h.push_str("</tr>\n");
        for row in &rows {
            let class = row.last().map_or("", String::as_str);
            let _ = write!(h, "<tr class=\"{}\">", esc(class));
            for (i, c) in row.iter().enumerate() {
                if i == 0 {
                    let _ = write!(h, "<td><a href=\"{0}/report.html\">{0}</a></td>", esc(c));
                } else {
                    let _ = write!(h, "<td>{}</td>", esc(c));
                }
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
        h.push_str(&super::parallel::parallel_coordinates(sweep));
    }
    if !page.images.is_empty() {
        h.push_str("<h2>Overview</h2>\n");
        for (caption, path) in &page.images {
            zoomable(&mut h, caption, path);
        }
    }
    if !page.nodes.is_empty() {
        h.push_str("<h2>Stages</h2>\n");
        h.push_str(&dag_svg(&page.nodes));
        h.push_str("<table><tr><th>stage</th><th>kind</th><th>status</th><th>this run</th><th>compute</th><th>key</th><th>files</th><th>note</th></tr>\n");
        for (i, n) in page.nodes.iter().enumerate() {
            let href = esc(&entry_href(page, n));
            let manifest = if n.live_dir.is_none() && n.dir.join("manifest.json").is_file() {
                format!(" · <a href=\"{href}/manifest.json\">manifest</a>")
            } else {
                String::new()
            };
            let log = if n.log.is_some() {
                format!(" · <a href=\"#log-{i}\">log tail</a>")
            } else {
                String::new()
            };
            let _ = writeln!(
                h,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><a href=\"{href}\">entry</a>{manifest}{log}</td><td>{}</td></tr>",
                esc(&n.status),
                esc(&n.name),
                esc(&n.kind),
                esc(&n.status),
                secs(n.elapsed_s),
                secs(n.compute_s),
                esc(n.key.get(..12).unwrap_or(&n.key)),
                esc(n.note.as_deref().unwrap_or("")),
            );
        }
        h.push_str("</table>\n");

        let mut training = String::new();
        let mut grids = String::new();
        let mut attributes = String::new();
        for (n, (series, metrics)) in page.nodes.iter().zip(&views) {
            if let Some(series) = series {
                let _ = write!(
                    training,
                    "<h3>{}</h3>{}",
                    esc(&n.name),
                    sections::training(series)
                );
            }
            let pairs = sections::reconstructions(&n.name, n.files_dir());
            if !pairs.is_empty() {
                let _ = write!(grids, "<h3>{}</h3>{pairs}", esc(&n.name));
            }
            if let Some(m) = metrics {
                let a = sections::attributes(&n.name, m);
                if !a.is_empty() {
                    let _ = write!(attributes, "<h3>{}</h3>{a}", esc(&n.name));
                }
            }
        }
        for (title, body) in [
            ("Training", &training),
            (
                "Reconstructions (left: the batch, right: the VAE's output; click to enlarge)",
                &grids,
            ),
            ("Attributes", &attributes),
        ] {
            if !body.is_empty() {
                let _ = writeln!(h, "<h2>{}</h2>\n{body}", esc(title));
            }
        }
        let mut images = String::new();
        for n in &page.nodes {
            for path in stage_images(n.files_dir()) {
                let file = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                zoomable(&mut images, &format!("{} — {file}", n.name), &path);
            }
        }
        if !images.is_empty() {
            h.push_str("<h2>Images</h2>\n");
            h.push_str(&images);
        }
        let with_metrics: Vec<&Node> = page
            .nodes
            .iter()
            .filter(|n| !n.metrics.is_empty())
            .collect();
        if !with_metrics.is_empty() {
            h.push_str("<h2>Metrics</h2>\n");
            for n in with_metrics {
                let _ = write!(h, "<h3>{}</h3><table>", esc(&n.name));
                for (k, v) in &n.metrics {
                    let _ = write!(
                        h,
                        "<tr><th>{}</th><td>{}</td></tr>",
                        esc(k),
                        esc(&format_metric(v))
                    );
                }
                h.push_str("</table>\n");
            }
        }
        let mut logs = String::new();
        for (i, n) in page.nodes.iter().enumerate() {
            if let Some((source, lines)) = &n.log {
                let _ = writeln!(
                    logs,
                    "<h3 id=\"log-{i}\">{}</h3><p class=\"sub\">{}</p><pre>{}</pre>",
                    esc(&n.name),
                    esc(source),
                    esc(&lines.join("\n"))
                );
            }
        }
        if !logs.is_empty() {
            h.push_str("<h2>Log tails</h2>\n");
            h.push_str(&logs);
        }
    }
    h.push_str("</body></html>\n");
    h
}

/// A figure whose image enlarges to the window when clicked (and shrinks on a second click).
pub(crate) fn zoomable(h: &mut String, caption: &str, path: &Path) {
    match std::fs::read(path) {
        Ok(bytes) => {
            let _ = writeln!(
                h,
                "<figure><label class=\"zoom\" title=\"click to enlarge\"><input type=\"checkbox\"><img alt=\"{0}\" src=\"data:image/png;base64,{1}\"></label><figcaption>{0}</figcaption></figure>",
                esc(caption),
                base64(&bytes)
            );
        }
        Err(e) => {
            let _ = writeln!(
                h,
                "<p>{}: cannot read <code>{}</code>: {}</p>",
                esc(caption),
                esc(&path.display().to_string()),
                esc(&e.to_string())
            );
        }
    }
}

/// The PNGs of an entry shown as they are: `add_*.png` (the training curves and the
/// reconstructions have their own sections).
pub fn stage_images(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("add_") && n.ends_with(".png"))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The DAG as an inline SVG: external inputs in the first column, each stage one column right of
/// its deepest upstream, rows in plan order.
pub fn dag_svg(nodes: &[Node]) -> String {
    const W: usize = 210;
    const H: usize = 44;
    const GX: usize = 50;
    const GY: usize = 16;
    let mut inputs: Vec<String> = nodes
        .iter()
        .flat_map(|n| n.inputs.iter().cloned())
        .collect();
    inputs.sort();
    inputs.dedup();
    let offset = usize::from(!inputs.is_empty());
    let mut depth = vec![0usize; nodes.len()];
    for i in 0..nodes.len() {
        depth[i] = nodes[i]
            .deps
            .iter()
            .filter(|&&d| d < i)
            .map(|&d| depth[d] + 1)
            .max()
            .unwrap_or(0);
    }
    let mut rows_in_col: BTreeMap<usize, usize> = BTreeMap::new();
    let mut place = |col: usize| -> (usize, usize) {
        let row = rows_in_col.entry(col).or_insert(0);
        let at = (10 + col * (W + GX), 10 + *row * (H + GY));
        *row += 1;
        at
    };
    let input_pos: Vec<(usize, usize)> = inputs.iter().map(|_| place(0)).collect();
    let pos: Vec<(usize, usize)> = depth.iter().map(|&d| place(d + offset)).collect();
    let width = pos
        .iter()
        .chain(&input_pos)
        .map(|p| p.0 + W + 10)
        .max()
        .unwrap_or(0);
    let height = pos
        .iter()
        .chain(&input_pos)
        .map(|p| p.1 + H + 10)
        .max()
        .unwrap_or(0);
    let mut s = format!(
        "<svg class=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n"
    );
    let edge = |s: &mut String, from: (usize, usize), to: (usize, usize)| {
        let (x1, y1, x2, y2) = (from.0 + W, from.1 + H / 2, to.0, to.1 + H / 2);
        let _ = writeln!(
            s,
            "<path d=\"M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}\" fill=\"none\" stroke=\"#888\"/>",
            x1 + GX / 2,
            x2.saturating_sub(GX / 2)
        );
    };
    for (i, n) in nodes.iter().enumerate() {
        for &d in &n.deps {
            edge(&mut s, pos[d], pos[i]);
        }
        for input in &n.inputs {
            if let Some(j) = inputs.iter().position(|x| x == input) {
                edge(&mut s, input_pos[j], pos[i]);
            }
        }
    }
    let short = |t: &str| -> String {
        if t.chars().count() > 30 {
            format!("{}…", t.chars().take(29).collect::<String>())
        } else {
            t.to_owned()
        }
    };
    for (name, &(x, y)) in inputs.iter().zip(&input_pos) {
        let _ = writeln!(
            s,
            "<g><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"18\" fill=\"#fff8e1\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\">input {}</text></g>",
            x + 10,
            y + 27,
            esc(&short(name))
        );
    }
    for (n, &(x, y)) in nodes.iter().zip(&pos) {
        let fill = match n.status.as_str() {
            "ran" => "#c8e6c9",
            "hit" => "#e3f2fd",
            "running" => "#fff59d",
            "failed" => "#ffcdd2",
            "skipped" | "cancelled" => "#ffe0b2",
            "missing" => "#fafafa",
            _ => "#eeeeee",
        };
        let _ = writeln!(
            s,
            "<g><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"4\" fill=\"{fill}\" stroke=\"#666\"/><text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text><text x=\"{}\" y=\"{}\" fill=\"#555\">{} · {} {}</text></g>",
            esc(&n.name),
            x + 8,
            y + 18,
            esc(&short(&n.name)),
            x + 8,
            y + 35,
            esc(&n.kind),
            esc(&n.status),
            secs(n.elapsed_s.or(n.compute_s)),
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
