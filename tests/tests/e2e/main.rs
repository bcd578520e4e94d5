//! End-to-end: the real binaries, in pipelines, against fb-devcluster on loopback.
//! One test binary for the whole suite (keeps builds lean on 2 cores); one module per theme.

mod census;
mod census_live;
mod census_real;
mod completeness;
mod docs;
mod faults;
mod hostile;
mod interop;
mod operator;
mod pipelines;
mod real;
mod resume;
mod security;
