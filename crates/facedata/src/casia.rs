//! Identity-folder datasets: CASIA-WebFace as facenet's `align_dataset_mtcnn.py` writes it
//! (`<root>/<7-digit id>/<nnn>.png`, formats.md §6.2), or any `<root>/<class>/<image>` tree.
//!
//! Like `facenet.get_dataset`, identities are the sorted sub-directories and top-level files are
//! ignored; unlike it, the images inside each identity are sorted too, so the image order never
//! depends on the filesystem. Files that are not images (`bounding_boxes_*.txt`,
//! `revision_info.txt`, stray notes) are skipped and counted, not errors. Decoding is left to
//! `align_check.rs` and `batches.rs`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One identity folder with its images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Folder name (`0000045`).
    pub name: String,
    /// Image file names inside the folder, sorted.
    pub images: Vec<String>,
}

/// An opened identity-folder dataset.
#[derive(Clone, Debug)]
pub struct IdentityFolders {
    /// The root directory.
    pub dir: PathBuf,
    /// Identities sorted by folder name (empty folders kept, with no images).
    pub identities: Vec<Identity>,
    /// Non-image files that were skipped, relative to `dir`, sorted.
    pub ignored: Vec<String>,
}

impl IdentityFolders {
    /// Lists `dir`: every sub-directory is an identity, every image file inside it an image.
    pub fn open(dir: &Path) -> Result<IdentityFolders> {
        let mut identities = Vec::new();
        let mut ignored = Vec::new();
        for (name, path, is_dir) in list_dir(dir)? {
            if !is_dir {
                ignored.push(name);
                continue;
            }
            let mut images = Vec::new();
            for (file, fpath, sub_is_dir) in list_dir(&path)? {
                if !sub_is_dir && crate::has_image_extension(&fpath) {
                    images.push(file);
                } else {
                    ignored.push(format!("{name}/{file}"));
                }
            }
            identities.push(Identity { name, images });
        }
        ignored.sort();
        Ok(IdentityFolders {
            dir: dir.to_owned(),
            identities,
            ignored,
        })
    }

    /// Number of images over all identities.
    pub fn image_count(&self) -> usize {
        self.identities.iter().map(|i| i.images.len()).sum()
    }

    /// Every image as (identity index, path), identities in order, images in order.
    pub fn images(&self) -> Vec<(usize, PathBuf)> {
        self.identities
            .iter()
            .enumerate()
            .flat_map(|(k, id)| {
                id.images
                    .iter()
                    .map(move |f| (k, self.dir.join(&id.name).join(f)))
            })
            .collect()
    }

    /// Every image path, in [`IdentityFolders::images`] order.
    pub fn image_paths(&self) -> Vec<PathBuf> {
        self.images().into_iter().map(|(_, p)| p).collect()
    }
}

/// Sorted (name, path, is_dir) entries of a directory. Names that are not UTF-8 are an error
/// naming the path, since every later report prints them.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| Error::Dataset {
                path: path.clone(),
                message: "file name is not valid UTF-8".into(),
            })?;
        // `metadata` follows symlinks, so a linked identity folder counts as a folder.
        let is_dir = std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        out.push((name, path, is_dir));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_identities_and_images_with_ignored_files_counted() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for (id, files) in [
            ("0000099", vec!["002.png", "001.png", "notes.txt"]),
            ("0000045", vec!["010.png", "002.PNG"]),
            ("0000100", vec![]),
        ] {
            std::fs::create_dir(root.join(id)).unwrap();
            for f in files {
                std::fs::write(root.join(id).join(f), b"").unwrap();
            }
        }
        std::fs::write(root.join("bounding_boxes_12345.txt"), b"").unwrap();
        std::fs::write(root.join("revision_info.txt"), b"").unwrap();
        let f = IdentityFolders::open(root).unwrap();
        let names: Vec<&str> = f.identities.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["0000045", "0000099", "0000100"]);
        assert_eq!(f.identities[0].images, ["002.PNG", "010.png"]);
        assert_eq!(f.identities[1].images, ["001.png", "002.png"]);
        assert_eq!(
            f.ignored,
            [
                "0000099/notes.txt",
                "bounding_boxes_12345.txt",
                "revision_info.txt"
            ]
        );
        assert_eq!(f.image_count(), 4);
        let imgs = f.images();
        assert_eq!(imgs[2].0, 1);
        assert!(imgs[2].1.ends_with("0000099/001.png"));
    }

    #[test]
    fn missing_root_names_the_path() {
        let e = IdentityFolders::open(Path::new("/nonexistent/casia")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/casia: "), "{e}");
    }
}
