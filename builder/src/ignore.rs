//! ignore (in progress)
