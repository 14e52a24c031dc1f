//! volume (in progress)
