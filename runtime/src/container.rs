//! container (in progress)
