//! hoist-runtime: safe verified unpack, bundles, the executor, containers and volumes.
//!
//! `Image -> layers (unpacked once, verified once) -> rootfs (overlay or copy) -> bundle (OCI
//! runtime config from the image config) -> executor (namespaces, mounts, cgroups) -> container`.

pub mod confined;
pub mod container;
pub mod exec;
pub mod layers;
pub mod net;
pub mod rootfs;
pub mod spec;
pub mod unpack;
pub mod volume;
