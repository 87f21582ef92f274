#!/usr/bin/env bash
# tools.sh builds the pinned tools from the tools/<module> Go modules into .tools/ and caches them,
# keyed on each module's go.sum, so a tool is rebuilt only when its pins change.
#
#   hack/tools.sh kube   etcd + kube-apiserver into .tools/kube/<key>/  (prints that dir; KUBEBUILDER_ASSETS)
#   hack/tools.sh lint   golangci-lint into .tools/bin/                 (prints the binary path)
#   hack/tools.sh nats   nats CLI + nats-server into .tools/bin/        (prints that dir)
#   hack/tools.sh vuln   govulncheck + the pinned Go vulnerability DB    (prints the DB dir; the binary
#                        is .tools/bin/govulncheck)
#
# <key> is the first 12 hex digits of the sha256 of tools/<module>/go.sum. Build output goes to stderr;
# the last line of stdout is the path, so callers can use: dir=$(hack/tools.sh kube | tail -n1).
# Remove .tools/ to force rebuilds.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"

# The tools modules are not in go.work: build each with its own build list.
export GOWORK=off

log() { echo "tools.sh: $*" >&2; }

die() {
	log "$*"
	exit 1
}

# key MODULE prints the cache key of tools/MODULE.
key() {
	local sum="$root/tools/$1/go.sum"
	[[ -f $sum ]] || die "missing $sum"
	sha256sum "$sum" | cut -c1-12
}

# modversion MODULE PATH prints the version of PATH in tools/MODULE's build list.
modversion() {
	go -C "$root/tools/$1" list -m -f '{{.Version}}' "$2"
}

# build MODULE OUT PKG [ARGS...] builds PKG within tools/MODULE to OUT, through a temporary file so an
# interrupted or concurrent build never leaves a partial binary at OUT.
build() {
	local mod=$1 out=$2 pkg=$3
	shift 3
	local tmp="$out.tmp.$$" start=$SECONDS
	mkdir -p "$(dirname "$out")"
	log "building $pkg (tools/$mod) -> $out"
	if ! go -C "$root/tools/$mod" build -buildvcs=false -o "$tmp" "$@" "$pkg" >&2; then
		rm -f "$tmp"
		die "build $pkg failed"
	fi
	mv -f "$tmp" "$out"
	log "built $(basename "$out") in $((SECONDS - start))s"
}

# fresh BIN KEY reports whether BIN exists and was built from the go.sum with KEY (stamp file BIN.sum).
fresh() {
	[[ -x $1 && -f $1.sum && $(<"$1.sum") == "$2" ]]
}

stamp() {
	echo "$2" >"$1.sum"
}

# Built one after another: two cores, and linking kube-apiserver alone takes ~2.3 GB.
cmd_kube() {
	local k dir ver minor
	k=$(key kube)
	dir="$tools/kube/$k"
	if [[ ! -x $dir/etcd ]]; then
		build kube "$dir/etcd" go.etcd.io/etcd/server/v3
	fi
	if [[ ! -x $dir/kube-apiserver ]]; then
		ver=$(modversion kube k8s.io/kubernetes) # v1.36.3
		minor=${ver#v1.}
		minor=${minor%%.*}
		# Without these the server reports v0.0.0-master+$Format:%H$, which kubectl cannot parse.
		build kube "$dir/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver -ldflags \
			"-X k8s.io/component-base/version.gitVersion=$ver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
	fi
	echo "$dir"
}

cmd_lint() {
	local k bin="$tools/bin/golangci-lint" ver date
	k=$(key lint)
	if ! fresh "$bin" "$k"; then
		ver=$(modversion lint github.com/golangci/golangci-lint/v2) # v2.15.0
		date=$(go -C "$root/tools/lint" list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' \
			github.com/golangci/golangci-lint/v2)
		build lint "$bin" github.com/golangci/golangci-lint/v2/cmd/golangci-lint -ldflags \
			"-X main.version=${ver#v} -X main.commit=module -X main.date=${date:-unknown}"
		stamp "$bin" "$k"
	fi
	echo "$bin"
}

cmd_nats() {
	local k dir="$tools/bin" ver
	k=$(key cli)
	if ! fresh "$dir/nats" "$k"; then
		ver=$(modversion cli github.com/nats-io/natscli) # v0.4.0
		build cli "$dir/nats" github.com/nats-io/natscli/nats -ldflags "-X main.version=$ver"
		stamp "$dir/nats" "$k"
	fi
	if ! fresh "$dir/nats-server" "$k"; then
		build cli "$dir/nats-server" github.com/nats-io/nats-server/v2
		stamp "$dir/nats-server" "$k"
	fi
	echo "$dir"
}

# The Go vulnerability database, offline: golang.org/x/vulndb's data/osv at the pinned pseudo-version,
# indexed by that module's own cmd/indexdb into the layout govulncheck -db file://DIR reads.
cmd_vuln() {
	local k bin="$tools/bin" db ver osv
	k=$(key vuln)
	if ! fresh "$bin/govulncheck" "$k"; then
		build vuln "$bin/govulncheck" golang.org/x/vuln/cmd/govulncheck
		stamp "$bin/govulncheck" "$k"
	fi
	db="$tools/vulndb/$k"
	if [[ ! -f $db/index/db.json ]]; then
		if ! fresh "$bin/indexdb" "$k"; then
			build vuln "$bin/indexdb" golang.org/x/vulndb/cmd/indexdb
			stamp "$bin/indexdb" "$k"
		fi
		ver=$(modversion vuln golang.org/x/vulndb)
		osv=$(go -C "$root/tools/vuln" mod download -json "golang.org/x/vulndb@$ver" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/data/osv
		[[ -d $osv ]] || die "no data/osv in golang.org/x/vulndb@$ver"
		rm -rf "$db.tmp.$$"
		"$bin/indexdb" -vulns "$osv" -out "$db.tmp.$$" >&2 || die "indexdb failed"
		rm -rf "$db"
		mv "$db.tmp.$$" "$db"
		log "vulnerability database golang.org/x/vulndb@$ver in $db"
	fi
	echo "$db"
}

usage() {
	sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

[[ $# -eq 1 ]] || usage
case $1 in
kube) cmd_kube ;;
lint) cmd_lint ;;
nats) cmd_nats ;;
vuln) cmd_vuln ;;
*) usage ;;
esac
