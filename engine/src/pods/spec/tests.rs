use super::*;

/// PODS.md's examples, verbatim (shared with `cli/tests/pod.rs`).
const MC1: &str = include_str!("../testdata/mc1.yaml");

const MC2: &str = include_str!("../testdata/mc2.yaml");

const HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

fn container(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.to_owned(),
        image: image.to_owned(),
        command: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        working_dir: None,
        volume_mounts: Vec::new(),
        ports: Vec::new(),
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: false,
    }
}

/// The pod `p` with `spec` (indented as under `spec:`).
fn with_spec(spec: &str) -> String {
    format!("{HEAD}spec:\n{spec}")
}

fn parse_spec(spec: &str) -> PodSpec {
    parse(&with_spec(spec), "pod.yaml").unwrap()
}

fn err(text: &str) -> String {
    parse(text, "pod.yaml").unwrap_err().to_string()
}

fn spec_err(spec: &str) -> String {
    err(&with_spec(spec))
}

/// The pod `p` with one container `a`, whose further fields are `fields`.
fn container_err(fields: &str) -> String {
    spec_err(&format!(
        "  containers:\n  - name: a\n    image: busybox\n{fields}"
    ))
}

fn parse_container(fields: &str) -> ContainerSpec {
    let mut pod = parse_spec(&format!(
        "  containers:\n  - name: a\n    image: busybox\n{fields}"
    ));
    assert_eq!(pod.containers.len(), 1);
    pod.containers.remove(0)
}

#[test]
fn pod_mc1_shares_an_empty_dir() {
    let pod = parse(MC1, "mc1.yaml").unwrap();
    let mut first = container("1st", "nginx");
    first.volume_mounts = vec![mount("html", "/usr/share/nginx/html")];
    let mut second = container("2nd", "debian");
    second.volume_mounts = vec![mount("html", "/html")];
    second.command = strings(&["/bin/sh", "-c"]);
    second.args = strings(&["while true; do date >> /html/index.html; sleep 1; done"]);
    assert_eq!(
        pod,
        PodSpec {
            name: "mc1".to_owned(),
            labels: BTreeMap::new(),
            hostname: None,
            restart_policy: RestartPolicy::Always,
            init_containers: Vec::new(),
            containers: vec![first, second],
            volumes: vec![VolumeSpec {
                name: "html".to_owned(),
                source: VolumeSource::EmptyDir,
            }],
        }
    );
}

#[test]
fn pod_mc2_never_restarts() {
    let pod = parse(MC2, "mc2.yaml").unwrap();
    let mut producer = container("producer", "allingeek/ch6_ipc");
    producer.command = strings(&["./ipc", "-producer"]);
    let mut consumer = container("consumer", "allingeek/ch6_ipc");
    consumer.command = strings(&["./ipc", "-consumer"]);
    assert_eq!(
        pod,
        PodSpec {
            name: "mc2".to_owned(),
            labels: BTreeMap::new(),
            hostname: None,
            restart_policy: RestartPolicy::Never,
            init_containers: Vec::new(),
            containers: vec![producer, consumer],
            volumes: Vec::new(),
        }
    );
}

