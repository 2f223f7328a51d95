#!/usr/bin/env bash
# The benchmark: the kit's speed and how it scales, in release mode. Prints a markdown table and
# writes target/bench/summary.json. Real-broker figures use librdkafka's mock cluster and the
# local Tansu image (built as for ci/test.sh; set EFFECTIVELY_ONCE_KAFKA_IMAGE to use another).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${EFFECTIVELY_ONCE_KAFKA_IMAGE:-}" ] && command -v docker >/dev/null 2>&1; then
  EFFECTIVELY_ONCE_KAFKA_IMAGE="$(ci/tansu-image.sh)"
  export EFFECTIVELY_ONCE_KAFKA_IMAGE
fi
cargo bench --features containers --bench kit
