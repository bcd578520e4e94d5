//! Reading a regular file's bytes where the page cache holds them, without copying them:
//! a window of the file is mapped read-only, its pages entered at once
//! (`MAP_POPULATE`), read, and unmapped. A file hashed this way costs one pass over memory
//! instead of a copy and a pass; on the bench machine that is the difference between
//! 1.4 and 1.6 GB/s per core. Linux only; elsewhere [`Mapped::new`] refuses and callers
//! read the bytes instead.
//!
//! A mapped file that another process shortens under the reader turns a read of the lost
//! whole pages into `SIGBUS` (a cut inside a page reads as zeros there: callers look at the
//! file's length again after each window). A window's bytes are only reached through a
//! [`BusGuard`]: while a thread reads a window through its guard, a `SIGBUS` at an address
//! of that window prints the guard's message and ends the process: exit 66 (§4: input ended
//! early) when the file is now shorter than the window, the exit a short `read` gets; exit
//! 74 (an I/O error) when it is not (a disk or network file system that failed). Any other
//! `SIGBUS` gets the action it would have had without this module.
//!
//! Public for `cargo xtask bench`, which measures a machine's ceiling with these windows.

use std::cell::Cell;
use std::ffi::c_void;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::OnceLock;

use nix::libc;

/// A read-only mapping of `len` bytes of a file from some offset.
pub struct Mapped {
    base: NonNull<c_void>,
    map_len: usize,
    /// Bytes between the page boundary the mapping starts at and the offset asked for.
    skip: usize,
    len: usize,
    /// The file offset just past the mapped bytes.
    end: u64,
}

// SAFETY: the mapping is read-only and owned by this value alone; moving it to another
// thread moves nothing but the address.
unsafe impl Send for Mapped {}

impl Mapped {
    /// Map `len` (> 0) bytes of `file` from `offset`; the caller has seen the file hold
    /// them (pages past the end of a file raise SIGBUS when read). Errors (a file system
    /// that cannot be mapped, no address space, not Linux) are for the caller to read the
    /// bytes instead.
    #[cfg(target_os = "linux")]
    pub fn new(file: &File, offset: u64, len: usize) -> std::io::Result<Mapped> {
        use std::num::NonZeroUsize;

        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let page = page_size() as u64;
        let start = offset - offset % page;
        let skip = (offset - start) as usize;
        let map_len = NonZeroUsize::new(skip + len).ok_or(std::io::ErrorKind::InvalidInput)?;
        let file_offset = i64::try_from(start).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        install_bus_handler();
        // SAFETY: a new private read-only mapping at an address the kernel picks; nothing
        // else refers to that range.
        let base = unsafe {
            mmap(None, map_len, ProtFlags::PROT_READ, MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE, file, file_offset)
        }?;
        Ok(Mapped { base, map_len: map_len.get(), skip, len, end: offset + len as u64 })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new(_: &File, _: u64, _: usize) -> std::io::Result<Mapped> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `base` and `map_len` are exactly what mmap returned and was given; no
        // slice from `BusGuard::read` outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.base, self.map_len) };
    }
}

#[cfg(target_os = "linux")]
fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// What the `SIGBUS` handler needs to know about the window a thread reads.
struct Watch {
    fd: RawFd,
    /// Printed when the file is now shorter than the window, and when it is not.
    shrank: Box<[u8]>,
    failed: Box<[u8]>,
    /// Addresses of the window being read (empty between reads) and the file offset just
    /// past it.
    from: Cell<usize>,
    to: Cell<usize>,
    end: Cell<u64>,
}

thread_local! {
    /// This thread's [`BusGuard`], or null.
    static GUARD: Cell<*const Watch> = const { Cell::new(std::ptr::null()) };
}

/// The one way to a window's bytes. While it lives, a `SIGBUS` on a window this thread
/// reads through it ends the process with its message (see the module's text). One guard
/// per thread at a time.
pub struct BusGuard {
    watch: Box<Watch>,
}

impl BusGuard {
    /// `shrank` and `failed` say what was being read and from which file, for the two
    /// endings; each is printed after the program's name, like the tools' other errors.
    pub fn new(file: &File, shrank: &str, failed: &str) -> BusGuard {
        let tool = std::env::args_os()
            .next()
            .map(|a| std::path::Path::new(&a).file_name().unwrap_or_default().to_string_lossy().into_owned())
            .unwrap_or_else(|| "fbkit".into());
        let line = |what: &str| format!("{tool}: {what}\n").into_bytes().into_boxed_slice();
        let watch = Box::new(Watch {
            fd: file.as_raw_fd(),
            shrank: line(shrank),
            failed: line(failed),
            from: Cell::new(0),
            to: Cell::new(0),
            end: Cell::new(0),
        });
        GUARD.with(|g| {
            assert!(g.get().is_null(), "one BusGuard per thread at a time");
            g.set(&*watch);
        });
        compiler_fence(Ordering::SeqCst);
        BusGuard { watch }
    }

