//! ID allocator file (work in progress).
