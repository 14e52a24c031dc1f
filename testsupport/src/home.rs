//! A private `HOIST_HOME` for the tests that run the `hoist` binary: a temp directory holding the
//! busybox rootfs (`rootfs.tar`, from `hoist_conformance::fixtures`) and the home (`home/`), with
//! busybox imported through `hoist import`.
//!
//! `CARGO_BIN_EXE_hoist` exists only while the cli's tests compile, so the caller passes the
//! binary: `Home::busybox(env!("CARGO_BIN_EXE_hoist"))`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hoist_conformance::fixtures;
use serde_json::Value;

/// A private `HOIST_HOME` (`<dir>/home`) next to the busybox rootfs (`<dir>/rootfs.tar`).
pub struct Home {
    /// The temp directory: the rootfs, the home, and whatever the test puts there.
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    next: AtomicUsize,
    remove_containers: bool,
}

impl Home {
    /// A home with nothing imported yet; the busybox rootfs is at [`Home::rootfs`].
    pub fn new(bin: impl Into<PathBuf>) -> Home {
        let dir = tempfile::tempdir().unwrap();
        fixtures::write_busybox_rootfs_tar(&dir.path().join("rootfs.tar")).unwrap();
        Home {
            dir,
            bin: bin.into(),
            next: AtomicUsize::new(0),
            remove_containers: false,
        }
    }

    /// A home with busybox imported as `busybox:latest` (no config changes), for builds.
    pub fn busybox(bin: impl Into<PathBuf>) -> Home {
        let h = Home::new(bin);
        h.import("busybox:latest", &[]);
        h
    }

    /// A home with busybox imported as `busybox` (`CMD ["sh"]`), for containers: those still
    /// there when it is dropped are killed and removed, so nothing outlives the test.
    pub fn containers(bin: impl Into<PathBuf>) -> Home {
        let mut h = Home::new(bin);
        h.remove_containers = true;
        h.import("busybox", &[r#"CMD ["sh"]"#]);
        h
    }

    /// The temp directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The busybox rootfs tar.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs.tar")
    }

    /// The `HOIST_HOME` the commands use.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// 0, 1, 2, …: for names of fresh files and directories in the temp directory.
    pub fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Imports the busybox rootfs again as `reference` with `changes` (`--change`); returns what
    /// `hoist import` printed (the image id), trimmed.
    pub fn import(&self, reference: &str, changes: &[&str]) -> String {
        let rootfs = self.rootfs();
        let mut args = vec!["import"];
        for c in changes {
            args.push("--change");
            args.push(c);
        }
        args.push(rootfs.to_str().unwrap());
        args.push(reference);
        self.ok(&args).trim().to_owned()
    }

    /// `hoist ARGS` with `HOIST_HOME` this home.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_in("home", args)
    }

    /// `hoist ARGS` with `HOIST_HOME` the directory `home` of the temp directory: a second home
    /// next to the first, sharing its rootfs.
    pub fn cmd_in(&self, home: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).env("HOIST_HOME", self.dir.path().join(home));
        c
    }

    /// Runs hoist with `stdin` (none: an empty stdin) in the home `home` of the temp directory.
    pub fn run_in(&self, home: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = self
            .cmd_in(home, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting hoist");
        let mut input = child.stdin.take().unwrap();
        if let Some(b) = stdin {
            input.write_all(b).unwrap();
        }
        drop(input);
        child.wait_with_output().expect("running hoist")
    }

    /// Runs hoist with `stdin` (none: an empty stdin).
    pub fn run_with(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.run_in("home", args, stdin)
    }

    /// Runs hoist with an empty stdin.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None)
    }

    /// Runs hoist; returns stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in("home", args)
    }

    /// [`Home::ok`] in the home `home` of the temp directory.
    pub fn ok_in(&self, home: &str, args: &[&str]) -> String {
        let out = self.run_in(home, args, None);
        assert!(
            out.status.success(),
            "hoist {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs hoist expecting it to fail; returns (exit code, stdout, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "hoist {args:?} should fail");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// `hoist inspect NAME` (an image or a container) as JSON.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["inspect", name]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// A container's `State.Status`.
    pub fn status(&self, name: &str) -> String {
        self.inspect(name)["State"]["Status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits (up to 20 s) for `f` to hold.
    pub fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A container's directory in the home.
    pub fn container_dir(&self, name: &str) -> PathBuf {
        let id = self.inspect(name)["Id"].as_str().unwrap().to_owned();
        self.home().join("containers").join(id)
    }

    /// Kills container `name`'s supervisor and process at once, as a crash (or the host going
    /// down) would.
    pub fn crash(&self, name: &str) {
        let state: Value = serde_json::from_slice(
            &std::fs::read(self.container_dir(name).join("state.json")).unwrap(),
        )
        .unwrap();
        for key in ["/supervisor/pid", "/init/pid"] {
            let pid = state
                .pointer(key)
                .and_then(|p| p.as_i64())
                .unwrap_or_else(|| panic!("{key}: {state}"));
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

impl Drop for Home {
    /// For [`Home::containers`]: containers still running are killed and removed; for every
    /// home, its networks and the default bridge go.
    fn drop(&mut self) {
        if self.remove_containers
            && let Ok(out) = self.cmd(&["ps", "-aq"]).output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
        // The networks a test made, and the default bridge, with their rules.
        let _ = self.cmd(&["network", "prune", "-f"]).output();
    }
}

/// Declares a test file's own `Home`: a wrapper of [`Home`] that derefs to it, so the file adds
/// (or shadows) only the helpers its tests need. `hoist_testsupport::home_type!(pub)` for a
/// support module shared by several test files; doc comments before the visibility go on the type.
#[macro_export]
macro_rules! home_type {
    ($(#[$m:meta])*) => {
        $crate::home_type!($(#[$m])* pub(self));
    };
    ($(#[$m:meta])* $vis:vis) => {
        $(#[$m])*
        $vis struct Home($crate::Home);

        impl ::std::ops::Deref for Home {
            type Target = $crate::Home;

            fn deref(&self) -> &$crate::Home {
                &self.0
            }
        }
    };
}
