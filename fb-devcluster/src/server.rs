//! Serving the nodes: each node's accept loop on 127.0.0.1 (closing its port while a `down`
//! fault applies and binding it again afterwards), TLS, and HTTP/1 connections handed to
//! `http::handle`.
//!
//! Layer: server, above `http` and `cluster`; only the crate root imports it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::cluster::Cluster;
use crate::http;

/// Bind node `i`'s port on 127.0.0.1.
pub(crate) async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// Serve node `i` until `shutdown` turns true. While the node is down its port is closed and
/// its connections are dropped; when it comes back it binds the same port again.
pub(crate) async fn run_node(
    cluster: Arc<Cluster>,
    i: usize,
    first: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = Some(first);
    let mut faults = cluster.fault_gen.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if cluster.nodes[i].down.load(Ordering::SeqCst) {
            listener = None;
            cluster.nodes[i].listening.set(false);
            tokio::select! {
                _ = faults.changed() => continue,
                _ = shutdown.changed() => return,
            }
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match bind(cluster.nodes[i].port).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("fb-devcluster: node {i}: cannot listen on port {} again: {e}", cluster.nodes[i].port);
                    tokio::select! {
                        _ = faults.changed() => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            },
        };
        cluster.nodes[i].listening.set(true);
        // Connections accepted in this listening period; told to stop when the node goes down.
        let (stop_conns, conns_stop) = watch::channel(false);
        loop {
            tokio::select! {
                accepted = l.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let _ = stream.set_nodelay(true);
                        let c = cluster.clone();
                        let stop = conns_stop.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move { serve_connection(c, i, stream, tls, stop).await });
                    }
                }
                _ = faults.changed() => {
                    if cluster.nodes[i].down.load(Ordering::SeqCst) {
                        let _ = stop_conns.send(true);
                        drop(l);
                        cluster.nodes[i].listening.set(false);
                        break;
                    }
                }
                _ = shutdown.changed() => {
                    let _ = stop_conns.send(true);
                    cluster.nodes[i].listening.set(false);
                    return;
                }
            }
        }
    }
}

async fn serve_connection(
    cluster: Arc<Cluster>,
    i: usize,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    match tls {
        Some(acceptor) => {
            let mut stop_hs = stop.clone();
            let stream = tokio::select! {
                s = acceptor.accept(stream) => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
                _ = stop_hs.changed() => return,
            };
            serve_http(cluster, i, TokioIo::new(stream), stop).await
        }
        None => serve_http(cluster, i, TokioIo::new(stream), stop).await,
    }
}

async fn serve_http<IO>(cluster: Arc<Cluster>, i: usize, io: IO, mut stop: watch::Receiver<bool>)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let c = cluster.clone();
        async move { http::handle(c, i, req).await }
    });
    let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => {}
    }
    // Down or shutting down: let an answer in progress finish (bodies of a down node fail
    // on their own, hanging requests give up), then close.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
