//! Writes the default synthetic dataset: `cargo run -p vaepipe-facedata --example synth -- OUT_DIR
//! [SEED]`, then prints the summary and how long it took (the demo path, without the engine).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().ok_or("usage: synth OUT_DIR [SEED]")?);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let params = vaepipe_facedata::SynthParams::default();
    let t = std::time::Instant::now();
    let summary = vaepipe_facedata::generate(&out, &params, seed)?;
    let secs = t.elapsed().as_secs_f64();
    let n = summary.celeba_images + summary.casia_images;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    println!(
        "{n} images in {secs:.1} s ({:.0} images/s)",
        n as f64 / secs
    );
    Ok(())
}
