//! Atomic output files: write to a temporary name beside the target, fsync it, rename it into
//! place, fsync the directory. A failed or interrupted run leaves nothing at the target name.
//!
//! The file mode rule, the same for every file an fbkit tool writes: 0666 less the umask,
//! exactly what `> FILE` in a shell gives (0644 under the common umask 022), so `-o FILE` and
//! a redirection leave the same file. A backup holds the cluster's data: keep it private with
//! `umask 077` (0600) or a private directory, as for any other file.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The mode every output file is created with, before the umask (see the module docs).
pub const FILE_MODE: u32 = 0o666;

/// A file being written under a temporary name beside its target.
#[derive(Debug)]
pub struct AtomicFile {
    temp: Option<tempfile::NamedTempFile>,
    target: PathBuf,
    sync: bool,
}

impl AtomicFile {
    /// Create the temporary file in the target's directory. Failure is exit 73.
    pub fn create(target: &Path, sync: bool) -> Result<AtomicFile> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.is_empty() {
            return Err(Error::cannot_create(format!("{}: not a file name", target.display())));
        }
        if target.is_dir() {
            return Err(Error::cannot_create(format!("{}: is a directory", target.display())));
        }
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        // The mode rule (module docs): open(2) with 0666 applies the umask, as a shell does;
        // tempfile's default would be 0600 whatever the umask.
        #[cfg(unix)]
        builder.permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(FILE_MODE));
        let temp = builder
            .tempfile_in(&dir)
            .map_err(|e| Error::cannot_create(format!("cannot create a file in {}", dir.display())).with_source(e))?;
        Ok(AtomicFile { temp: Some(temp), target: target.to_path_buf(), sync })
    }

    /// Path of the temporary file (to remove it from a signal handler).
    pub fn temp_path(&self) -> PathBuf {
        self.temp.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default()
    }

    /// Flush, fsync (unless disabled), rename into place and fsync the directory.
    pub fn commit(mut self) -> Result<()> {
        let temp = self.temp.take().expect("commit once");
        let ctx = |what: &str, e: io::Error| Error::io(format!("{what} {}", self.target.display()), e);
        if self.sync {
            temp.as_file().sync_all().map_err(|e| ctx("syncing", e))?;
        }
        temp.persist(&self.target).map_err(|e| ctx("renaming into", e.error))?;
        if self.sync {
            let dir = match self.target.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ctx("syncing the directory of", e))?;
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.as_mut().expect("not committed").flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_at_the_target_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("b.tar");
        let mut f = AtomicFile::create(&target, true).unwrap();
        f.write_all(b"data").unwrap();
        assert!(!target.exists());
        let temp = f.temp_path();
        assert!(temp.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"data");
        assert!(!temp.exists());
        let mut g = AtomicFile::create(&dir.path().join("c.tar"), false).unwrap();
        g.write_all(b"x").unwrap();
        drop(g);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(AtomicFile::create(&dir.path().join("no/such/dir/x"), true).unwrap_err().exit_code(), 73);
    }

    /// The process's umask, read without changing it (umask(2) would race other tests).
    #[cfg(target_os = "linux")]
    fn current_umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Umask line");
        u32::from_str_radix(line.trim(), 8).unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_file_gets_0666_less_the_umask_like_a_shell_redirection() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("b.tar");
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"data").unwrap();
        let want = FILE_MODE & !current_umask();
        assert_eq!(std::fs::metadata(f.temp_path()).unwrap().permissions().mode() & 0o777, want, "while written");
        f.commit().unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, want);
        // The same as `> FILE` makes.
        let redirected = dir.path().join("r.tar");
        std::fs::write(&redirected, b"data").unwrap();
        assert_eq!(std::fs::metadata(&redirected).unwrap().permissions().mode() & 0o777, want);
    }
}
