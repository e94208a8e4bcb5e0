//! Parity with the original, on fixtures the original's code wrote
//! (`tests/fixtures/mtcnn/`, see its README): OpenCV's and Pillow's resizes on seeded images,
//! and facenet's `detect_face` + `align_dataset_mtcnn.py` on photographs and generated scenes.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::Device;

use super::detect::{detect_faces, DetectParams};
use super::resize::{cv2_area, pil_bilinear, Planar};
use super::{aligned_crop, choose_face, crop::crop_box};
use crate::models::mtcnn;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mtcnn")
}

/// The weights `scripts/fetch-mtcnn.sh` unpacked (bootstrap.sh runs it).
pub fn weights_dir() -> PathBuf {
    let dir = mtcnn::default_weights_dir();
    assert!(
        dir.join("pnet.pt").is_file(),
        "MTCNN weights missing in {}: run scripts/fetch-mtcnn.sh (scripts/bootstrap.sh does)",
        dir.display()
    );
    dir
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn planar<T: Copy + Default>(
    case: &Value,
    key: &str,
    shape: &str,
    to: impl Fn(&Value) -> T,
) -> Planar<T> {
    let s = case[shape].as_array().unwrap();
    Planar {
        height: s[0].as_u64().unwrap() as usize,
        width: s[1].as_u64().unwrap() as usize,
        channels: 3,
        data: case[key].as_array().unwrap().iter().map(to).collect(),
    }
}

#[test]
fn cv2_inter_area_matches_opencv_on_uint8_exactly() {
    let cases = json("resize_cases.json");
    for case in cases["cv2_area_u8"].as_array().unwrap() {
        let src = planar(case, "src", "shape", |v| v.as_u64().unwrap() as u8);
        let want = planar(case, "out", "out_shape", |v| v.as_u64().unwrap() as u8);
        let got = cv2_area(&src, want.height, want.width);
        let diff = got
            .data
            .iter()
            .zip(&want.data)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            diff, 0,
            "{}x{} -> {}x{}: {diff} values differ",
            src.height, src.width, want.height, want.width
        );
    }
}

#[test]
fn cv2_inter_area_matches_opencv_on_float64() {
    let cases = json("resize_cases.json");
    for case in cases["cv2_area_f64"].as_array().unwrap() {
        let src = planar(case, "src", "shape", |v| v.as_f64().unwrap());
        let want = planar(case, "out", "out_shape", |v| v.as_f64().unwrap());
        let got = cv2_area(&src, want.height, want.width);
        let max = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            max < 1e-6,
            "{}x{} -> {}x{}: max difference {max}",
            src.height,
            src.width,
            want.height,
            want.width
        );
    }
}

#[test]
fn pil_bilinear_matches_pillow_exactly() {
    let cases = json("resize_cases.json");
    for case in cases["pil_bilinear_u8"].as_array().unwrap() {
        let src = planar(case, "src", "shape", |v| v.as_u64().unwrap() as u8);
        let want = planar(case, "out", "out_shape", |v| v.as_u64().unwrap() as u8);
        let got = pil_bilinear(&src, want.height, want.width);
        let diff = got
            .data
            .iter()
            .zip(&want.data)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            diff, 0,
            "{}x{} -> {}x{}: {diff} values differ",
            src.height, src.width, want.height, want.width
        );
    }
}

fn load_png(path: &Path) -> Planar<u8> {
    let img = image::open(path).unwrap().to_rgb8();
    Planar {
        height: img.height() as usize,
        width: img.width() as usize,
        channels: 3,
        data: img.into_raw(),
    }
}

#[test]
fn detection_and_alignment_match_facenets_detect_face() {
    let expected = json("expected.json");
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let dir = weights_dir();
    let tensors = mtcnn::read_weights(&dir).unwrap();
    let nets = mtcnn::load(&mut vs, &tensors, &dir).unwrap();
    let d = &expected["detect"];
    let params = DetectParams {
        min_size: d["min_size"].as_f64().unwrap(),
        thresholds: std::array::from_fn(|i| d["thresholds"][i].as_f64().unwrap()),
        factor: d["factor"].as_f64().unwrap(),
    };
    let image_size = expected["align"]["image_size"].as_u64().unwrap() as usize;
    let margin = expected["align"]["margin"].as_u64().unwrap() as u32;
    let boxes_txt = std::fs::read_to_string(fixtures().join("aligned/bounding_boxes.txt")).unwrap();
    let mut report = Vec::new();
    for (name, want) in expected["images"].as_object().unwrap() {
        let img = load_png(&fixtures().join("images").join(format!("{name}.png")));
        let faces = detect_faces(&nets, &img, &params, Device::Cpu);
        let want_faces = want["faces"].as_array().unwrap();
        assert_eq!(faces.len(), want_faces.len(), "{name}: number of faces");
        let (mut box_err, mut mark_err, mut score_err) = (0.0f64, 0.0f64, 0.0f64);
        for (got, w) in faces.iter().zip(want_faces) {
            for k in 0..4 {
                box_err = box_err.max((got.bbox[k] - w["box"][k].as_f64().unwrap()).abs());
            }
            score_err = score_err.max((got.score - w["score"].as_f64().unwrap()).abs());
            for j in 0..5 {
                let (x, y) = got.landmarks[j];
                mark_err = mark_err.max((x - w["landmarks"][j][0].as_f64().unwrap()).abs());
                mark_err = mark_err.max((y - w["landmarks"][j][1].as_f64().unwrap()).abs());
            }
        }
        assert!(box_err <= 1.0, "{name}: boxes differ by {box_err} px");
        assert!(mark_err <= 1.0, "{name}: landmarks differ by {mark_err} px");
        assert!(score_err <= 1e-3, "{name}: scores differ by {score_err}");

        // align_dataset_mtcnn.py's crop box and aligned image.
        let line = boxes_txt
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&format!("photos/{name}.png")))
            .unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(k) = choose_face(&faces, img.width, img.height) else {
            assert_eq!(fields.len(), 1, "{name}: the original aligned a face");
            report.push(format!("{name}: no face (as the original)"));
            continue;
        };
        let b = crop_box(&faces[k], margin, img.width, img.height).unwrap();
        let want_box: Vec<u32> = fields[1..].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(vec![b.x1, b.y1, b.x2, b.y2], want_box, "{name}: crop box");
        let aligned = aligned_crop(&img, &b, image_size);
        let want_img = load_png(&fixtures().join("aligned").join(format!("{name}.png")));
        let mad = aligned
            .data
            .iter()
            .zip(&want_img.data)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / aligned.data.len() as f64;
        assert!(
            mad <= 2.0,
            "{name}: aligned crop differs by {mad} grey levels on average"
        );
        report.push(format!(
            "{name}: {} faces, box {box_err:.2e} px, landmarks {mark_err:.2e} px, score {score_err:.2e}, crop MAD {mad:.3}",
            faces.len()
        ));
    }
    // Shown with --nocapture; the closing note quotes these figures.
    println!("{}", report.join("\n"));
}
