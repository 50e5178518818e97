#!/bin/sh
# make bench: the wrk comparison (keygate against the upstream directly, a
# tuned bare httputil.ReverseProxy and nginx proxy_pass), the scale figures
# (start-up and memory with 100k users and 100k sessions) and the Go
# micro-benchmarks. It reports; it never fails on a number. Needs Go, and
# wrk, nginx and PostgreSQL 15 from Debian (installed here with apt-get when
# missing): keygate is loaded on Badger and on storage.backend: postgres (a
# throwaway cluster proxybench starts itself, as the tests do).
# BENCH_ROUNDS, BENCH_DURATION, BENCH_SCALE and BENCH_POSTGRES (true/false)
# and BENCH_SIGNINS (password sign-ins per backend) tune the run.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}

need=""
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx"
[ "${BENCH_POSTGRES:-true}" != true ] || [ -x "${KEYGATE_PG_BINDIR:-/usr/lib/postgresql/15/bin}/initdb" ] || need="$need postgresql"
if [ -n "$need" ]; then
	echo "== installing$need (apt-get)"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null
fi

mkdir -p bin
$GO build -o bin/proxybench ./bench/cmd/proxybench

echo "== machine"
echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo); $(uname -sr); $($GO version | cut -d' ' -f3); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2); $(nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1)"

echo "== proxy path (wrk)"
bin/proxybench -keygate bin/keygate -rounds "${BENCH_ROUNDS:-3}" -duration "${BENCH_DURATION:-10s}" -scale="${BENCH_SCALE:-true}" -postgres="${BENCH_POSTGRES:-true}" -signins "${BENCH_SIGNINS:-100}" || echo "proxybench failed (reported, not fatal)"

echo
echo "== Go benchmarks (ns/op is wall time; cpu-ns/op, where reported, is process CPU time per op)"
# One go test for every package; -p 1 runs their benchmarks one package at
# a time (concurrent packages would measure each other). A short benchtime
# keeps the whole of make bench under five minutes.
$GO test -p 1 -run '^$' -benchmem -benchtime "${BENCH_GOTIME:-0.5s}" \
	-bench '^(BenchmarkEvaluate|BenchmarkEvaluateReadings|BenchmarkGatePaths|BenchmarkLookup|BenchmarkProxy|BenchmarkCookieSession|BenchmarkAccessLine|BenchmarkVerify|BenchmarkFinishLogin|BenchmarkSessionLookup|BenchmarkPolicyEvaluate|BenchmarkSignInLookup|BenchmarkSessionMemory|BenchmarkSignInStore|BenchmarkTOTPVerifyStore)$' \
	./policy/ ./authn/ ./web/ ./factors/totp/ ./factors/webauthn/ ./bench/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|---|pkg:)' || true
# argon2id with the production parameters: 20 hashes, so that the first
# ones (fresh 64 MiB, page faults) do not dominate.
$GO test -run '^$' -benchmem -benchtime 20x -bench '^BenchmarkHash$' ./authn/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' || true
$GO test -run '^$' -benchtime 3s -bench '^BenchmarkSignInThroughput$' ./bench/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' || true
