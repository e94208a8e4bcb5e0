//! The `align` stage through the real binary: identity folders and a raw CelebA root in,
//! facenet's aligned layout out, with `failed.txt`, `bounding_boxes.txt` and the summary, on
//! small photos from the MTCNN parity fixture (tests/fixtures/mtcnn/) and broken files.
//! Needs the MTCNN weights that scripts/fetch-mtcnn.sh (run by bootstrap.sh) unpacks.

use std::path::{Path, PathBuf};

use crate::support::Project;

fn fixture_image(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mtcnn/images")
        .join(name)
}

fn weights_dir() -> PathBuf {
    let dir = vaepipe::models::mtcnn::default_weights_dir();
    assert!(
        dir.join("pnet.pt").is_file(),
        "MTCNN weights missing in {}: run scripts/fetch-mtcnn.sh",
        dir.display()
    );
    dir
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

fn experiment(dataset: &str, extra: &str) -> String {
    format!(
        r#"
[experiment]
name = "al"
seed = 1

[input.raw]
path = "{dataset}"

[input.mtcnn]
path = "{}"
fingerprint = "content"

[stage.align]
kind = "align"
from = {{ dataset = "raw", weights = "mtcnn" }}
image_size = 48
margin = 16
{extra}
"#,
        weights_dir().display()
    )
}

#[test]
fn identity_folders_are_aligned_and_every_failure_is_listed_with_its_reason() {
    let p = Project::new();
    let raw = p.path("raw");
    copy(&fixture_image("astronaut.png"), &raw.join("alice/a1.png"));
    copy(
        &fixture_image("grace_hopper.png"),
        &raw.join("grace/g1.png"),
    );
    copy(&fixture_image("grey.png"), &raw.join("grace/g2.png"));
    copy(&fixture_image("two_faces.png"), &raw.join("grace/g3.png"));
    std::fs::write(raw.join("alice/empty.jpg"), b"").unwrap();
    std::fs::write(
        raw.join("alice/bad.jpg"),
        b"\xFF\xD8\xFF\xE0 not really a jpeg",
    )
    .unwrap();
    std::fs::create_dir_all(raw.join("nobody")).unwrap();
    p.file("al.toml", &experiment(&raw.display().to_string(), ""));
    let r = p.ok(&["run", "al.toml"]);
    assert!(r.all().contains("`nobody` has no images"), "{}", r.all());
    assert!(
        r.all()
            .contains("6 images: 3 aligned, 1 without a face, 1 with several faces, 2 errors"),
        "{}",
        r.all()
    );
    let out = p.path("runs/al/align");
    for f in ["alice/a1.png", "grace/g1.png", "grace/g3.png"] {
        let img = image::open(out.join(f)).unwrap();
        assert_eq!((img.width(), img.height()), (48, 48), "{f}");
    }
    assert!(
        out.join("nobody").is_dir(),
        "empty identity folders are kept"
    );
    assert!(!out.join("grace/g2.png").exists());
    let failed = std::fs::read_to_string(out.join("failed.txt")).unwrap();
    assert!(failed.contains("grace/g2.png\tno face found"), "{failed}");
    assert!(failed.contains("alice/empty.jpg\tzero bytes"), "{failed}");
    assert!(failed.contains("alice/bad.jpg\t"), "{failed}");
    let boxes = std::fs::read_to_string(out.join("bounding_boxes.txt")).unwrap();
    // The original's format: `<output> x1 y1 x2 y2`, or the output name alone on failure.
    let line = boxes
        .lines()
        .find(|l| l.starts_with("alice/a1.png "))
        .unwrap();
    let coords: Vec<u32> = line
        .split(' ')
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(coords.len(), 4);
    assert!(
        coords[0] < coords[2] && coords[1] < coords[3] && coords[2] <= 128,
        "{line}"
    );
    assert!(boxes.lines().any(|l| l == "grace/g2.png"), "{boxes}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["detected"], 3);
    assert_eq!(summary["errors"], 2);

    // The aligned set is what align-check accepts.
    p.file(
        "check.toml",
        &format!(
            "{}\n[stage.check]\nkind = \"align-check\"\nfrom = {{ dataset = \"align\" }}\nexpected_size = [48, 48]\ncrop = 40\n",
            experiment(&raw.display().to_string(), "")
        )
        .replace("name = \"al\"", "name = \"chk\""),
    );
    let r = p.ok(&["run", "check.toml"]);
    assert!(r.stdout.contains("1 ran, 1 fresh"), "{}", r.all());
}

#[test]
fn detect_multiple_faces_writes_numbered_files_as_the_original() {
    let p = Project::new();
    let raw = p.path("raw");
    copy(&fixture_image("two_faces.png"), &raw.join("pair/two.png"));
    p.file(
        "al.toml",
        &experiment(&raw.display().to_string(), "detect_multiple_faces = true"),
    );
    p.ok(&["run", "al.toml"]);
    let out = p.path("runs/al/align/pair");
    assert!(out.join("two_0.png").is_file() && out.join("two_1.png").is_file());
    assert!(!out.join("two.png").exists());
}

#[test]
fn a_raw_celeba_root_becomes_an_aligned_one_without_the_failed_rows() {
    let p = Project::new();
    let raw = p.path("celeba");
    copy(
        &fixture_image("astronaut.png"),
        &raw.join("img_celeba/000001.jpg"),
    );
    copy(
        &fixture_image("coffee.png"),
        &raw.join("img_celeba/000002.jpg"),
    );
    copy(
        &fixture_image("grace_hopper.png"),
        &raw.join("img_celeba/000003.jpg"),
    );
    let names = vaepipe_facedata::CELEBA_ATTRIBUTES.join(" ");
    let row = |n: &str, smile: &str| {
        let mut v = vec!["-1"; 40];
        v[vaepipe_facedata::SMILING] = smile;
        format!("{n} {}\n", v.join(" "))
    };
    std::fs::write(
        raw.join("list_attr_celeba.txt"),
        format!(
            "3\n{names} \n{}{}{}",
            row("000001.jpg", "1"),
            row("000002.jpg", "-1"),
            row("000003.jpg", "1")
        ),
    )
    .unwrap();
    std::fs::write(
        raw.join("list_eval_partition.txt"),
        "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n",
    )
    .unwrap();
    p.file("al.toml", &experiment(&raw.display().to_string(), ""));
    p.ok(&["run", "al.toml"]);
    let out = p.path("runs/al/align");
    let aligned = vaepipe_facedata::CelebA::open(&out).unwrap();
    let rows: Vec<&str> = aligned.rows.iter().map(|r| r.file_name.as_str()).collect();
    assert_eq!(rows, ["000001.jpg", "000003.jpg"], "coffee has no face");
    assert_eq!(aligned.rows[0].image_file, "000001.png");
    assert_eq!(aligned.rows[1].partition, Some(2));
    let failed = std::fs::read_to_string(out.join("failed.txt")).unwrap();
    assert!(failed.starts_with("img_celeba/000002.jpg\t"), "{failed}");
}
