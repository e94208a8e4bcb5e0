//! `attribute_vectors.h5` in facenet's layout, so a user of the original reads it with h5py
//! exactly as `modify_attribute.py` does (models.md §2.1):
//!
//! | dataset | dtype | shape | meaning |
//! |---|---|---|---|
//! | `latent_vars` | f64 | [N, L] | the latents the vectors were computed from (sampled z, as the original) |
//! | `attributes` | f64 | [N, 40] | CelebA labels, ±1.0 |
//! | `fields` | fixed-length ASCII (`S19`) | [40] | attribute names |
//! | `attribute_vectors` | f32 | [40, L] | mean latent with the attribute minus mean without |
//!
//! vaepipe adds `latent_means` (f64 [N, L]), `file_names` (variable-length ASCII [N]) and
//! `vector_defined` (u8 [40]: 0 where an attribute had no positives or no negatives, so its
//! vector is zero rather than NaN). Readers of the original ignore the extras; `read` accepts
//! files without them (the original's own output).

use std::path::Path;

use anyhow::{bail, Context, Result};
use hdf5::types::{FixedAscii, VarLenAscii};

/// Longest CelebA attribute name is `Mouth_Slightly_Open`, 19 bytes: numpy stores the
/// original's list of names as `S19` (models.md says S17 / Receding_Hairline; that is 17, not
/// the longest).
pub const FIELD_LEN: usize = 19;

/// The contents of an `attribute_vectors.h5`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeVectors {
    /// Latent size L.
    pub latent_size: usize,
    pub fields: Vec<String>,
    /// [N × L]
    pub latent_vars: Vec<f64>,
    /// [N × L], when known.
    pub latent_means: Option<Vec<f64>>,
    /// [N × fields.len()], ±1.0
    pub attributes: Vec<f64>,
    /// [fields.len() × L]
    pub attribute_vectors: Vec<f32>,
    pub file_names: Option<Vec<String>>,
    /// One flag per field; `None` for files written by the original.
    pub vector_defined: Option<Vec<bool>>,
}

