//! What the peer-tool tests share (`interop.rs`, `auth_interop.rs`, the `diff_*.rs` suites):
//! `hoist_testsupport::peers`, under the name these files use.

#![allow(unused_imports)]

pub use hoist_testsupport::peers::*;
