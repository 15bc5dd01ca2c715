#!/usr/bin/env bash
# Sets up a container engine for `make test-compose` on a machine with no
# Docker daemon, and the docker compose CLI plugin. Idempotent: every step is
# skipped when its result is already there, so a second run takes a second.
#
# With a reachable Docker daemon (DOCKER_HOST set, or /var/run/docker.sock
# answering) and `docker compose` installed, it does nothing at all.
#
# Otherwise:
#   - podman + runc (and iptables, for netavark) from Debian (podman 4.3's default crun refuses hybrid
#     cgroups, hence runc), configured in /etc/containers/containers.conf
#     (raising rlimits is refused in this sandbox, so ulimits are pinned);
#   - `podman system service` on unix:///run/podman/podman.sock, which speaks
#     the Docker API; callers then need
#       DOCKER_HOST=unix:///run/podman/podman.sock DOCKER_BUILDKIT=0
#     (the classic builder pulls nothing for a FROM scratch image; BuildKit
#     would pull its own image). The script prints those lines on stdout, for
#     `eval "$(.ci/compose-engine.sh)"`; its progress goes to stderr;
#   - docker compose built from source (tools/compose/go.mod pins it: the
#     module's exclude directives make a plain `go install ...@version`
#     fail) and installed as ~/.docker/cli-plugins/docker-compose.
#
# Any failure exits non-zero: the compose tier fails rather than skips when
# it cannot get an engine.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_VERSION=v2.40.3
SOCKET=/run/podman/podman.sock
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

log() { echo "compose-engine: $*" >&2; }
die() { log "$*"; exit 1; }

command -v docker >/dev/null || die "the docker CLI is not installed"

# 1. The engine.
use_podman=1
if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix://$SOCKET" ] && docker version >/dev/null 2>&1; then
	use_podman=0 # a daemon chosen by the caller
elif [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] && docker version >/dev/null 2>&1; then
	use_podman=0 # a real Docker daemon
fi

if [ "$use_podman" = 1 ]; then
	# iptables: netavark sets up container networks with it ("netavark: No
	# such file or directory" without it); podman only recommends it.
	pkgs="podman runc netavark aardvark-dns iptables"
	# shellcheck disable=SC2086
	if [ "$(dpkg-query -W -f='${Status}\n' $pkgs 2>/dev/null | grep -c '^install ok installed$')" != 5 ]; then
		log "installing $pkgs (apt-get)"
		[ "$(id -u)" = 0 ] || die "installing podman needs root"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >&2 || die "apt-get update failed"
		# shellcheck disable=SC2086
		apt-get install -y -qq --no-install-recommends $pkgs >&2 || die "apt-get install $pkgs failed"
	fi
	conf=/etc/containers/containers.conf
	want='# written by .ci/compose-engine.sh (trustmesh)
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"'
	if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
		log "writing $conf"
		mkdir -p /etc/containers
		printf '%s\n' "$want" >"$conf"
		# A running service keeps the old configuration: restart it.
		if [ -f "$(dirname "$SOCKET")/service.pid" ]; then
			kill "$(cat "$(dirname "$SOCKET")/service.pid")" 2>/dev/null || true
			sleep 1
		fi
	fi
	export DOCKER_HOST="unix://$SOCKET"
	if ! docker version >/dev/null 2>&1; then
		log "starting podman system service on $SOCKET"
		mkdir -p "$(dirname "$SOCKET")"
		rm -f "$SOCKET"
		# Detached from this shell (and from make's), so it outlives the
		# script; its log sits next to the socket.
		setsid nohup podman system service --time=0 "unix://$SOCKET" \
			>"$(dirname "$SOCKET")/service.log" 2>&1 </dev/null &
		echo $! >"$(dirname "$SOCKET")/service.pid"
		for _ in $(seq 1 100); do
			docker version >/dev/null 2>&1 && break
			sleep 0.2
		done
		docker version >/dev/null 2>&1 || {
			tail -n 20 "$(dirname "$SOCKET")/service.log" >&2 || true
			die "podman system service did not answer on $SOCKET within 20s"
		}
	fi
	export DOCKER_BUILDKIT=0
fi

# 2. The compose plugin.
have=$(docker compose version --short 2>/dev/null || true)
if [ "${have#v}" != "${COMPOSE_VERSION#v}" ]; then
	log "building docker compose $COMPOSE_VERSION from source (tools/compose/go.mod; a few minutes the first time)"
	mkdir -p "$PLUGIN_DIR"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd tools/compose && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
		-o "$tmp/docker-compose" github.com/docker/compose/v2/cmd) >&2 ||
		die "building docker compose failed"
	install -m 0755 "$tmp/docker-compose" "$PLUGIN_DIR/docker-compose"
	have=$(docker compose version --short 2>/dev/null || true)
	[ "${have#v}" = "${COMPOSE_VERSION#v}" ] || die "docker compose reports version '$have' after install, want $COMPOSE_VERSION"
fi

log "ready: docker compose $have, engine $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')${DOCKER_HOST:+ at $DOCKER_HOST}"
if [ "$use_podman" = 1 ]; then
	echo "export DOCKER_HOST=$DOCKER_HOST DOCKER_BUILDKIT=0"
fi
