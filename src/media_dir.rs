//! The media directory: the gateway's own copies of the files users send.
//!
//! Provider links to media expire (within minutes, on some providers), so files are downloaded right away and
//! kept here, content-addressed (`<first two hex digits>/<sha256>`): the same file sent twice is
//! stored once, and a file's name says what it must contain. A download is written to a temporary
//! file while it is hashed and measured, and only moved into place once its size and checksum are
//! right, so a half-written or corrupt file never appears under a real name. Directories and
//! files are readable by the gateway's user only (`private_files`).

use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why a file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The file is bigger than allowed.
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The content does not match the checksum the provider announced.
    #[error("the file's SHA-256 does not match the provider's ({expected})")]
    ChecksumMismatch {
        /// What the provider announced.
        expected: String,
    },
    /// The content is not as long as the provider announced.
    #[error("the file has {actual} bytes, the provider announced {announced}")]
    SizeMismatch {
        /// What the provider announced.
        announced: u64,
        /// What arrived.
        actual: u64,
    },
    /// The download broke off.
    #[error("the download failed: {0}")]
    Download(std::io::Error),
    /// The disk failed.
    #[error("cannot write the media directory: {0}")]
    Disk(std::io::Error),
}

impl MediaError {
    /// Whether trying again may help (a broken download or a full disk), as opposed to a file
    /// that is wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, MediaError::Download(_) | MediaError::Disk(_))
    }
}

/// A file stored in the media directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFile {
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Path relative to the media directory.
    pub path: String,
}

/// What a download must match.
#[derive(Debug, Clone, Default)]
pub struct Expected<'a> {
    /// Largest size accepted.
    pub max_bytes: u64,
    /// The size the provider announced.
    pub size: Option<u64>,
    /// The SHA-256 the provider announced, hex or base64.
    pub sha256: Option<&'a str>,
}

/// The media directory.
#[derive(Debug, Clone)]
pub struct MediaDir {
    dir: PathBuf,
}

impl MediaDir {
    /// Files under `dir` (created when the first file is stored).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The absolute location of a stored file's relative path. Paths always come from the
    /// database, never from a request.
    pub fn locate(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Streams a download into the directory, checking it against what the provider announced.
    pub async fn save(
        &self,
        mut body: impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
        expected: Expected<'_>,
    ) -> Result<SavedFile, MediaError> {
        if let Some(size) = expected.size
            && size > expected.max_bytes
        {
            return Err(MediaError::TooLarge {
                limit: expected.max_bytes,
            });
        }
        let partial = self.dir.join("partial");
        private_dir(&partial).await.map_err(MediaError::Disk)?;
        let temporary = partial.join(uuid::Uuid::now_v7().to_string());
        let result = self
            .write(&mut body, &temporary, &expected)
            .await
            .and_then(|(digest, size)| check(digest, size, &expected));
        let (sha256, size) = match result {
            Ok(ok) => ok,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(e);
            }
        };
        let relative = format!("{}/{}", &sha256[..2], sha256);
        let target = self.dir.join(&relative);
        if let Some(parent) = target.parent() {
            private_dir(parent).await.map_err(MediaError::Disk)?;
        }
        // Same name, same content: replacing an existing copy is harmless.
        tokio::fs::rename(&temporary, &target)
            .await
            .map_err(MediaError::Disk)?;
        Ok(SavedFile {
            sha256,
            size,
            path: relative,
        })
    }

    async fn write(
        &self,
        body: &mut (impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin),
        temporary: &Path,
        expected: &Expected<'_>,
    ) -> Result<(Vec<u8>, u64), MediaError> {
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(crate::private_files::FILE_MODE);
        let mut file = options.open(temporary).await.map_err(MediaError::Disk)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(MediaError::Download)?;
            size += chunk.len() as u64;
            if size > expected.max_bytes {
                return Err(MediaError::TooLarge {
                    limit: expected.max_bytes,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(MediaError::Disk)?;
        }
        file.sync_all().await.map_err(MediaError::Disk)?;
        Ok((hasher.finalize().to_vec(), size))
    }
}

/// Creates a directory of the media store (and its parents), readable by the owner only: these
/// are end users' private files.
async fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(crate::private_files::DIR_MODE);
    builder.create(dir).await
}

/// Compares what arrived with what was announced.
fn check(digest: Vec<u8>, size: u64, expected: &Expected<'_>) -> Result<(String, u64), MediaError> {
    if let Some(announced) = expected.size
        && announced != size
    {
        return Err(MediaError::SizeMismatch {
            announced,
            actual: size,
        });
    }
    if let Some(announced) = expected.sha256
        && !same_digest(&digest, announced)
    {
        return Err(MediaError::ChecksumMismatch {
            expected: announced.to_owned(),
        });
    }
    Ok((hex::encode(digest), size))
}

/// Whether an announced checksum (providers write them in hex or in base64) is this digest.
fn same_digest(digest: &[u8], announced: &str) -> bool {
    let announced = announced.trim();
    if let Ok(bytes) = hex::decode(announced)
        && bytes.len() == digest.len()
    {
        return bytes == digest;
    }
    [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ]
    .iter()
    .any(|engine| engine.decode(announced).is_ok_and(|bytes| bytes == digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn limit() -> Expected<'static> {
        Expected {
            max_bytes: 1024,
            ..Expected::default()
        }
    }

    #[tokio::test]
    async fn files_are_stored_by_content_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaDir::new(dir.path());
        let sha = hex::encode(Sha256::digest(b"hello world"));
        let saved = store
            .save(
                body(&[b"hello ", b"world"]),
                Expected {
                    size: Some(11),
                    sha256: Some(&sha),
                    ..limit()
                },
            )
            .await
            .unwrap();
        assert_eq!(saved.sha256, sha);
        assert_eq!(saved.size, 11);
        assert_eq!(
            std::fs::read(store.locate(&saved.path)).unwrap(),
            b"hello world"
        );

        // Base64 checksums are understood too.
        let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"hello world"));
        let again = store
            .save(
                body(&[b"hello world"]),
                Expected {
                    sha256: Some(&b64),
                    ..limit()
                },
            )
            .await
            .unwrap();
        assert_eq!(again, saved, "the same content is the same file");
    }

    #[tokio::test]
    async fn wrong_files_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaDir::new(dir.path());
        let wrong = hex::encode(Sha256::digest(b"something else"));
        let err = store
            .save(
                body(&[b"hello"]),
                Expected {
                    sha256: Some(&wrong),
                    ..limit()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, MediaError::ChecksumMismatch { .. }), "{err}");
        assert!(!err.is_transient());

        let err = store
            .save(
                body(&[b"hello"]),
                Expected {
                    size: Some(6),
                    ..limit()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, MediaError::SizeMismatch { .. }), "{err}");

        let err = store
            .save(
                body(&[&[0u8; 600], &[0u8; 600]]),
                Expected {
                    max_bytes: 1000,
                    ..Expected::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, MediaError::TooLarge { limit: 1000 }), "{err}");

        let leftovers: Vec<_> = walk(dir.path());
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
