//! Reading a pipe fast: the kernel's default pipe holds 64 KiB, so a writer such as `cat`
//! (128 KiB writes) or `zstd -d` blocks and is woken several times per megabyte, and the
//! pipe, not the reader or the writer, sets the speed. A reader may enlarge the pipe it
//! reads; this module does so for stdin.

use std::os::fd::AsFd;

use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::stat::{fstat, SFlag};

/// What a pipe is widened to: enough for several of a writer's writes.
/// An unprivileged process may go up to `/proc/sys/fs/pipe-max-size` (1 MiB by default).
const WIDE: i32 = 1 << 20;

/// Smallest size still worth asking for when the wide one is refused (a user's pipe
/// memory quota, `/proc/sys/fs/pipe-user-pages-soft`, or a lower `pipe-max-size`).
const NARROWEST: i32 = 256 << 10;

/// If `fd` is a pipe, enlarge its buffer (1 MiB, else the largest size down to 256 KiB the
/// kernel grants) and return the size it now has. Anything else (a file, a socket, a
/// terminal), or a pipe the kernel will not enlarge, is left as it is: `None`. Never
/// fails: the bytes read are the same either way, only the speed differs.
pub fn widen(fd: impl AsFd) -> Option<usize> {
    let fd = fd.as_fd();
    let st = fstat(std::os::fd::AsRawFd::as_raw_fd(&fd)).ok()?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return None;
    }
    let mut want = WIDE;
    while want >= NARROWEST {
        if let Ok(got) = fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), FcntlArg::F_SETPIPE_SZ(want)) {
            return usize::try_from(got).ok();
        }
        want /= 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_is_widened_and_a_file_is_left_alone() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let got = widen(&r).expect("a pipe can be widened to at least 256 KiB");
        assert!(got >= NARROWEST as usize, "{got}");
        // Bytes written before and after still arrive in order.
        nix::unistd::write(&w, b"abc").unwrap();
        drop(w);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut out).unwrap();
        assert_eq!(out, b"abc");

        let file = tempfile::tempfile().unwrap();
        assert_eq!(widen(&file), None);
    }
}
