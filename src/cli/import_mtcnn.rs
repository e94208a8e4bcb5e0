//! `vaepipe import-weights --what mtcnn DIR -o mtcnn.safetensors`: MTCNN's three nets
//! (facenet-pytorch's `pnet.pt`, `rnet.pt`, `onet.pt`, the same weights as facenet's
//! `det1-3.npy`) into one safetensors file under facenet's variable names, checked against the
//! nets `align` builds (every variable present with its shape).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tch::nn::VarStore;
use tch::Device;

use crate::models::mtcnn;

pub fn run(source: &Path, output: &Path) -> Result<ExitCode> {
    let tensors = mtcnn::read_weights(source).with_context(|| {
        format!(
            "cannot read MTCNN weights from {} (expected a directory with pnet.pt, rnet.pt, onet.pt, as scripts/fetch-mtcnn.sh unpacks them)",
            source.display()
        )
    })?;
    let mut vs = VarStore::new(Device::Cpu);
    mtcnn::load(&mut vs, &tensors, source)?;
    vs.save(output)
        .with_context(|| format!("failed to write {}", output.display()))?;
    println!(
        "wrote {} ({} MTCNN tensors with facenet's names)",
        output.display(),
        vs.variables().len()
    );
    Ok(ExitCode::SUCCESS)
}
