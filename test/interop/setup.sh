#!/usr/bin/env bash
# Installs what the interop tier needs (`make test-interop` runs it first):
# Debian's Python grpcio and protobuf with the protoc and grpc_python_plugin
# that match them, and the Node clients pinned in node/package-lock.json.
# Each missing piece is installed or the script fails with one line saying
# what is missing: the tier never runs, or skips, without its clients.
set -euo pipefail
cd "$(dirname "$0")"

debs=(python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc)
if ! command -v node >/dev/null; then
	debs+=(nodejs)
fi
missing=()
for p in "${debs[@]}"; do
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=()
	if [ "$(id -u)" != 0 ]; then
		if ! command -v sudo >/dev/null; then
			echo "test-interop: FAILED: ${missing[*]} not installed, and neither root nor sudo to apt-get install them" >&2
			exit 1
		fi
		sudo=(sudo)
	fi
	echo "test-interop: apt-get install ${missing[*]}"
	if ! "${sudo[@]}" apt-get update -qq >/dev/null ||
		! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
		echo "test-interop: FAILED: apt-get install ${missing[*]} did not succeed (see above)" >&2
		exit 1
	fi
else
	echo "test-interop: Debian packages present: ${debs[*]}"
fi

for f in /usr/bin/python3 /usr/bin/protoc /usr/bin/grpc_python_plugin; do
	if [ ! -x "$f" ]; then
		echo "test-interop: FAILED: $f is missing after installing ${debs[*]}" >&2
		exit 1
	fi
done
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
	echo "test-interop: FAILED: node $(node --version 2>/dev/null || echo missing): the Node clients need Node.js 20 or later" >&2
	exit 1
fi
if ! command -v npm >/dev/null; then
	echo "test-interop: FAILED: npm not found (it comes with Node.js): needed to install node/package-lock.json" >&2
	exit 1
fi

# Exactly the versions in the lock file; its install scripts are not run.
if ! (cd node && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error); then
	echo "test-interop: FAILED: npm ci in test/interop/node did not succeed (see above)" >&2
	exit 1
fi
echo "test-interop: $(/usr/bin/python3 -c 'import grpc, google.protobuf as p; print("grpcio", grpc.__version__, "protobuf", p.__version__)'), $(protoc --version), node $(node --version), $(cd node && node -p '["@grpc/grpc-js","@connectrpc/connect-node","@bufbuild/protobuf"].map(n => n + " " + require("./node_modules/" + n + "/package.json").version).join(", ")')"
