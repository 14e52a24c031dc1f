//! Shared by the container tests: a private `HOIST_HOME` with busybox imported as `busybox`
//! (`CMD ["sh"]`), its containers removed when it is dropped (`hoist_testsupport::Home`).
#![allow(dead_code, unused_imports)]

pub use hoist_testsupport::{field, path};

hoist_testsupport::home_type!(pub);

impl Home {
    /// A new home with `busybox` (CMD sh) imported.
    pub fn new() -> Home {
        Home(hoist_testsupport::Home::containers(env!(
            "CARGO_BIN_EXE_hoist"
        )))
    }
}
