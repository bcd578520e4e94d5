//! Response bodies: whole buffers, files streamed in fixed-size pieces, and the wrapper
//! that applies `cut` and `slow` faults and drops the body when its node goes down.
//!
//! Layer: leaf (imports no other module of this crate).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The body type of every response.
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, io::Error>;

/// Size of the pieces a file is read and sent in.
const FILE_CHUNK: usize = 256 * 1024;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

/// A file streamed from its current position to its end, never held whole in memory.
/// Its size is not announced, so hyper sends it chunked unless the response carries a
/// Content-Length header.
pub(crate) struct FileBody {
    file: tokio::fs::File,
    done: bool,
}

/// The body of a file response.
pub(crate) fn file(file: tokio::fs::File) -> Body {
    FileBody { file, done: false }.boxed_unsync()
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut buf = BytesMut::zeroed(FILE_CHUNK);
        let mut rb = ReadBuf::new(&mut buf);
        ready!(Pin::new(&mut self.file).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            self.done = true;
            return Poll::Ready(None);
        }
        buf.truncate(n);
        Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// What a fault does to a body.
pub(crate) struct BodyFaults {
    /// End the body after this many bytes.
    pub cut: Option<u64>,
    /// Send at most this many bytes per second.
    pub rate: Option<u64>,
    /// Set when the serving node goes down: the body then fails, which drops the connection.
    pub down: Arc<AtomicBool>,
}

/// A body with faults applied. A cut body ends cleanly (a chunked response gets its
/// terminating chunk; a response whose Content-Length promised more is cut short, so
/// hyper closes the connection).
pub(crate) struct FaultBody {
    inner: Body,
    cut_left: Option<u64>,
    rate: Option<u64>,
    down: Arc<AtomicBool>,
    sent: u64,
    started: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    held: Option<Bytes>,
    rest: Option<Bytes>,
    cut_grace: bool,
}

impl FaultBody {
    pub(crate) fn wrap(inner: Body, faults: BodyFaults) -> Body {
        FaultBody {
            inner,
            cut_left: faults.cut,
            rate: faults.rate,
            down: faults.down,
            sent: 0,
            started: None,
            sleep: None,
            held: None,
            rest: None,
            cut_grace: false,
        }
        .boxed_unsync()
    }
}

impl HttpBody for FaultBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            if this.down.load(Ordering::Relaxed) {
                return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "node went down"))));
            }
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
                if let Some(piece) = this.held.take() {
                    this.sent += piece.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(piece))));
                }
            }
            if this.cut_left == Some(0) {
                if !this.cut_grace {
                    // Give the connection time to flush what was sent before the body ends:
                    // a Content-Length response then closes the connection (hyper drops
                    // unflushed bytes when a body ends early), a chunked one ends cleanly.
                    this.cut_grace = true;
                    this.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_millis(100))));
                    continue;
                }
                return Poll::Ready(None);
            }
            let mut chunk = match this.rest.take() {
                Some(rest) => rest,
                None => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    None => return Poll::Ready(None),
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    },
                },
            };
            if let Some(left) = this.cut_left {
                if chunk.len() as u64 > left {
                    chunk.truncate(left as usize);
                }
                this.cut_left = Some(left - chunk.len() as u64);
            }
            if let Some(rate) = this.rate {
                // Pieces of about 1/20 s each, each sent when the running total is due.
                let piece_len = ((rate / 20).max(1) as usize).min(FILE_CHUNK);
                if chunk.len() > piece_len {
                    this.rest = Some(chunk.split_off(piece_len));
                }
                let started = *this.started.get_or_insert_with(Instant::now);
                let due = started + Duration::from_secs_f64((this.sent + chunk.len() as u64) as f64 / rate as f64);
                if due > Instant::now() {
                    this.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
                    this.held = Some(chunk);
                    continue;
                }
            }
            this.sent += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
