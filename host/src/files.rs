//! Files that must be regular files (components, compiled-component cache
//! entries, the cache key): opened without ever blocking on a FIFO or
//! reading a device, optionally without following a symlink, and named for
//! what they are when they are something else; private directories.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Whether a symlink at the path itself is followed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    Follow,
    Refuse,
}

/// What a file is, as a noun phrase: "a FIFO (named pipe)", "a directory".
pub fn kind(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Why `meta` is not a regular file ("is a FIFO (named pipe), not a
/// regular file"), or `None` if it is one.
pub fn not_regular(meta: &Metadata) -> Option<String> {
    (!meta.is_file()).then(|| format!("is {}, not a regular file", kind(meta.file_type())))
}

/// Open `path` for reading if it is a regular file; anything else is an
/// `InvalidInput` error saying what it is. Never blocks: a FIFO is refused
/// by its metadata before it is opened, and opened non-blocking in case it
/// was put there after that look.
pub fn open_regular(path: &Path, symlinks: Symlinks) -> io::Result<(File, Metadata)> {
    let before = match symlinks {
        Symlinks::Follow => std::fs::metadata(path)?,
        Symlinks::Refuse => std::fs::symlink_metadata(path)?,
    };
    if let Some(why) = not_regular(&before) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    let mut flags = libc::O_NONBLOCK;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link, not a regular file",
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if let Some(why) = not_regular(&meta) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    Ok((file, meta))
}

/// The whole of the regular file at `path` (see [`open_regular`]).
pub fn read_regular(path: &Path, symlinks: Symlinks) -> io::Result<Vec<u8>> {
    let (mut file, meta) = open_regular(path, symlinks)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Create `dir` and any missing parents, each made readable by this user
/// only (an existing directory keeps its mode).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