#[test]
fn pod_every_field_hoist_takes() {
    let text = r#"---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
    app.kubernetes.io/part-of: shop
    empty: ""
spec:
  hostname: front
  restartPolicy: OnFailure
  volumes:
  - name: data
    hostPath:
      path: /srv/data
      type: Directory
  - name: plain
    hostPath:
      path: /srv/plain
  - name: scratch
  initContainers:
  - name: init
    image: busybox
    command: [sh, -c, "echo hi > /data/x"]
    volumeMounts:
    - {name: data, mountPath: /data}
  containers:
  - name: web
    image: docker.io/library/nginx:1
    args: [nginx, -g, "daemon off;"]
    env:
    - name: MODE
      value: prod
    - name: EMPTY
      value: ""
    - name: UNSET
    workingDir: /srv
    volumeMounts:
    - name: data
      mountPath: /data
      readOnly: true
    - name: scratch
      mountPath: /tmp/scratch/
      readOnly: false
    ports:
    - containerPort: 80
      hostPort: 8080
      hostIP: 127.0.0.1
      name: http
    - containerPort: 53
      hostPort: 5353
      protocol: UDP
    - containerPort: 53
      hostPort: 5353
      protocol: TCP
    - containerPort: 9090
      hostPort: 0
      hostIP: ""
"#;
    let pod = parse(text, "web.yaml").unwrap();
    assert_eq!(pod.name, "web");
    assert_eq!(
        pod.labels,
        BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("app.kubernetes.io/part-of".to_owned(), "shop".to_owned()),
            ("empty".to_owned(), String::new()),
        ])
    );
    assert_eq!(pod.hostname.as_deref(), Some("front"));
    assert_eq!(pod.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(
        pod.volumes,
        vec![
            VolumeSpec {
                name: "data".to_owned(),
                source: VolumeSource::HostPath(PathBuf::from("/srv/data")),
            },
            VolumeSpec {
                name: "plain".to_owned(),
                source: VolumeSource::HostPath(PathBuf::from("/srv/plain")),
            },
            VolumeSpec {
                name: "scratch".to_owned(),
                source: VolumeSource::EmptyDir,
            },
        ]
    );
    let mut init = container("init", "busybox");
    init.command = strings(&["sh", "-c", "echo hi > /data/x"]);
    init.volume_mounts = vec![mount("data", "/data")];
    assert_eq!(pod.init_containers, vec![init]);

    let mut web = container("web", "docker.io/library/nginx:1");
    web.args = strings(&["nginx", "-g", "daemon off;"]);
    web.env = vec![
        ("MODE".to_owned(), "prod".to_owned()),
        ("EMPTY".to_owned(), String::new()),
        ("UNSET".to_owned(), String::new()),
    ];
    web.working_dir = Some("/srv".to_owned());
    web.volume_mounts = vec![
        VolumeMount {
            read_only: true,
            ..mount("data", "/data")
        },
        mount("scratch", "/tmp/scratch/"),
    ];
    let port = |container_port, host_port, protocol, host_ip, name: Option<&str>| PortSpec {
        container_port,
        host_port,
        protocol,
        host_ip,
        name: name.map(str::to_owned),
    };
    web.ports = vec![
        port(
            80,
            Some(8080),
            Protocol::Tcp,
            Some(Ipv4Addr::LOCALHOST),
            Some("http"),
        ),
        port(53, Some(5353), Protocol::Udp, None, None),
        port(53, Some(5353), Protocol::Tcp, None, None),
        port(9090, None, Protocol::Tcp, None, None),
    ];
    assert_eq!(pod.containers, vec![web]);
}

#[test]
fn pod_null_fields_are_absent() {
    let c = parse_container("    args:\n    env: ~\n    workingDir: \"\"\n");
    assert_eq!(c, container("a", "busybox"));
    let pod = parse_spec(
        "  hostname:\n  restartPolicy:\n  containers:\n  - name: a\n    image: busybox\n",
    );
    assert_eq!(pod.hostname, None);
    assert_eq!(pod.restart_policy, RestartPolicy::Always);
}

