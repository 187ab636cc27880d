//! Private files: 0700 directories, atomic 0600 writes, advisory lock files.
//!
//! Everything rdsconn writes to disk (the CA cache today; client option files
//! and token caches later) goes through here so that the rules hold in one
//! place: a reader never sees a half-written file (temp file in the same
//! directory + fsync + rename), nobody else can read what we wrote, and
//! concurrent runs sharing a directory serialise through a lock file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (and parents) mode 0700 if it is missing. An existing
/// directory must already be private: ours (the effective user's) and
/// mode 0700. Anything else (`/tmp`, a shared directory) is refused, never
/// changed: its mode belongs to whoever made it.
pub(crate) fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() || meta.uid() != me || mode != 0o700 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "not a private directory (owner uid {}, mode {mode:o}; rdsconn needs one of its own, mode 700): use a new directory, which rdsconn creates, or chmod 700 one of yours",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Where rdsconn puts files and sockets only the user may see:
/// `$XDG_RUNTIME_DIR` when there is one (a per-user tmpfs), else the temp
/// directory.
pub(crate) fn private_base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// A fresh directory only this user can enter (0700) in [`private_base`],
/// removed on drop: for the sockets of rdsconn's own sessions and the
/// hand-off's proxy.
pub(crate) fn private_dir() -> io::Result<tempfile::TempDir> {
    let base = private_base();
    tempfile::Builder::new()
        .prefix("rdsconn-")
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating a private directory in {}: {e}", base.display()),
            )
        })
}

/// Replaces `path` with `contents` atomically; the new file is mode 0600.
///
/// The temp file lives next to `path` so the final rename never crosses a
/// file system; it is removed again if anything fails before the rename.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".rdsconn-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable; failure here loses nothing visible.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// An advisory lock on a file, released when dropped.
#[derive(Debug)]
pub(crate) struct Lock(File);

impl Lock {
    /// Blocks until this process holds the exclusive lock on `path`.
    pub(crate) fn exclusive(path: &Path) -> io::Result<Self> {
        let file = open_lock_file(path)?;
        file.lock()?;
        Ok(Self(file))
    }

    /// Blocks until this process holds a shared (reader) lock on `path`.
    pub(crate) fn shared(path: &Path) -> io::Result<Self> {
        let file = open_lock_file(path)?;
        file.lock_shared()?;
        Ok(Self(file))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_creates_0600_file_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.pem");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "f.pem")
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn the_private_directory_is_closed_to_others() {
        let dir = private_dir().unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_missing_private_dir_is_created_0700_and_an_open_one_refused_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        ensure_private_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&sub).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
}
