//! `logs.h5`, facenet's training log: four float64 1-D series of length = steps so far,
//! rewritten whole at every save (models.md §1.6 item 18), so a user's h5py plotting script
//! for the original reads vaepipe's runs unchanged.

use std::path::Path;

use anyhow::{Context, Result};

/// Per-step loss history. Index i is step i+1.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossHistory {
    pub total_loss: Vec<f64>,
    pub reconstruction_loss: Vec<f64>,
    pub kl_loss: Vec<f64>,
    pub learning_rate: Vec<f64>,
}

impl LossHistory {
    pub fn push(&mut self, total: f64, reconstruction: f64, kl: f64, learning_rate: f64) {
        self.total_loss.push(total);
        self.reconstruction_loss.push(reconstruction);
        self.kl_loss.push(kl);
        self.learning_rate.push(learning_rate);
    }

    pub fn len(&self) -> usize {
        self.total_loss.len()
    }

    pub fn is_empty(&self) -> bool {
        self.total_loss.is_empty()
    }

    /// Keeps the first `steps` entries (a resumed run drops what came after its checkpoint).
    pub fn truncate(&mut self, steps: usize) {
        for series in [
            &mut self.total_loss,
            &mut self.reconstruction_loss,
            &mut self.kl_loss,
            &mut self.learning_rate,
        ] {
            series.truncate(steps);
        }
    }

    pub fn write_h5(&self, path: &Path) -> Result<()> {
        let write = || -> hdf5::Result<()> {
            let file = super::h5_output::create(path)?;
            for (name, series) in [
                ("total_loss", &self.total_loss),
                ("reconstruction_loss", &self.reconstruction_loss),
                ("kl_loss", &self.kl_loss),
                ("learning_rate", &self.learning_rate),
            ] {
                file.new_dataset::<f64>()
                    .shape([series.len()])
                    .create(name)?
                    .write_raw(series)?;
            }
            file.close()
        };
        write().with_context(|| format!("failed to write {}", path.display()))
    }

    pub fn read_h5(path: &Path) -> Result<Self> {
        let read = || -> hdf5::Result<Self> {
            let file = hdf5::File::open(path)?;
            let series = |name: &str| file.dataset(name)?.read_raw::<f64>();
            Ok(LossHistory {
                total_loss: series("total_loss")?,
                reconstruction_loss: series("reconstruction_loss")?,
                kl_loss: series("kl_loss")?,
                learning_rate: series("learning_rate")?,
            })
        };
        read().with_context(|| format!("failed to read {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_four_float64_series_of_step_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.h5");
        let mut h = LossHistory::default();
        h.push(3.5, 3.0, 1.0, 2e-4);
        h.push(2.5, 2.0, 1.0, 2e-4);
        h.write_h5(&path).unwrap();
        let file = hdf5::File::open(&path).unwrap();
        for name in [
            "total_loss",
            "reconstruction_loss",
            "kl_loss",
            "learning_rate",
        ] {
            let ds = file.dataset(name).unwrap();
            assert_eq!(ds.shape(), vec![2], "{name}");
            assert!(ds.dtype().unwrap().is::<f64>(), "{name}");
        }
        assert_eq!(LossHistory::read_h5(&path).unwrap(), h);
        h.truncate(1);
        assert_eq!(h.kl_loss, vec![1.0]);
    }
}