#[test]
fn pod_unimplemented_fields_are_named() {
    let two = "  containers:\n  - name: a\n    image: busybox\n  - name: b\n    image: busybox\n    livenessProbe:\n      exec:\n        command: [true]\n";
    assert_eq!(
        spec_err(two),
        "pod.yaml: spec.containers[1].livenessProbe: hoist does not implement this field"
    );
    assert_eq!(
        err(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: default\nspec:\n  containers:\n  - name: a\n    image: busybox\n"
        ),
        "pod.yaml: metadata.namespace: hoist does not implement this field"
    );
    assert_eq!(
        err(&format!(
            "{HEAD}status: {{}}\nspec:\n  containers:\n  - name: a\n    image: busybox\n"
        )),
        "pod.yaml: status: hoist does not implement this field"
    );
    assert_eq!(
        spec_err("  nodeName: n1\n  containers:\n  - name: a\n    image: busybox\n"),
        "pod.yaml: spec.nodeName: hoist does not implement this field"
    );
    // a null field is still named: it was written
    assert_eq!(
        container_err("    imagePullPolicy:\n"),
        "pod.yaml: spec.containers[0].imagePullPolicy: hoist does not implement this field"
    );
    assert_eq!(
        container_err(
            "    env:\n    - name: X\n      valueFrom:\n        fieldRef: {fieldPath: metadata.name}\n"
        ),
        "pod.yaml: spec.containers[0].env[0].valueFrom: hoist does not implement this field"
    );
    assert_eq!(
        container_err("    volumeMounts:\n    - name: v\n      mountPath: /v\n      subPath: x\n"),
        "pod.yaml: spec.containers[0].volumeMounts[0].subPath: hoist does not implement this field"
    );
    assert_eq!(
        container_err("    ports:\n    - containerPort: 80\n      hostport: 80\n"),
        "pod.yaml: spec.containers[0].ports[0].hostport: hoist does not implement this field"
    );
    assert_eq!(
        spec_err(
            "  initContainers:\n  - name: i\n    image: busybox\n    restartPolicy: Always\n  containers:\n  - name: a\n    image: busybox\n"
        ),
        "pod.yaml: spec.initContainers[0].restartPolicy: hoist does not implement this field"
    );
    assert_eq!(
        spec_err(
            "  volumes:\n  - name: v\n    emptyDir:\n      medium: Memory\n  containers:\n  - name: a\n    image: busybox\n"
        ),
        "pod.yaml: spec.volumes[0].emptyDir.medium: hoist does not implement this field"
    );
    assert_eq!(
        spec_err(
            "  volumes:\n  - name: v\n    configMap:\n      name: c\n  containers:\n  - name: a\n    image: busybox\n"
        ),
        "pod.yaml: spec.volumes[0].configMap: hoist does not implement this field"
    );
    let e = parse(&with_spec(two), "pod.yaml").unwrap_err();
    assert_eq!(e.path(), Some("spec.containers[1].livenessProbe"));
    assert!(matches!(e, PodSpecError::Unsupported { .. }));
}

#[test]
fn pod_api_version_and_kind() {
    let body = "metadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: busybox\n";
    assert_eq!(
        err(&format!("apiVersion: apps/v1\nkind: Pod\n{body}")),
        "pod.yaml: apiVersion: \"apps/v1\" is not supported, hoist runs apiVersion v1 Pods"
    );
    assert_eq!(
        err(&format!("kind: Pod\n{body}")),
        "pod.yaml: apiVersion: required"
    );
    assert_eq!(
        err(&format!("apiVersion: v1\nkind: Deployment\n{body}")),
        "pod.yaml: kind: \"Deployment\" is not supported, hoist pod run takes kind Pod"
    );
    assert_eq!(
        err(&format!("apiVersion: v1\n{body}")),
        "pod.yaml: kind: required"
    );
    assert_eq!(
        err(&format!("apiVersion: 1\nkind: Pod\n{body}")),
        "pod.yaml: apiVersion: expected a string, found a number (quote it)"
    );
}

#[test]
fn pod_one_yaml_document() {
    assert_eq!(
        err(&format!("{MC2}---\n{MC1}")),
        "pod.yaml: holds 2 YAML documents, hoist pod run takes one Pod"
    );
    assert_eq!(err(""), "pod.yaml: no YAML document, expected a v1 Pod");
    assert_eq!(
        err("# nothing\n"),
        "pod.yaml: no YAML document, expected a v1 Pod"
    );
    assert_eq!(
        err("- a\n- b\n"),
        "pod.yaml: expected a v1 Pod (a mapping), found a list"
    );
    // a trailing separator adds no document
    assert!(parse(&format!("{MC2}---\n"), "pod.yaml").is_ok());
}

