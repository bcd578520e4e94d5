//! The process around a tool's run: the async runtime, allocator and pipe tuning, stdout as a
//! file, and stopping on SIGINT/SIGTERM.

use fb_core::{Error, Result};

/// A multi-threaded runtime sized for the machine (fbkit is I/O bound; two workers suffice).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    keep_freed_memory();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}

/// Keep freed memory in the process instead of returning it to the kernel at once.
///
/// HTTP bodies arrive in buffers of a few hundred KiB, allocated on the runtime's threads
/// and freed on the writer's. glibc serves allocations that large with `mmap` and gives them
/// back with `munmap`, so every chunk cost fresh zeroed pages and page faults: 15% of
/// fb-export's CPU time in a profile. With fixed thresholds the heap keeps and reuses them;
/// peak memory is unchanged (it is bounded by the buffers in flight).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::libc::{mallopt, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD};
        // SAFETY: mallopt only sets allocator parameters; it is called before the runtime's
        // threads start and is safe to call at any time.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 16 << 20);
            mallopt(M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

/// Run `fb_core::export::export` into `out` on `rt`, or stop on SIGINT/SIGTERM with an
/// interruption error saying `interrupted` (what became of the output).
pub fn export_until_interrupted<W: std::io::Write + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    client: &std::sync::Arc<fb_core::client::ClusterClient>,
    opts: &fb_core::export::ExportOptions,
    out: W,
    interrupted: &'static str,
) -> Result<(W, fb_core::export::ExportSummary)> {
    rt.block_on(async {
        tokio::select! {
            r = fb_core::export::export(client.clone(), opts, out) => r,
            _ = self::interrupted() => Err(Error::interrupted(interrupted)),
        }
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Give stdin and stdout, where they are pipes, a 1 MiB kernel buffer instead of 64 KiB, so
/// that the two ends of a pipeline (`cat FILE | fb-verify`, `fb-export | fb-verify`) trade
/// fewer, larger writes and reads and wake each other less often (`cat a.tar |` a reader
/// moved 0.7-0.8 GB/s through a 64 KiB pipe on the bench machine, 1.6-2.6 GB/s through
/// 1 MiB). Where 1 MiB is refused (a user's pipe memory quota, a lower `pipe-max-size`),
/// 512 and 256 KiB are tried. A pipe already larger is left as it is; so is a non-pipe.
pub fn grow_pipes() {
    #[cfg(target_os = "linux")]
    for fd in [0, 1] {
        // SAFETY: fcntl(F_GETPIPE_SZ / F_SETPIPE_SZ) on the standard descriptors only reads
        // or changes a pipe's buffer size; it fails harmlessly (EBADF, EINVAL, EPERM) on
        // anything else.
        unsafe {
            let now = nix::libc::fcntl(fd, nix::libc::F_GETPIPE_SZ);
            if now < 0 {
                continue;
            }
            for size in [1 << 20, 512 << 10, 256 << 10] {
                if size <= now || nix::libc::fcntl(fd, nix::libc::F_SETPIPE_SZ, size) >= 0 {
                    break;
                }
            }
        }
    }
}

/// Standard output as an unbuffered file handle (archive bytes go through a large buffer
/// of the caller's, not Rust's line buffer).
pub fn stdout_file() -> Result<std::fs::File> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| Error::io("opening stdout", e))?;
    Ok(std::fs::File::from(fd))
}
