//! solver (in progress)
