use std::time::{Duration, UNIX_EPOCH};

use super::*;

pub(super) fn config(id: &str, name: &str) -> ContainerConfig {
    ContainerConfig {
        labels: Default::default(),
        id: id.to_owned(),
        name: name.to_owned(),
        created: rfc3339(SystemTime::now()),
        created_unix: now_unix(),
        image: "busybox".to_owned(),
        image_id: "sha256:abc".to_owned(),
        image_repo: "docker.io/library/busybox".to_owned(),
        image_manifest_digest: "sha256:def".to_owned(),
        image_manifest: Value::Null,
        image_config: Value::Null,
        layers: Vec::new(),
        options: RunOptions::default(),
        path: "sh".to_owned(),
        args: Vec::new(),
        stop_signal: None,
        stop_timeout: None,
        auto_remove: false,
        mounts: vec![MountRecord {
            kind: "volume".to_owned(),
            name: Some("data".to_owned()),
            source: "/v/data/_data".into(),
            destination: "/data".to_owned(),
            read_only: false,
            anonymous: false,
            no_copy: false,
            bind: Default::default(),
        }],
        network_mode: "bridge".to_owned(),
        log_max_size: 1 << 20,
        log_max_files: 2,
        runtime: None,
        restart_policy: Default::default(),
        healthcheck: None,
    }
}

#[test]
fn ids_times_and_durations() {
    let id = new_id();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(id, new_id());
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::new(1_709_251_199, 5)),
        "2024-02-29T23:59:59.000000005Z"
    );
    assert_eq!(human_duration(0), "Less than a second");
    assert_eq!(human_duration(5), "5 seconds");
    assert_eq!(human_duration(90), "About a minute");
    assert_eq!(human_duration(600), "10 minutes");
    assert_eq!(human_duration(3 * 3600), "3 hours");
}

#[test]
fn signals_parse() {
    assert_eq!(parse_signal("TERM"), Some(libc::SIGTERM));
    assert_eq!(parse_signal("SIGKILL"), Some(libc::SIGKILL));
    assert_eq!(parse_signal("sigusr1"), Some(libc::SIGUSR1));
    assert_eq!(parse_signal("9"), Some(9));
    assert_eq!(parse_signal("RTMIN+1"), Some(libc::SIGRTMIN() + 1));
    assert_eq!(parse_signal("NOPE"), None);
    assert_eq!(parse_signal("0"), None);
}

#[test]
fn statuses_read_like_docker() {
    let mut s = State::created();
    assert_eq!(s.describe(100), "Created");
    s.status = Status::Running;
    s.started_unix = Some(95);
    assert_eq!(s.describe(100), "Up 5 seconds");
    s.status = Status::Exited;
    s.exit_code = Some(3);
    s.finished_unix = Some(100 - 120);
    assert_eq!(s.describe(100), "Exited (3) 2 minutes ago");
}

#[test]
fn names_are_unique_and_resolve() {
    let home = tempfile::tempdir().unwrap();
    let store = ContainerStore::open(home.path()).unwrap();
    let id = new_id();
    let name = store.reserve_name(Some("web"), &id).unwrap();
    assert_eq!(name, "web");
    let c = store.create(&config(&id, &name)).unwrap();
    assert_eq!(c.state.status, Status::Created);
    let other = new_id();
    let err = store.reserve_name(Some("web"), &other).unwrap_err();
    assert!(matches!(err, ContainerError::NameInUse { .. }), "{err}");
    assert!(err.to_string().contains(&id));
    assert!(store.reserve_name(Some("bad name"), &other).is_err());
    let random = store.reserve_name(None, &other).unwrap();
    assert!(random.contains('_'));
    assert_eq!(store.resolve("web").unwrap(), id);
    assert_eq!(store.resolve("/web").unwrap(), id);
    assert_eq!(store.resolve(&id[..12]).unwrap(), id);
    assert_eq!(store.resolve(&id).unwrap(), id);
    assert!(matches!(
        store.resolve("nope"),
        Err(ContainerError::NotFound(_))
    ));
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(
        store.volumes_in_use().unwrap()["data"],
        std::slice::from_ref(&id)
    );
    // Removal frees the name.
    let c = store.get("web").unwrap();
    store.remove(&c).unwrap();
    assert!(!c.dir.exists());
    assert!(matches!(store.get("web"), Err(ContainerError::NotFound(_))));
    assert_eq!(store.reserve_name(Some("web"), &other).unwrap(), "web");
}

#[test]
fn a_dead_supervisor_never_leaves_a_running_container() {
    let home = tempfile::tempdir().unwrap();
    let store = ContainerStore::open(home.path()).unwrap();
    let id = new_id();
    let name = store.reserve_name(None, &id).unwrap();
    store.create(&config(&id, &name)).unwrap();
    // A "supervisor" that has exited, and an "init" that still runs.
    let mut sup = std::process::Command::new("true").spawn().unwrap();
    let sup_id = ProcessId::of(sup.id() as i32).unwrap();
    sup.wait().unwrap();
    let mut init = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let init_id = ProcessId::of(init.id() as i32).unwrap();
    assert!(init_id.alive());
    let mut st = store.raw_state(&id).unwrap();
    st.status = Status::Running;
    st.supervisor = Some(sup_id);
    st.init = Some(init_id);
    st.started_unix = Some(now_unix());
    st.started_at = Some(rfc3339(SystemTime::now()));
    store.write_state(&id, &st).unwrap();
    let read = store.state(&id).unwrap();
    assert_eq!(read.status, Status::Exited);
    assert_eq!(read.exit_code, Some(255));
    assert!(read.error.contains("supervisor"), "{}", read.error);
    // The orphaned init was killed.
    let status = init.wait().unwrap();
    assert!(!status.success());
    // And it is recorded: the raw state says exited too.
    assert_eq!(store.raw_state(&id).unwrap().status, Status::Exited);
    // A live supervisor keeps it running.
    let me = ProcessId::current().unwrap();
    st.supervisor = Some(me);
    st.init = None;
    store.write_state(&id, &st).unwrap();
    assert_eq!(store.state(&id).unwrap().status, Status::Running);
    assert!(matches!(
        store.remove(&store.get(&id).unwrap()),
        Err(ContainerError::Running(_))
    ));
}
