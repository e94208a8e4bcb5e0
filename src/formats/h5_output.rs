//! The one way vaepipe creates an HDF5 file, so that writing the same values twice gives the
//! same bytes (`vaepipe verify` and the fault tests compare output hashes) on every HDF5 we
//! link: Debian's 1.10 and the bundled 2.x of `make dist`.
//!
//! Datasets are already created without modification times (`hdf5-metno` turns
//! `obj_track_times` off for them, as h5py does). The root group is not: HDF5 2.x writes the
//! v18 file format by default, whose version-2 object headers store access, modification,
//! change and birth times, so two writes a second apart differed in the root group's header.
//! Turning time tracking off in the file creation property list (which the root group's
//! creation inherits) removes them. HDF5 1.10 writes version-1 headers, which carry no times,
//! so its bytes do not change.

use std::path::Path;

/// `hdf5::File::create(path)` without object times.
pub fn create(path: &Path) -> hdf5::Result<hdf5::File> {
    untimed().create(path)
}

/// The file options [`create`] uses: object time tracking off for the root group.
fn untimed() -> hdf5::FileBuilder {
    let mut builder = hdf5::File::with_options();
    builder.with_fcpl(|p| p.obj_track_times(false));
    builder
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    fn write(path: &Path) {
        write_file(create(path).unwrap());
    }

    fn write_file(file: hdf5::File) {
        file.new_dataset::<f32>()
            .shape([3])
            .create("x")
            .unwrap()
            .write_raw(&[1.0f32, 2.0, 3.0])
            .unwrap();
        file.close().unwrap();
    }

    #[test]
    fn two_writes_a_second_apart_are_byte_identical() {
        // Timestamps have one-second resolution; HDF5 2.x's root group header held them.
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.h5"), dir.path().join("b.h5"));
        write(&a);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write(&b);
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }

    #[test]
    fn in_hdf5_2s_default_format_two_writes_are_byte_identical_only_without_times() {
        // HDF5 2.x writes the v18 format by default; asking any HDF5 for it reproduces that
        // build's root-group header here. Written twice a second apart: the plain file
        // differs (its header holds times), and the file `create` makes does not.
        let dir = tempfile::tempdir().unwrap();
        let twice = |name: &str, mut builder: hdf5::FileBuilder| {
            builder.with_fapl(|p| p.libver_v18());
            let (a, b) = (
                dir.path().join(format!("{name}-a.h5")),
                dir.path().join(format!("{name}-b.h5")),
            );
            write_file(builder.create(&a).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(1100));
            write_file(builder.create(&b).unwrap());
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
        };
        assert!(
            !twice("plain", hdf5::File::with_options()),
            "the v18 header held no times"
        );
        assert!(twice("untimed", untimed()));
    }

    #[test]
    fn the_root_group_does_not_track_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.h5");
        let file = create(&path).unwrap();
        assert!(!file.fcpl().unwrap().obj_track_times());
    }
}
