//! Files and directories only the gateway's own user may read: the SQLite database (and its WAL),
//! stored media, the generated staff key.
//!
//! They hold end users' conversations and files, and a key that signs staff tokens; a copy readable
//! by every local user (the usual 0644 of a new file) would hand all of that to anyone with a shell
//! on the machine or a backup of it. New ones are created owner-only, and ones found readable by
//! others are tightened at start, with a warning.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

/// Owner read and write.
#[cfg(unix)]
pub const FILE_MODE: u32 = 0o600;
/// Owner read, write and enter.
#[cfg(unix)]
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) if needed, owner-only, and tightens it if others may read it.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        tighten(dir, DIR_MODE)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

/// Creates `path` empty and owner-only unless it exists; an existing file readable by others is
/// tightened. Returns whether the file was created.
pub fn ensure_file(path: &Path) -> io::Result<bool> {
    match create_new(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            tighten(path, FILE_MODE)?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Writes a new owner-only file with `contents`, all at once: it appears complete or not at all
/// (written aside, then linked into place), so a process reading it never sees half of it. Fails
/// with `AlreadyExists` when another process put it there first.
pub fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let aside = path.with_extension(format!("{}.new", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = create_new(&aside)?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&aside, path));
    let _ = fs::remove_file(&aside);
    linked
}

/// Removes read, write and execute rights of group and others from `path`, if it has any.
#[cfg(unix)]
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = fs::metadata(path)?.permissions().mode();
    if current & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", current & 0o777),
            "others could read this; making it readable by the owner only"
        );
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn create_new(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options.open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_and_directories_are_owner_only_and_old_ones_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media/nested");
        ensure_dir(&media).unwrap();
        assert_eq!(mode(&media), 0o700);
        let db = dir.path().join("x.db");
        assert!(ensure_file(&db).unwrap());
        assert_eq!(mode(&db), 0o600);
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!ensure_file(&db).unwrap());
        assert_eq!(mode(&db), 0o600);
        let key = dir.path().join("k");
        write_new(&key, b"secret").unwrap();
        assert_eq!(mode(&key), 0o600);
        assert!(write_new(&key, b"other").is_err(), "never overwritten");
        assert_eq!(fs::read(&key).unwrap(), b"secret");
    }
}