/// Writes attribute names as the original's fixed-length ASCII `fields` dataset (`S19`).
pub(crate) fn write_fields(file: &hdf5::File, fields: &[String]) -> hdf5::Result<()> {
    let names: Vec<FixedAscii<FIELD_LEN>> = fields
        .iter()
        .map(|s| FixedAscii::from_ascii(s.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| hdf5::Error::from(e.to_string().as_str()))?;
    file.new_dataset::<FixedAscii<FIELD_LEN>>()
        .shape([names.len()])
        .create("fields")?
        .write_raw(&names)
}

impl AttributeVectors {
    pub fn rows(&self) -> usize {
        self.latent_vars
            .len()
            .checked_div(self.latent_size)
            .unwrap_or(0)
    }

    /// The vector of one attribute by name.
    pub fn vector(&self, field: &str) -> Option<&[f32]> {
        let i = self.fields.iter().position(|f| f == field)?;
        Some(&self.attribute_vectors[i * self.latent_size..(i + 1) * self.latent_size])
    }

    fn check(&self) -> Result<()> {
        let (n, l, f) = (self.rows(), self.latent_size, self.fields.len());
        if self.latent_vars.len() != n * l
            || self.attributes.len() != n * f
            || self.attribute_vectors.len() != f * l
            || self.latent_means.as_ref().is_some_and(|m| m.len() != n * l)
            || self.file_names.as_ref().is_some_and(|m| m.len() != n)
            || self.vector_defined.as_ref().is_some_and(|m| m.len() != f)
        {
            bail!("attribute vectors are inconsistent: {n} rows, latent size {l}, {f} fields");
        }
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        self.check()?;
        let write = || -> hdf5::Result<()> {
            let file = super::h5_output::create(path)?;
            let (n, l, f) = (self.rows(), self.latent_size, self.fields.len());
            file.new_dataset::<f64>()
                .shape([n, l])
                .create("latent_vars")?
                .write_raw(&self.latent_vars)?;
            file.new_dataset::<f64>()
                .shape([n, f])
                .create("attributes")?
                .write_raw(&self.attributes)?;
            write_fields(&file, &self.fields)?;
            file.new_dataset::<f32>()
                .shape([f, l])
                .create("attribute_vectors")?
                .write_raw(&self.attribute_vectors)?;
            if let Some(means) = &self.latent_means {
                file.new_dataset::<f64>()
                    .shape([n, l])
                    .create("latent_means")?
                    .write_raw(means)?;
            }
            if let Some(names) = &self.file_names {
                let names: Vec<VarLenAscii> = names
                    .iter()
                    .map(|s| VarLenAscii::from_ascii(s.as_bytes()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| hdf5::Error::from(e.to_string().as_str()))?;
                file.new_dataset::<VarLenAscii>()
                    .shape([n])
                    .create("file_names")?
                    .write_raw(&names)?;
            }
            if let Some(defined) = &self.vector_defined {
                let flags: Vec<u8> = defined.iter().map(|&d| u8::from(d)).collect();
                file.new_dataset::<u8>()
                    .shape([f])
                    .create("vector_defined")?
                    .write_raw(&flags)?;
            }
            file.close()
        };
        write().with_context(|| format!("failed to write {}", path.display()))
    }

    /// Reads a file written by vaepipe or by facenet's `calculate_attribute_vectors.py`.
    pub fn read(path: &Path) -> Result<Self> {
        let read = || -> Result<Self> {
            let file = super::h5_input::H5Input::open(path)?;
            let dataset = |name: &str| {
                file.dataset(name).with_context(|| {
                    format!("it has no `{name}` dataset (is it an attribute_vectors.h5?)")
                })
            };
            let vectors = dataset("attribute_vectors")?;
            let shape = vectors.shape();
            let [f, l] = shape[..] else {
                bail!("`attribute_vectors` has shape {shape:?}, expected [fields, latent size]")
            };
            // The original wrote Python 2 str lists: fixed-length ASCII. Accept any length up to 64.
            let fields: Vec<String> = match dataset("fields")?.read_raw::<FixedAscii<FIELD_LEN>>() {
                Ok(v) => v.iter().map(|s| s.as_str().to_owned()).collect(),
                Err(_) => dataset("fields")?
                    .read_raw::<FixedAscii<64>>()?
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
            };
            if fields.len() != f {
                bail!(
                    "`fields` has {} names but `attribute_vectors` has {f} rows",
                    fields.len()
                );
            }
            // Absent is fine; present but larger than the file is not.
            let optional = |name: &str| -> Result<Option<hdf5::Dataset>> {
                match file.file.dataset(name) {
                    Ok(_) => file.dataset(name).map(Some),
                    Err(_) => Ok(None),
                }
            };
            let out = AttributeVectors {
                latent_size: l,
                fields,
                latent_vars: dataset("latent_vars")?.read_raw::<f64>()?,
                latent_means: optional("latent_means")?
                    .map(|d| d.read_raw::<f64>())
                    .transpose()?,
                attributes: dataset("attributes")?.read_raw::<f64>()?,
                attribute_vectors: vectors.read_raw::<f32>()?,
                file_names: optional("file_names")?
                    .map(|d| {
                        d.read_raw::<VarLenAscii>()
                            .map(|v| v.iter().map(|s| s.as_str().to_owned()).collect())
                    })
                    .transpose()?,
                vector_defined: optional("vector_defined")?
                    .map(|d| {
                        d.read_raw::<u8>()
                            .map(|v| v.iter().map(|&b| b != 0).collect())
                    })
                    .transpose()?,
            };
            out.check()?;
            Ok(out)
        };
        read().with_context(|| format!("failed to read {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AttributeVectors {
        AttributeVectors {
            latent_size: 3,
            fields: vec!["Smiling".into(), "Receding_Hairline".into()],
            latent_vars: vec![0.5, -1.0, 2.0, 1.5, 0.0, -2.25],
            latent_means: Some(vec![0.25, -1.0, 2.0, 1.0, 0.0, -2.0]),
            attributes: vec![1.0, -1.0, -1.0, -1.0],
            attribute_vectors: vec![-1.0, -1.0, 4.25, 0.0, 0.0, 0.0],
            file_names: Some(vec!["000001.jpg".into(), "000002.jpg".into()]),
            vector_defined: Some(vec![true, false]),
        }
    }

    #[test]
    fn round_trips_values_and_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attribute_vectors.h5");
        let written = sample();
        written.write(&path).unwrap();
        let read = AttributeVectors::read(&path).unwrap();
        assert_eq!(read, written);

        // The dtypes and shapes h5py will see.
        let file = hdf5::File::open(&path).unwrap();
        let ds = file.dataset("latent_vars").unwrap();
        assert_eq!(ds.shape(), vec![2, 3]);
        assert!(ds.dtype().unwrap().is::<f64>());
        assert!(file
            .dataset("attribute_vectors")
            .unwrap()
            .dtype()
            .unwrap()
            .is::<f32>());
        assert!(file
            .dataset("attributes")
            .unwrap()
            .dtype()
            .unwrap()
            .is::<f64>());
        let fields = file.dataset("fields").unwrap();
        assert_eq!(fields.dtype().unwrap().size(), FIELD_LEN);
        assert_eq!(read.vector("Smiling"), Some(&[-1.0f32, -1.0, 4.25][..]));
    }

    #[test]
    fn writing_the_same_values_twice_gives_the_same_bytes() {
        // No object timestamps: `vaepipe verify` compares output hashes.
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.h5"), dir.path().join("b.h5"));
        sample().write(&a).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        sample().write(&b).unwrap();
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }

    #[test]
    fn a_field_longer_than_s19_is_an_error_not_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = sample();
        bad.fields[0] = "A_Much_Longer_Attribute_Name".into();
        assert!(bad.write(&dir.path().join("x.h5")).is_err());
    }

    #[test]
    fn a_vectors_file_declaring_more_than_it_holds_is_refused_before_reading() {
        // `modify --vectors` and `render-attribute` read this file; a header declaring 40 GB
        // aborted the process in the allocation before.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attribute_vectors.h5");
        crate::formats::h5_input::tests::file_declaring_40_gb(&path, "attribute_vectors");
        let err = format!("{:#}", AttributeVectors::read(&path).unwrap_err());
        assert!(err.contains("more than the whole"), "{err}");
    }

    #[test]
    fn inconsistent_shapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = sample();
        bad.attribute_vectors.pop();
        let err = bad.write(&dir.path().join("x.h5")).unwrap_err();
        assert!(format!("{err:#}").contains("inconsistent"), "{err:#}");
    }
}
