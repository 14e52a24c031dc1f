//! Shared by the container tests: a private `HOIST_HOME` with busybox images imported through
//! `hoist import` of a busybox rootfs (`hoist_conformance::fixtures`), and the `hoist` binary.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hoist_conformance::fixtures;
use serde_json::Value;

pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    /// A new home with `busybox` (CMD sh) imported.
    pub fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs.tar");
        fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
        let h = Home { dir };
        h.import("busybox", &[r#"CMD ["sh"]"#]);
        h
    }

    /// Imports the busybox rootfs again as `reference` with `changes`.
    pub fn import(&self, reference: &str, changes: &[&str]) -> String {
        let rootfs = self.dir.path().join("rootfs.tar");
        let mut args = vec!["import".to_owned()];
        for c in changes {
            args.push("--change".to_owned());
            args.push((*c).to_owned());
        }
        args.push(rootfs.display().to_string());
        args.push(reference.to_owned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(&a).trim().to_owned()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
        c.args(args).env("HOIST_HOME", self.home());
        c
    }

    pub fn run_with(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = self
            .cmd(args)
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

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None)
    }

    /// Runs hoist; returns stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
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

    /// `hoist inspect NAME` as JSON.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["inspect", name]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

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

    pub fn container_dir(&self, name: &str) -> PathBuf {
        let id = self.inspect(name)["Id"].as_str().unwrap().to_owned();
        self.home().join("containers").join(id)
    }
}

impl Drop for Home {
    /// Containers still running are killed and removed, so nothing outlives the test.
    fn drop(&mut self) {
        if let Ok(out) = self.cmd(&["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
    }
}

/// The line of `/proc/self/status`-like text that starts with `key`.
pub fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