#[test]
fn pod_invalid_yaml_has_a_location() {
    let e = err("apiVersion: v1\nkind: [Pod\n");
    assert!(e.starts_with("pod.yaml: invalid YAML: "), "{e}");
    assert!(e.contains("line"), "{e}");
    let e = err("apiVersion: v1\nkind: Pod\nkind: Pod\n");
    assert!(e.starts_with("pod.yaml: invalid YAML: "), "{e}");
    assert_eq!(
        e,
        "pod.yaml: invalid YAML: duplicate mapping key `kind` is not allowed here at line 3, column 1"
    );
}

#[test]
fn pod_metadata_is_required() {
    assert_eq!(
        err("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    image: busybox\n"),
        "pod.yaml: metadata.name: required"
    );
    assert_eq!(
        err(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {a: b}\nspec:\n  containers:\n  - name: a\n    image: busybox\n"
        ),
        "pod.yaml: metadata.name: required"
    );
    assert_eq!(err(HEAD), "pod.yaml: spec: required");
    assert_eq!(
        err(&format!("{HEAD}spec: [a]\n")),
        "pod.yaml: spec: expected a mapping, found a list"
    );
}

#[test]
fn pod_names_are_dns_labels() {
    let rule = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";
    let body = "spec:\n  containers:\n  - name: a\n    image: busybox\n";
    assert_eq!(
        err(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: My_Pod\n{body}"
        )),
        format!("pod.yaml: metadata.name: \"My_Pod\" is not a valid name: {rule}")
    );
    assert_eq!(
        err(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"\"\n{body}"
        )),
        format!("pod.yaml: metadata.name: \"\" is not a valid name: {rule}")
    );
    let long = "a".repeat(64);
    assert_eq!(
        spec_err(&format!(
            "  containers:\n  - name: {long}\n    image: busybox\n"
        )),
        format!("pod.yaml: spec.containers[0].name: \"{long}\" is not a valid name: {rule}")
    );
    assert!(
        parse_spec(&format!(
            "  containers:\n  - name: {}\n    image: busybox\n",
            &long[1..]
        ))
        .containers[0]
            .name
            .len()
            == 63
    );
    assert_eq!(
        spec_err("  containers:\n  - name: web-\n    image: busybox\n"),
        format!("pod.yaml: spec.containers[0].name: \"web-\" is not a valid name: {rule}")
    );
    assert_eq!(
        spec_err("  containers:\n  - image: busybox\n"),
        "pod.yaml: spec.containers[0].name: required"
    );
    assert_eq!(
        spec_err("  hostname: Front.End\n  containers:\n  - name: a\n    image: busybox\n"),
        format!("pod.yaml: spec.hostname: \"Front.End\" is not a valid name: {rule}")
    );
    assert_eq!(
        spec_err("  volumes:\n  - name: Data\n  containers:\n  - name: a\n    image: busybox\n"),
        format!("pod.yaml: spec.volumes[0].name: \"Data\" is not a valid name: {rule}")
    );
}

#[test]
fn pod_container_names_are_unique() {
    assert_eq!(
        spec_err(
            "  initContainers:\n  - name: web\n    image: busybox\n  containers:\n  - name: a\n    image: busybox\n  - name: web\n    image: nginx\n"
        ),
        "pod.yaml: spec.containers[1].name: \"web\" is already the name of spec.initContainers[0]"
    );
    assert_eq!(
        spec_err(
            "  containers:\n  - name: a\n    image: busybox\n  - name: a\n    image: busybox\n"
        ),
        "pod.yaml: spec.containers[1].name: \"a\" is already the name of spec.containers[0]"
    );
    assert_eq!(
        spec_err(
            "  initContainers:\n  - name: i\n    image: busybox\n  - name: i\n    image: busybox\n  containers:\n  - name: a\n    image: busybox\n"
        ),
        "pod.yaml: spec.initContainers[1].name: \"i\" is already the name of spec.initContainers[0]"
    );
}

