//! Platforms and choosing a manifest from an index: [`hoist_oci::platform`], containerd's rules.

pub use hoist_oci::platform::{Platform, PlatformError, best, choose, oci_arch};

impl From<PlatformError> for super::ImageError {
    fn from(e: PlatformError) -> Self {
        super::ImageError::Platform(e.0)
    }
}
