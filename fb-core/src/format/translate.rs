//! Key translation stores (work in progress).