#[test]
fn pod_needs_a_container() {
    let msg = "pod.yaml: spec.containers: a pod needs at least one container";
    assert_eq!(spec_err("  containers: []\n"), msg);
    assert_eq!(spec_err("  restartPolicy: Never\n"), msg);
    assert_eq!(
        spec_err("  initContainers:\n  - name: i\n    image: busybox\n"),
        msg
    );
    assert_eq!(
        spec_err("  containers: {name: a}\n"),
        "pod.yaml: spec.containers: expected a list, found a mapping"
    );
    assert_eq!(
        spec_err("  containers:\n  - busybox\n"),
        "pod.yaml: spec.containers[0]: expected a mapping, found a string"
    );
}

#[test]
fn pod_image_is_required() {
    assert_eq!(
        spec_err("  containers:\n  - name: a\n"),
        "pod.yaml: spec.containers[0].image: required"
    );
    assert_eq!(
        spec_err("  containers:\n  - name: a\n    image: \" \"\n"),
        "pod.yaml: spec.containers[0].image: must not be empty"
    );
}

#[test]
fn pod_mounts_name_declared_volumes() {
    assert_eq!(
        container_err("    volumeMounts:\n    - name: data\n      mountPath: /data\n"),
        "pod.yaml: spec.containers[0].volumeMounts[0].name: no volume \"data\" in spec.volumes"
    );
    assert_eq!(
        container_err("    volumeMounts:\n    - mountPath: /data\n"),
        "pod.yaml: spec.containers[0].volumeMounts[0].name: required"
    );
}

#[test]
fn pod_volume_names_are_unique() {
    assert_eq!(
        spec_err(
            "  volumes:\n  - name: v\n    emptyDir: {}\n  - name: v\n    hostPath:\n      path: /srv\n  containers:\n  - name: a\n    image: busybox\n"
        ),
        "pod.yaml: spec.volumes[1].name: \"v\" is already the name of spec.volumes[0]"
    );
}

fn with_volume(volume: &str, mount_fields: &str) -> String {
    spec_err(&format!(
        "  volumes:\n  - name: v\n{volume}  containers:\n  - name: a\n    image: busybox\n    volumeMounts:\n    - name: v\n{mount_fields}"
    ))
}

#[test]
fn pod_mount_paths_are_absolute_and_unique() {
    assert_eq!(
        with_volume("", "      mountPath: data\n"),
        "pod.yaml: spec.containers[0].volumeMounts[0].mountPath: \"data\" is not an absolute path"
    );
    assert_eq!(
        with_volume("", "      mountPath: /\n"),
        "pod.yaml: spec.containers[0].volumeMounts[0].mountPath: a volume cannot be mounted on /"
    );
    assert_eq!(
        with_volume("", ""),
        "pod.yaml: spec.containers[0].volumeMounts[0].mountPath: required"
    );
    assert_eq!(
        with_volume(
            "",
            "      mountPath: /d\n    - name: v\n      mountPath: /d\n"
        ),
        "pod.yaml: spec.containers[0].volumeMounts[1].mountPath: \"/d\" is already mounted by spec.containers[0].volumeMounts[0]"
    );
    assert_eq!(
        with_volume("", "      mountPath: /d\n      readOnly: \"yes\"\n"),
        "pod.yaml: spec.containers[0].volumeMounts[0].readOnly: expected true or false, found a string"
    );
}

