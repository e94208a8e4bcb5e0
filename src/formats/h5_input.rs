//! Opening HDF5 files vaepipe reads but may not have written (facenet's `attribute_vectors.h5`,
//! a colleague's `latents.h5`, a vectors file given to `modify`): each dataset's declared size
//! is checked against the file's size before it is read, so a damaged or hostile header
//! cannot make a read allocate more than the file could hold (an allocation failure aborts the
//! whole process).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Deflate's best ratio is about 1032:1; a filtered (compressed) dataset may be that much
/// larger than the file, an unfiltered one not at all.
const MAX_FILTER_RATIO: u64 = 1032;

/// An HDF5 file opened for reading, with its size on disk.
pub struct H5Input {
    pub file: hdf5::File,
    len: u64,
}

impl H5Input {
    pub fn open(path: &Path) -> Result<Self> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("failed to read {}", path.display()))?
            .len();
        Ok(H5Input {
            file: hdf5::File::open(path)?,
            len,
        })
    }

    /// The dataset `name`, when its declared size fits the file.
    pub fn dataset(&self, name: &str) -> Result<hdf5::Dataset> {
        let dataset = self.file.dataset(name)?;
        let shape = dataset.shape();
        let element = dataset.dtype()?.size() as u64;
        let declared = shape
            .iter()
            .try_fold(element, |n, &d| n.checked_mul(d as u64));
        let ratio = if dataset.filters().is_empty() {
            1
        } else {
            MAX_FILTER_RATIO
        };
        let room = self.len.saturating_mul(ratio);
        match declared {
            Some(bytes) if bytes <= room => Ok(dataset),
            _ => bail!(
                "dataset `{name}` declares shape {shape:?} of {element}-byte values ({} bytes), more than the whole {}-byte file can hold: the file is damaged or was not written by vaepipe or facenet",
                declared.map_or_else(|| "too many".to_string(), |b| b.to_string()),
                self.len
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small file whose `big` dataset declares 10⁵ × 10⁵ f32 (40 GB) and was never written
    /// (HDF5 allocates contiguous storage late, so the file stays a few KB).
    pub(crate) fn file_declaring_40_gb(path: &Path, name: &str) {
        let file = hdf5::File::create(path).unwrap();
        file.new_dataset::<f32>()
            .shape([100_000, 100_000])
            .create(name)
            .unwrap();
        file.close().unwrap();
    }

    #[test]
    fn a_dataset_larger_than_its_file_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.h5");
        file_declaring_40_gb(&path, "big");
        assert!(std::fs::metadata(&path).unwrap().len() < 100_000);
        let input = H5Input::open(&path).unwrap();
        let err = input.dataset("big").unwrap_err().to_string();
        assert!(
            err.contains("`big`") && err.contains("40000000000 bytes"),
            "{err}"
        );

        let file = hdf5::File::create(dir.path().join("ok.h5")).unwrap();
        file.new_dataset::<f64>()
            .shape([3])
            .create("small")
            .unwrap()
            .write_raw(&[1.0, 2.0, 3.0])
            .unwrap();
        file.close().unwrap();
        let input = H5Input::open(&dir.path().join("ok.h5")).unwrap();
        let values: Vec<f64> = input.dataset("small").unwrap().read_raw().unwrap();
        assert_eq!(values, [1.0, 2.0, 3.0]);
    }
}