    /// Hand `read` the bytes of `window` (of the guard's file), watched while it runs.
    pub fn read<T>(&self, window: &Mapped, read: impl FnOnce(&[u8]) -> T) -> T {
        // SAFETY: `skip + len` bytes from `base` are mapped readable for as long as `window`
        // lives, which is longer than this call. Another process may write the file
        // meanwhile and change what is read, as it would for `read(2)`: the bytes are only
        // hashed and checked, and a change shows as a digest that does not match. One that
        // shortens it raises SIGBUS, watched below.
        let bytes =
            unsafe { std::slice::from_raw_parts(window.base.as_ptr().cast::<u8>().add(window.skip), window.len) };
        let w = &self.watch;
        w.end.set(window.end);
        w.to.set(bytes.as_ptr() as usize + bytes.len());
        w.from.set(bytes.as_ptr() as usize);
        compiler_fence(Ordering::SeqCst);
        let out = read(bytes);
        compiler_fence(Ordering::SeqCst);
        w.from.set(0);
        w.to.set(0);
        out
    }
}

impl Drop for BusGuard {
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        GUARD.with(|g| g.set(std::ptr::null()));
    }
}

/// The `SIGBUS` action found before this module's handler was installed.
static BEFORE: OnceLock<libc::sigaction> = OnceLock::new();

#[cfg(target_os = "linux")]
fn install_bus_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // SAFETY: reading the current action into a zeroed out-parameter.
        let mut before: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut before) } != 0 {
            return;
        }
        let _ = BEFORE.set(before);
        // SAFETY: a zeroed sigaction with our handler, SA_SIGINFO and SA_ONSTACK, and an
        // empty mask. `on_bus` does only async-signal-safe things.
        unsafe {
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_bus as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut ours.sa_mask);
            libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut());
        }
    });
}

/// The handler: a fault in the window this thread reads ends the process with the
/// guard's message; anything else gets the action it would have had.
extern "C" fn on_bus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO; the guard's watch lives as
    // long as the guard, which is live while the pointer is set (only this thread sets it,
    // and this thread is the one interrupted); fstat, write, _exit, sigaction and raise
    // are async-signal-safe.
    unsafe {
        let code = (*info).si_code;
        let addr = (*info).si_addr() as usize;
        let watch = GUARD.try_with(|g| g.get()).unwrap_or(std::ptr::null());
        if code > 0 && !watch.is_null() {
            let w = &*watch;
            if w.from.get() <= addr && addr < w.to.get() {
                let mut st: libc::stat = std::mem::zeroed();
                let shrank = libc::fstat(w.fd, &mut st) == 0 && (st.st_size as u64) < w.end.get();
                let (message, exit) = if shrank { (&w.shrank, 66) } else { (&w.failed, 74) };
                libc::write(2, message.as_ptr().cast(), message.len());
                libc::_exit(exit);
            }
        }
        match BEFORE.get() {
            // A fault: put back what was there and return; the faulting instruction runs
            // again and meets that action (by default, the process ends).
            Some(before) if code > 0 => {
                libc::sigaction(libc::SIGBUS, before, std::ptr::null_mut());
            }
            // Sent by a process (`kill -BUS`), or nothing known: the default action.
            _ => {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
                libc::raise(libc::SIGBUS);
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn a_window_shows_the_bytes_at_any_offset() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let guard = BusGuard::new(&f, "shrank", "failed");
        for (offset, len) in [(0usize, 1usize), (1, 4095), (4095, 2), (4096, 4096), (12_345, 80_000), (99_999, 1)] {
            let m = Mapped::new(&f, offset as u64, len).unwrap();
            guard.read(&m, |bytes| assert_eq!(bytes, &data[offset..offset + len], "offset {offset} len {len}"));
        }
        assert!(Mapped::new(&f, 0, 0).is_err());
    }

    /// Child side of the tests below: `FBKIT_BUS_CHILD` = `shrink:PATH` maps a file,
    /// shortens it and reads the lost bytes through a guard; `raise` maps a file (which
    /// installs the handler) and sends itself SIGBUS with no guard.
    #[test]
    fn bus_child() {
        let Some(job) = std::env::var("FBKIT_BUS_CHILD").ok() else { return };
        if let Some(path) = job.strip_prefix("shrink:") {
            let f = File::options().read(true).write(true).open(path).unwrap();
            let m = Mapped::new(&f, 0, 1 << 20).unwrap();
            f.set_len(4096).unwrap();
            let guard = BusGuard::new(&f, "backup.tar: the file shrank while entry \"x\" was read", "I/O error");
            let sum: u64 = guard.read(&m, |b| b.iter().map(|&x| u64::from(x)).sum());
            println!("read all {sum} without SIGBUS");
        } else {
            let f = tempfile::tempfile().unwrap();
            f.write_all_at(&[1; 4096], 0).unwrap();
            let _m = Mapped::new(&f, 0, 4096).unwrap();
            // SAFETY: raising a signal at this process.
            unsafe { libc::raise(libc::SIGBUS) };
            println!("survived SIGBUS");
        }
    }

    fn child(job: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "mapped::tests::bus_child", "--nocapture", "--test-threads", "1"])
            .env("FBKIT_BUS_CHILD", job)
            .output()
            .unwrap()
    }

    #[test]
    fn a_file_shortened_under_a_guarded_read_ends_the_process_with_66_and_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.tar");
        File::create(&path).unwrap().write_all_at(&vec![7u8; 1 << 20], 0).unwrap();
        let out = child(&format!("shrink:{}", path.display()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(66), "stderr: {stderr}\nstdout: {}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.contains("backup.tar: the file shrank while entry \"x\" was read"), "{stderr}");
    }

    #[test]
    fn a_sigbus_sent_by_a_process_still_ends_it_as_sigbus() {
        let out = child("raise");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGBUS),
            "{:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