#[test]
fn pod_host_paths() {
    assert_eq!(
        with_volume("    hostPath:\n      path: srv\n", "      mountPath: /d\n"),
        "pod.yaml: spec.volumes[0].hostPath.path: \"srv\" is not an absolute path"
    );
    assert_eq!(
        with_volume("    hostPath: {}\n", "      mountPath: /d\n"),
        "pod.yaml: spec.volumes[0].hostPath.path: required"
    );
    assert_eq!(
        with_volume(
            "    hostPath:\n      path: /srv\n      type: DirectoryOrCreate\n",
            "      mountPath: /d\n"
        ),
        "pod.yaml: spec.volumes[0].hostPath.type: \"DirectoryOrCreate\" is not supported, hoist binds an existing directory (type Directory, or none)"
    );
    assert_eq!(
        with_volume(
            "    hostPath:\n      path: /srv\n    emptyDir: {}\n",
            "      mountPath: /d\n"
        ),
        "pod.yaml: spec.volumes[0]: has both emptyDir and hostPath, a volume has one source"
    );
    let pod = parse(
            &with_spec("  volumes:\n  - name: v\n    hostPath:\n      path: /srv\n      type: \"\"\n  containers:\n  - name: a\n    image: busybox\n"),
            "pod.yaml",
        )
        .unwrap();
    assert_eq!(pod.volumes[0].source, VolumeSource::HostPath("/srv".into()));
}

#[test]
fn pod_env_entries() {
    assert_eq!(
        container_err("    env:\n    - value: x\n"),
        "pod.yaml: spec.containers[0].env[0].name: required"
    );
    assert_eq!(
        container_err("    env:\n    - name: A=B\n"),
        "pod.yaml: spec.containers[0].env[0].name: \"A=B\" is not a variable name: not empty, without '='"
    );
    assert_eq!(
        container_err(
            "    env:\n    - name: A\n      value: x\n    - name: PORT\n      value: 8080\n"
        ),
        "pod.yaml: spec.containers[0].env[1].value: expected a string, found a number (quote it)"
    );
    assert_eq!(
        container_err("    env:\n      A: b\n"),
        "pod.yaml: spec.containers[0].env: expected a list, found a mapping"
    );
}

#[test]
fn pod_command_and_args_are_lists_of_strings() {
    assert_eq!(
        container_err("    command: /bin/sh\n"),
        "pod.yaml: spec.containers[0].command: expected a list of strings, found a string"
    );
    assert_eq!(
        container_err("    args: [sleep, 10]\n"),
        "pod.yaml: spec.containers[0].args[1]: expected a string, found a number (quote it)"
    );
    assert_eq!(
        container_err("    workingDir: srv\n"),
        "pod.yaml: spec.containers[0].workingDir: \"srv\" is not an absolute path"
    );
}

#[test]
fn pod_port_numbers() {
    for (value, shown) in [("0", "0"), ("65536", "65536"), ("-1", "-1"), ("8.5", "8.5")] {
        assert_eq!(
            container_err(&format!("    ports:\n    - containerPort: {value}\n")),
            format!(
                "pod.yaml: spec.containers[0].ports[0].containerPort: {shown} is not a port number (1 to 65535)"
            )
        );
    }
    assert_eq!(
        container_err("    ports:\n    - containerPort: \"80\"\n"),
        "pod.yaml: spec.containers[0].ports[0].containerPort: expected a port number (1 to 65535), found a string"
    );
    assert_eq!(
        container_err("    ports:\n    - hostPort: 80\n"),
        "pod.yaml: spec.containers[0].ports[0].containerPort: required"
    );
    assert_eq!(
        container_err("    ports:\n    - containerPort: 80\n      hostPort: 70000\n"),
        "pod.yaml: spec.containers[0].ports[0].hostPort: 70000 is not a port number (1 to 65535)"
    );
    let c = parse_container(
        "    ports:\n    - containerPort: 65535\n    - containerPort: 1\n      hostPort: 65535\n",
    );
    assert_eq!(c.ports[0].container_port, 65535);
    assert_eq!(c.ports[1].host_port, Some(65535));
}

