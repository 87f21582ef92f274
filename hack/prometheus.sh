#!/usr/bin/env bash
# prometheus.sh makes a real Prometheus server and promtool available for the metrics-exporter's rule
# and end-to-end tests, and prints the directory holding both as the last line of stdout:
#
#   PROMETHEUS_BIN_DIR=$(hack/prometheus.sh | tail -n1)
#
# It uses Debian's prometheus package (bookworm ships 2.42, which supports
# --enable-feature=native-histograms and `promtool test rules`). Binaries already on PATH (or in
# /usr/bin) are reused. Nothing else is installed or cached. Installing needs root and apt-get; without
# them the script fails with a message saying what to do instead.
set -euo pipefail

log() { echo "prometheus.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# have DIR reports whether DIR holds executable prometheus and promtool binaries.
have() { [[ -x $1/prometheus && -x $1/promtool ]]; }

if p=$(command -v prometheus 2>/dev/null) && have "$(dirname "$p")"; then
	dir=$(dirname "$p")
elif have /usr/bin; then
	dir=/usr/bin
else
	command -v apt-get >/dev/null 2>&1 ||
		die "apt-get not found: install Prometheus >= 2.42 (prometheus and promtool) yourself and put them on PATH, or set PROMETHEUS_BIN_DIR"
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 || die "installing the prometheus package needs root (or sudo)"
		sudo=(sudo)
	fi
	log "installing Debian's prometheus package"
	export DEBIAN_FRONTEND=noninteractive
	# Only the binaries are needed: no recommended packages (node exporter, web assets), and the
	# package's own service is never started here (no init system in CI containers).
	if ! "${sudo[@]}" apt-get install -y --no-install-recommends prometheus >&2; then
		"${sudo[@]}" apt-get update >&2 || die "apt-get update failed"
		"${sudo[@]}" apt-get install -y --no-install-recommends prometheus >&2 || die "apt-get install prometheus failed"
	fi
	have /usr/bin || die "prometheus package installed but /usr/bin/prometheus or /usr/bin/promtool is missing"
	dir=/usr/bin
fi
log "$("$dir/prometheus" --version 2>&1 | head -n1)"
echo "$dir"
