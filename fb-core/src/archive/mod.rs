//! The archive stream (contract §1): a deterministic POSIX tar writer, and a hardened
//! streaming reader for plain, zstd or gzip input.
//!
//! fbkit writes and reads tar itself rather than through the `tar` crate (which the tests
//! keep as an independent oracle), because a backup needs what a general tar library does
//! not promise:
//! - explicit completion: the trailer is written only by [`TarWriter::finish`], never on
//!   drop, so a failed export cannot end in a well-formed archive (`tar::Builder` writes it
//!   in `Drop`);
//! - enforced sizes: an entry gets exactly the bytes its header declares (`tar`'s `append`
//!   does not check);
//! - canonical checksums: the checksum field must have one of the forms tar writers use, so
//!   every bit flip in a header is caught, not only those that change the sum;
//! - bounded extended headers: PAX and GNU long-name records are capped, so a hostile size
//!   cannot make a reader allocate;
//! - the contract's exit codes: a stream that ends early is 66, a malformed one 65.
//!
//! `header` names the ustar fields, `write` is the writer, `read` the reader, and `backup`
//! the layer that knows backup paths and the manifest.

mod backup;
mod header;
mod read;
mod write;

pub use backup::{BackupItem, BackupReader};
pub use read::{compression_of, decompress, Compression, RawEntry, TarReader};
pub use write::TarWriter;

#[cfg(test)]
mod tests {
    use std::io::{self, Read};

    use super::header::BLOCK;
    use super::write::ustar_header;
    use super::*;
    use crate::error::{Error, Result};
    use crate::layout::MANIFEST_NAME;

    fn build(entries: &[(&str, &[u8])], manifest: bool) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), 0);
        for (n, d) in entries {
            w.append(n, d).unwrap();
        }
        if manifest {
            w.append(MANIFEST_NAME, b"{}").unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn writer_output_is_read_back_by_the_tar_crate() {
        let long_field = "f".repeat(200);
        let long = format!("indexes/{}/fields/{}/translate", "i".repeat(200), long_field);
        let bytes = build(&[("schema", b"{}"), ("indexes/users/shards/0000", &[7u8; 1000]), (&long, b"k")], true);
        let mut a = tar::Archive::new(&bytes[..]);
        let names: Vec<(String, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.size())
            })
            .collect();
        assert_eq!(names[0], ("schema".into(), 2));
        assert_eq!(names[1], ("indexes/users/shards/0000".into(), 1000));
        assert_eq!(names[2], (long.clone(), 1));
        assert_eq!(names[3].0, MANIFEST_NAME);
    }

    #[test]
    fn reader_reads_writer_output() {
        let bytes = build(&[("schema", b"{}"), ("indexes/users/shards/0001", &[1u8; 513])], true);
        let mut r = BackupReader::new(&bytes[..]);
        let mut got = Vec::new();
        loop {
            match r.next_item().unwrap() {
                BackupItem::Entry { path, size } => {
                    let mut n = 0u64;
                    let mut buf = [0u8; 100];
                    loop {
                        let k = r.read(&mut buf).unwrap();
                        if k == 0 {
                            break;
                        }
                        n += k as u64;
                    }
                    assert_eq!(n, size);
                    got.push(path.to_string());
                }
                BackupItem::Manifest(m) => {
                    assert_eq!(m, b"{}");
                    break;
                }
                BackupItem::EndWithoutManifest => panic!("manifest expected"),
            }
        }
        assert_eq!(got, ["schema", "indexes/users/shards/0001"]);
    }

    fn outcome(bytes: &[u8]) -> Result<()> {
        let mut r = BackupReader::new(bytes);
        loop {
            match r.next_item()? {
                BackupItem::Entry { .. } => {
                    let mut buf = [0u8; 4096];
                    while r.read(&mut buf)? > 0 {}
                }
                BackupItem::Manifest(_) => return Ok(()),
                BackupItem::EndWithoutManifest => return Err(Error::truncated("no manifest")),
            }
        }
    }

    /// A reader that hands over one byte per call.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn compression_is_detected_from_a_trickling_reader() {
        let tar = build(&[("schema", b"{}")], true);
        let z = zstd::encode_all(&tar[..], 3).unwrap();
        let (kind, mut r) = decompress(Trickle(&z)).unwrap();
        assert_eq!(kind, Compression::Zstd);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, tar);
        let (kind, _) = decompress(Trickle(&tar)).unwrap();
        assert_eq!(kind, Compression::None);
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = build(&[("schema", b"{}"), ("indexes/users/shards/0001", &[1u8; 3000])], true);
        assert!(outcome(&bytes).is_ok());
        for cut in 0..bytes.len() {
            let e = outcome(&bytes[..cut]).unwrap_err();
            assert!(matches!(e.exit_code(), 65 | 66), "cut {cut}: {e:?}");
        }
    }

    #[test]
    fn every_bit_flip_in_a_header_is_detected() {
        let bytes = build(&[("schema", b"{}")], true);
        for i in 0..BLOCK {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let e = outcome(&b).expect_err(&format!("flip of bit {bit} at {i}"));
                assert!(matches!(e.exit_code(), 65 | 66), "flip at {i}: {e:?}");
            }
        }
    }

    #[test]
    fn hostile_headers_are_refused() {
        let mut link = ustar_header("schema", "", 0, 0, b'2');
        link[148..156].copy_from_slice(b"        ");
        let sum: u32 = link.iter().map(|&b| u32::from(b)).sum();
        link[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut s = link.to_vec();
        s.extend_from_slice(&[0u8; 1024]);
        assert_eq!(outcome(&s).unwrap_err().exit_code(), 65);

        let dup = build(&[("schema", b"{}"), ("schema", b"{}")], true);
        assert_eq!(outcome(&dup).unwrap_err().exit_code(), 65);
        let outside = build(&[("../etc/passwd", b"x")], true);
        assert_eq!(outcome(&outside).unwrap_err().exit_code(), 65);
        let after = {
            let mut w = TarWriter::new(Vec::new(), 0);
            w.append(MANIFEST_NAME, b"{}").unwrap();
            w.append("schema", b"{}").unwrap();
            w.finish().unwrap()
        };
        assert_eq!(outcome(&after).unwrap_err().exit_code(), 65);
        let mut big_pax = ustar_header("PaxHeader/x", "", 1 << 40, 0, b'x').to_vec();
        big_pax.extend_from_slice(&[0u8; 1024]);
        assert_eq!(outcome(&big_pax).unwrap_err().exit_code(), 65);
    }
}
