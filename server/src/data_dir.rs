//! The node's data directory is private to the user the node runs as:
//! directories 0700 and files 0600. The database holds password hashes and
//! sealed CHAP secrets, and the images hold the initiators' data, so nothing
//! in it is for other local users. Modes are set explicitly rather than left
//! to the umask, and fixed on every start for directories and files that an
//! older version created with looser modes.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) and makes it 0700, also when it existed.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Makes an existing file 0600; a missing file is not an error.
pub fn private_file(path: &Path) -> io::Result<()> {
    match std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates `path` with mode 0600 if it does not exist; leaves it otherwise.
pub fn touch_private(path: &Path) -> io::Result<()> {
    OpenOptions::new().append(true).create(true).mode(FILE_MODE).open(path).map(drop)
}

/// Creates a new file with mode 0600; an existing file is an error
/// (`AlreadyExists`), never opened.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create_new(true).mode(FILE_MODE).open(path)
}

/// Writes a file only the node's user may read (a key, a certificate),
/// whole or not at all: written beside, synced, then renamed into place.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_are_made_private_even_when_they_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn new_files_are_private_and_never_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        create_new_private(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        let again = create_new_private(&path).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        private_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        private_file(&tmp.path().join("missing")).unwrap();
    }
}