#[test]
fn pod_port_protocol_host_ip_and_name() {
    assert_eq!(
        container_err("    ports:\n    - containerPort: 80\n      protocol: SCTP\n"),
        "pod.yaml: spec.containers[0].ports[0].protocol: \"SCTP\" is not supported, hoist publishes TCP or UDP"
    );
    assert_eq!(
        container_err("    ports:\n    - containerPort: 80\n      protocol: tcp\n"),
        "pod.yaml: spec.containers[0].ports[0].protocol: \"tcp\" is not supported, hoist publishes TCP or UDP"
    );
    assert_eq!(
        container_err(
            "    ports:\n    - containerPort: 80\n      hostPort: 80\n      hostIP: ::1\n"
        ),
        "pod.yaml: spec.containers[0].ports[0].hostIP: \"::1\" is not an IPv4 address"
    );
    assert_eq!(
        container_err("    ports:\n    - containerPort: 80\n      hostIP: 127.0.0.1\n"),
        "pod.yaml: spec.containers[0].ports[0].hostIP: set without a hostPort, it would publish nothing"
    );
    assert_eq!(
        container_err("    ports:\n    - containerPort: 80\n      name: Web_Port\n"),
        "pod.yaml: spec.containers[0].ports[0].name: \"Web_Port\" is not a valid port name: lowercase letters, digits and '-', at least one letter, no '-' at either end nor two in a row, at most 15 characters"
    );
    assert!(
        container_err("    ports:\n    - containerPort: 80\n      name: \"8080\"\n")
            .contains("is not a valid port name")
    );
}

#[test]
fn pod_host_ports_are_unique() {
    assert_eq!(
        spec_err(
            "  containers:\n  - name: a\n    image: busybox\n    ports:\n    - containerPort: 80\n      hostPort: 8080\n  - name: b\n    image: busybox\n    ports:\n    - containerPort: 81\n      hostPort: 8080\n      hostIP: 127.0.0.1\n"
        ),
        "pod.yaml: spec.containers[1].ports[0].hostPort: 8080/TCP is already published by spec.containers[0].ports[0]"
    );
    assert_eq!(
        spec_err(
            "  initContainers:\n  - name: i\n    image: busybox\n    ports:\n    - containerPort: 53\n      hostPort: 53\n      protocol: UDP\n  containers:\n  - name: a\n    image: busybox\n    ports:\n    - containerPort: 53\n      hostPort: 53\n    - containerPort: 54\n      hostPort: 53\n      protocol: UDP\n"
        ),
        "pod.yaml: spec.containers[0].ports[1].hostPort: 53/UDP is already published by spec.initContainers[0].ports[0]"
    );
}

#[test]
fn pod_restart_policy() {
    for (given, want) in [
        ("Always", RestartPolicy::Always),
        ("OnFailure", RestartPolicy::OnFailure),
        ("Never", RestartPolicy::Never),
    ] {
        let pod = parse_spec(&format!(
            "  restartPolicy: {given}\n  containers:\n  - name: a\n    image: busybox\n"
        ));
        assert_eq!(pod.restart_policy, want);
        assert_eq!(want.to_string(), given);
    }
    assert_eq!(
        spec_err("  restartPolicy: always\n  containers:\n  - name: a\n    image: busybox\n"),
        "pod.yaml: spec.restartPolicy: \"always\" is not one of Always, OnFailure, Never"
    );
}

#[test]
fn pod_labels() {
    let body = "spec:\n  containers:\n  - name: a\n    image: busybox\n";
    assert_eq!(
        err(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    tier: 1\n{body}"
        )),
        "pod.yaml: metadata.labels.tier: expected a string, found a number (quote it)"
    );
    assert_eq!(
        err(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    tier: back end\n{body}"
        )),
        "pod.yaml: metadata.labels.tier: \"back end\" is not a valid label value: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
    );
    assert_eq!(
        err(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    Bad/x: y\n{body}"
        )),
        "pod.yaml: metadata.labels.Bad/x: \"Bad/x\" is not a valid label key: an optional DNS subdomain and '/', then letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
    );
    assert_eq!(
        err(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: [a]\n{body}"
        )),
        "pod.yaml: metadata.labels: expected a mapping, found a list"
    );
}

#[test]
fn pod_error_messages_start_with_the_file() {
    let e = parse("kind: Pod\n", "/tmp/x/web.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "/tmp/x/web.yaml: apiVersion: required");
}
