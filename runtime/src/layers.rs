//! layers (in progress)
