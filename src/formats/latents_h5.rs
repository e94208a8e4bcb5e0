//! `latents.h5`, what `encode` stores: per image of a CelebA-layout set, in sorted file-name
//! order, the sampled latent (as the original), the encoder's mean, the 40 labels and the
//! partition. Same dataset names and dtypes as `attribute_vectors.h5` where they overlap.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hdf5::types::{FixedAscii, VarLenAscii};
use hdf5::H5Type;

use super::attribute_vectors_h5::{write_fields, FIELD_LEN};

#[derive(Debug, Clone, PartialEq)]
pub struct LatentSet {
    pub latent_size: usize,
    pub file_names: Vec<String>,
    pub fields: Vec<String>,
    /// [N × F], ±1.0
    pub attributes: Vec<f64>,
    /// One per row: 0 train, 1 validation, 2 test (empty when the set has no partition file).
    pub partition: Vec<u8>,
    /// [N × L] sampled z
    pub latent_vars: Vec<f64>,
    /// [N × L] encoder means
    pub latent_means: Vec<f64>,
}

/// What `latents.h5` holds, borrowed and in any element types HDF5 converts exactly to the
/// file's `f64` (`encode` keeps its latents as the `f32` the encoder produced and its labels as
/// `i8`, half and an eighth of the memory; the file's bytes are the same as from `f64`).
pub struct LatentRows<'a, Z, A> {
    pub latent_size: usize,
    pub file_names: &'a [String],
    pub fields: &'a [String],
    /// [N × F], ±1
    pub attributes: &'a [A],
    pub partition: &'a [u8],
    /// [N × L] sampled z
    pub latent_vars: &'a [Z],
    /// [N × L] encoder means
    pub latent_means: &'a [Z],
}

impl<Z: H5Type, A: H5Type> LatentRows<'_, Z, A> {
    pub fn write(&self, path: &Path) -> Result<()> {
        let (n, l, f) = (self.file_names.len(), self.latent_size, self.fields.len());
        if self.latent_vars.len() != n * l
            || self.latent_means.len() != n * l
            || self.attributes.len() != n * f
        {
            bail!("latent set is inconsistent: {n} rows, latent size {l}, {f} fields");
        }
        let write = || -> Result<()> {
            let file = super::h5_output::create(path)?;
            file.new_dataset::<f64>()
                .shape([n, l])
                .create("latent_vars")?
                .write_raw(self.latent_vars)?;
            file.new_dataset::<f64>()
                .shape([n, l])
                .create("latent_means")?
                .write_raw(self.latent_means)?;
            file.new_dataset::<f64>()
                .shape([n, f])
                .create("attributes")?
                .write_raw(self.attributes)?;
            write_fields(&file, self.fields)?;
            let names: Vec<VarLenAscii> = self
                .file_names
                .iter()
                .map(|s| VarLenAscii::from_ascii(s.as_bytes()))
                .collect::<Result<_, _>>()?;
            file.new_dataset::<VarLenAscii>()
                .shape([n])
                .create("file_names")?
                .write_raw(&names)?;
            file.new_dataset::<u8>()
                .shape([self.partition.len()])
                .create("partition")?
                .write_raw(self.partition)?;
            file.close()?;
            Ok(())
        };
        write().with_context(|| format!("failed to write {}", path.display()))
    }
}

impl LatentSet {
    pub const FILE: &'static str = "latents.h5";

    pub fn rows(&self) -> usize {
        self.file_names.len()
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        LatentRows {
            latent_size: self.latent_size,
            file_names: &self.file_names,
            fields: &self.fields,
            attributes: &self.attributes,
            partition: &self.partition,
            latent_vars: &self.latent_vars,
            latent_means: &self.latent_means,
        }
        .write(path)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let read = || -> Result<Self> {
            let file = super::h5_input::H5Input::open(path)?;
            let means = file.dataset("latent_means")?;
            let shape = means.shape();
            let [_, l] = shape[..] else {
                bail!("`latent_means` has shape {shape:?}, expected [rows, latent size]")
            };
            Ok(LatentSet {
                latent_size: l,
                file_names: file
                    .dataset("file_names")?
                    .read_raw::<VarLenAscii>()?
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
                fields: file
                    .dataset("fields")?
                    .read_raw::<FixedAscii<FIELD_LEN>>()?
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
                attributes: file.dataset("attributes")?.read_raw()?,
                partition: file.dataset("partition")?.read_raw()?,
                latent_vars: file.dataset("latent_vars")?.read_raw()?,
                latent_means: means.read_raw()?,
            })
        };
        read().with_context(|| {
            format!(
                "failed to read {} (is it an `encode` artifact?)",
                path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latents_file_declaring_more_than_it_holds_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LatentSet::FILE);
        crate::formats::h5_input::tests::file_declaring_40_gb(&path, "latent_means");
        let err = format!("{:#}", LatentSet::read(&path).unwrap_err());
        assert!(
            err.contains("`latent_means`") && err.contains("more than the whole"),
            "{err}"
        );
    }

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let set = LatentSet {
            latent_size: 2,
            file_names: vec!["000001.jpg".into(), "000002.jpg".into()],
            fields: vec!["Receding_Hairline".into()],
            attributes: vec![1.0, -1.0],
            partition: vec![0, 2],
            latent_vars: vec![0.1, 0.2, 0.3, 0.4],
            latent_means: vec![0.0, 0.25, 0.5, 0.75],
        };
        let path = dir.path().join(LatentSet::FILE);
        set.write(&path).unwrap();
        assert_eq!(LatentSet::read(&path).unwrap(), set);
    }

    /// `encode` writes `f32` latents and `i8` labels into the `f64` datasets: the file must be
    /// byte for byte the one the `f64` values give, so later stages read the same numbers.
    #[test]
    fn f32_latents_and_i8_labels_give_the_bytes_of_f64() {
        let dir = tempfile::tempdir().unwrap();
        let (n, l) = (5, 3);
        let z: Vec<f32> = (0..n * l).map(|i| (i as f32 * 0.37).sin() / 3.0).collect();
        let m: Vec<f32> = (0..n * l).map(|i| (i as f32 * 1.91).cos() * 7.0).collect();
        let labels: Vec<i8> = (0..n * 2)
            .map(|i| if i % 3 == 0 { 1 } else { -1 })
            .collect();
        let names: Vec<String> = (1..=n).map(|i| format!("{i:06}.jpg")).collect();
        let fields = vec!["Smiling".to_owned(), "Male".to_owned()];
        let partition = vec![0, 0, 1, 2, 2];
        let narrow = dir.path().join("narrow.h5");
        LatentRows {
            latent_size: l,
            file_names: &names,
            fields: &fields,
            attributes: &labels,
            partition: &partition,
            latent_vars: &z,
            latent_means: &m,
        }
        .write(&narrow)
        .unwrap();
        let wide = LatentSet {
            latent_size: l,
            file_names: names.clone(),
            fields: fields.clone(),
            attributes: labels.iter().map(|&v| f64::from(v)).collect(),
            partition: partition.clone(),
            latent_vars: z.iter().map(|&v| f64::from(v)).collect(),
            latent_means: m.iter().map(|&v| f64::from(v)).collect(),
        };
        let wide_path = dir.path().join("wide.h5");
        wide.write(&wide_path).unwrap();
        assert_eq!(
            std::fs::read(&narrow).unwrap(),
            std::fs::read(&wide_path).unwrap()
        );
        assert_eq!(LatentSet::read(&narrow).unwrap(), wide);
    }
}
