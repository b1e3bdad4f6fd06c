//! What a volume is on disk, in `<data dir>/volumes/`: its image
//! `<name>.img`, the file where the engine keeps its APTPL reservations
//! (`<name>.img.reservations.toml`, SPC-4 §5.13.5), on a replicated volume's
//! primary the marks it keeps of its replicas (`<name>.img.placement.toml`),
//! and the temporary files the engine writes those through before renaming
//! them (`….toml.tmp`).
//!
//! A volume's files are created and removed together, here and nowhere else:
//! an image is created exclusively (mode 0600), so a file left by an earlier
//! volume of the same name (a delete that failed, a crash) is an error and
//! never becomes the new volume's data; and a delete removes every file, so a
//! new volume cannot inherit the old one's registrations.

use std::io;
use std::path::{Path, PathBuf};

use crate::data_dir;

#[derive(Debug, thiserror::Error)]
pub enum VolumeFileError {
    #[error("files of an earlier volume named {volume} are still in the volumes directory: {}", names(.files))]
    Leftovers { volume: String, files: Vec<PathBuf> },
    #[error("cannot create {}: {source}", .path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot remove {}: {source}", .path.display())]
    Remove { path: PathBuf, source: io::Error },
}

fn names(files: &[PathBuf]) -> String {
    files.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
}

/// The directory of the images.
pub fn volumes_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("volumes")
}

/// The image of a volume.
pub fn image_path(data_dir: &Path, volume: &str) -> PathBuf {
    volumes_dir(data_dir).join(format!("{volume}.img"))
}

/// Where the engine keeps the volume's state (APTPL reservations, mode parameters).
pub fn reservation_path(data_dir: &Path, volume: &str) -> PathBuf {
    volumes_dir(data_dir).join(format!("{volume}.img.reservations.toml"))
}

/// Every file that belongs to the volume, the image first.
fn all_files(data_dir: &Path, volume: &str) -> [PathBuf; 5] {
    let reservations = reservation_path(data_dir, volume);
    let image = image_path(data_dir, volume);
    // A replicated volume's primary keeps its marks of the replicas here.
    let marks = target_engine::replication::volumes::marks_file(&image);
    // The engine writes these files to a temporary name, then renames it
    // (target-engine `scsi::unit_state::write`); a crash in between leaves it.
    let tmp = |p: &Path| {
        let mut t = p.to_path_buf().into_os_string();
        t.push(".tmp");
        PathBuf::from(t)
    };
    let (reservations_tmp, marks_tmp) = (tmp(&reservations), tmp(&marks));
    [image, reservations, reservations_tmp, marks, marks_tmp]
}

/// Files of the volume that exist now.
pub fn existing_files(data_dir: &Path, volume: &str) -> Vec<PathBuf> {
    all_files(data_dir, volume).into_iter().filter(|p| p.symlink_metadata().is_ok()).collect()
}

/// Creates the sparse image of a new volume, mode 0600. Any file of an
/// earlier volume with this name makes it fail, and nothing is touched.
pub fn create(data_dir: &Path, volume: &str, size: u64) -> Result<(), VolumeFileError> {
    let leftovers = existing_files(data_dir, volume);
    if !leftovers.is_empty() {
        return Err(VolumeFileError::Leftovers { volume: volume.to_string(), files: leftovers });
    }
    let path = image_path(data_dir, volume);
    let file = data_dir::create_new_private(&path).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => {
            VolumeFileError::Leftovers { volume: volume.to_string(), files: vec![path.clone()] }
        }
        _ => VolumeFileError::Create { path: path.clone(), source },
    })?;
    if let Err(source) = file.set_len(size).and_then(|_| file.sync_all()) {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(VolumeFileError::Create { path, source });
    }
    Ok(())
}

/// Whether the image can go: it is a regular file, or gone already. Checked
/// before a delete is proposed, so that a volume whose image would stay is
/// kept (the files themselves go once the delete is committed).
pub fn check_removable(data_dir: &Path, volume: &str) -> Result<(), VolumeFileError> {
    let path = image_path(data_dir, volume);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if !m.is_file() => {
            Err(VolumeFileError::Remove { path, source: io::Error::other("it is not a regular file") })
        }
        _ => Ok(()),
    }
}

/// Removes the image; a missing image is not an error.
pub fn remove_image(data_dir: &Path, volume: &str) -> Result<(), VolumeFileError> {
    remove(&image_path(data_dir, volume))
}

/// Removes the files that remain once the image is gone (reservations and
/// the temporary file). Tries each; returns the first failure.
pub fn remove_rest(data_dir: &Path, volume: &str) -> Result<(), VolumeFileError> {
    let [_, rest @ ..] = all_files(data_dir, volume);
    // Every file is tried before the first failure is reported.
    let results: Vec<_> = rest.iter().map(|p| remove(p)).collect();
    results.into_iter().collect()
}

fn remove(path: &Path) -> Result<(), VolumeFileError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(VolumeFileError::Remove { path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn data() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(volumes_dir(d.path())).unwrap();
        d
    }

    #[test]
    fn an_image_is_created_sparse_private_and_only_once() {
        let d = data();
        create(d.path(), "v", 1 << 30).unwrap();
        let meta = std::fs::metadata(image_path(d.path(), "v")).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let again = create(d.path(), "v", 4096).unwrap_err();
        assert!(matches!(again, VolumeFileError::Leftovers { .. }), "{again}");
        assert_eq!(std::fs::metadata(image_path(d.path(), "v")).unwrap().len(), 1 << 30, "left alone");
    }

    #[test]
    fn a_leftover_reservation_file_blocks_the_name() {
        let d = data();
        std::fs::write(reservation_path(d.path(), "v"), "aptpl = true\n").unwrap();
        let e = create(d.path(), "v", 4096).unwrap_err();
        assert!(e.to_string().contains("v.img.reservations.toml"), "{e}");
        assert!(!image_path(d.path(), "v").exists());
    }

    #[test]
    fn removing_takes_every_file_and_reports_what_it_cannot() {
        let d = data();
        create(d.path(), "v", 4096).unwrap();
        for p in &all_files(d.path(), "v")[1..] {
            std::fs::write(p, "x").unwrap();
        }
        // Another volume whose name starts alike keeps its files.
        create(d.path(), "v.img.x", 4096).unwrap();
        remove_image(d.path(), "v").unwrap();
        remove_rest(d.path(), "v").unwrap();
        assert!(existing_files(d.path(), "v").is_empty());
        assert_eq!(existing_files(d.path(), "v.img.x").len(), 1);
        remove_image(d.path(), "v").unwrap();

        // A directory in place of a file cannot be removed as one, even by root.
        std::fs::create_dir(reservation_path(d.path(), "w")).unwrap();
        std::fs::write(reservation_path(d.path(), "w").join("inside"), "x").unwrap();
        let e = remove_rest(d.path(), "w").unwrap_err();
        assert!(e.to_string().contains("w.img.reservations.toml"), "{e}");
    }
}
