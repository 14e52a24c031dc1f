#!/usr/bin/env bash
# Installs the peer tools hoist's interoperability tests and registry benchmark run against
# (cli/tests/interop.rs, cli/benches/registry.rs, conformance). Debian 12, as root; idempotent:
# a second run installs nothing and exits quickly.
#
#   docker-registry   the CNCF registry (reference server for the conformance suite and the bench)
#   skopeo            copy/inspect/list-tags/delete against a registry, OCI layouts
#   podman, buildah   push/pull with private storage (vfs), no daemon
#   busybox-static    the statically linked busybox the test images are made of
#   docker.io         dockerd (the tests start a private one); containerd, runc, tini come with it
#   uidmap, fuse-overlayfs   what podman/buildah expect to find (storage helpers, id mapping)
#   runc, crun        the reference OCI runtimes hoist's executor is checked and benchmarked against
#   umoci, debootstrap   hoist build's outputs are unpacked by umoci; a Debian minbase with gcc is a build test base
#   git               ADD <git ref> (hoist build) runs the git CLI; the tests serve repos with git daemon
#   openssh-client    ssh-agent, ssh-keygen, ssh-add: hoist build --ssh (RUN --mount=type=ssh) tests
#   apache2-utils     htpasswd: the CNCF registry's htpasswd auth files (credential and transfer tests)
#   procps            kill, ps: the benches signal the daemons they start (priority important, not required)
#   python3, python3-venv   the virtualenv moto's S3 server is installed into (below)
#   haproxy           the round-robin load balancer in front of several `hoist serve` replicas
#   nginx             the static-file reference row of the registry bench
#
# Repo-local peers, under target/peers/ (CI caches nothing outside the repository), for the
# object-storage driver's tests (storage/src/driver/object.rs), each against a real S3 server:
#   target/peers/bin/s3s-fs          s3s-fs from crates.io (cargo install, pinned)
#   target/peers/venv/bin/moto_server   moto[server] from PyPI, in its own virtualenv
#   postgresql        initdb, postgres, createdb: the PostgreSQL metadata and auth stores' tests start
#                     a private server (testsupport/src/postgres.rs; run as nobody through setpriv)
#
# cli/tests/tidy.rs checks that every program a test or bench starts is either in Debian's
# required base system or comes from a package listed here.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "peers.sh: run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

packages=(docker-registry skopeo podman buildah busybox-static uidmap fuse-overlayfs ca-certificates runc crun umoci debootstrap git openssh-client apache2-utils procps nftables iperf3 iproute2 systemd python3 python3-venv postgresql haproxy nginx)

# The docker engine: Debian's docker.io. It conflicts with docker-ce/docker-ce-cli from Docker's
# own repository; if those (or any dockerd) are already there, use them instead. A docker client
# installed as a loose binary (e.g. /usr/local/bin/docker) does not conflict, and talks to
# docker.io's dockerd (API 1.41) fine.
if ! command -v dockerd >/dev/null 2>&1; then
    if dpkg-query -W -f='${Status}' docker-ce-cli 2>/dev/null | grep -q 'ok installed'; then
        echo "peers.sh: docker-ce-cli is installed but no dockerd: install docker-ce from Docker's" \
             "repository, or remove docker-ce-cli so docker.io can be installed" >&2
        exit 1
    fi
    packages+=(docker.io)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "peers.sh: installing ${missing[*]}"
    # Installing docker.io would start the system docker daemon (bridge, iptables rules). The tests
    # start their own dockerd, so keep services from starting while installing, unless a policy
    # is already in place.
    created_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    cleanup() { [[ -n $created_policy ]] && rm -f /usr/sbin/policy-rc.d; return 0; }
    trap cleanup EXIT
    apt_get update
    apt_get install -y --no-install-recommends "${missing[@]}"
fi

# Sanity checks, so a broken install fails here and not in the middle of a test.
for tool in docker-registry skopeo podman buildah dockerd docker runc crun umoci debootstrap ssh-agent ssh-add ssh-keygen htpasswd git nft iperf3 ip haproxy nginx; do
    command -v "$tool" >/dev/null || { echo "peers.sh: $tool missing after install" >&2; exit 1; }
done
# PostgreSQL's programs are not on PATH: the newest version directory, as the tests find it.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
for tool in initdb postgres createdb; do
    [[ -n $pg_bin && -x $pg_bin/$tool ]] || { echo "peers.sh: PostgreSQL's $tool missing after install" >&2; exit 1; }
done
busybox=$(command -v busybox)
if LC_ALL=C readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter' ||
   file "$busybox" 2>/dev/null | grep -q 'dynamically linked'; then
    echo "peers.sh: $busybox is dynamically linked; busybox-static should provide it" >&2
    exit 1
fi
# skopeo/podman/buildah refuse to copy anything without a trust policy.
if [[ ! -e /etc/containers/policy.json ]]; then
    mkdir -p /etc/containers
    printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >/etc/containers/policy.json
fi
# Repo-local peers: the S3 servers of the object-storage driver's tests. Idempotent: an installed
# peer of the pinned version is kept.
repo=$(cd "$(dirname "$0")/.." && pwd)
peers="$repo/target/peers"
S3S_FS_VERSION=0.14.1   # the newest s3s-fs that builds on the pinned toolchain (0.15 needs rustc 1.96)
MOTO_VERSION=5.2.1
if ! [[ -x $peers/bin/s3s-fs ]] || ! grep -qs "\"s3s-fs $S3S_FS_VERSION " "$peers/.crates.toml"; then
    echo "peers.sh: installing s3s-fs $S3S_FS_VERSION into $peers/bin"
    (cd "$repo" && cargo install s3s-fs --version "=$S3S_FS_VERSION" --features binary --locked \
        --root "$peers" --target-dir "$peers/build")
    rm -rf "$peers/build"
fi
if ! [[ -x $peers/venv/bin/moto_server ]] ||
   ! "$peers/venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    echo "peers.sh: installing moto[server] $MOTO_VERSION into $peers/venv"
    rm -rf "$peers/venv"
    python3 -m venv "$peers/venv"
    "$peers/venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
for tool in "$peers/bin/s3s-fs" "$peers/venv/bin/moto_server"; do
    [[ -x $tool ]] || { echo "peers.sh: $tool missing after install" >&2; exit 1; }
done

echo "peers.sh: peers ready ($(skopeo --version); $(podman --version); $(buildah --version | cut -d' ' -f1-3); $(dockerd --version))"
