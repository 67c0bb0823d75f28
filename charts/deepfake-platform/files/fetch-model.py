"""Init container of the workers when they run the model themselves (DEEPFAKE_INFERENCE_BACKEND=onnxruntime):
copy one version of the model from the S3 model repository into the pod's model volume.

The repository has the layout of model_repository/gpu: <prefix>/<model name>/<version>/model.onnx. The version is
DEEPFAKE_MODEL_VERSION when set, else the newest; the workers then load <DEEPFAKE_MODEL_REPOSITORY>/<model
name>/<version>/model.onnx (deepfake_core.inference.onnx_backend.resolve_model_path picks the newest folder, and
there is only this one). Endpoint and credentials are the platform's own DEEPFAKE_S3_* settings.

Environment: DEEPFAKE_MODEL_BUCKET, DEEPFAKE_MODEL_PREFIX, DEEPFAKE_MODEL_NAME, DEEPFAKE_MODEL_REPOSITORY,
DEEPFAKE_MODEL_VERSION (optional), and the DEEPFAKE_S3_* settings. Exit status 1 with one line on stderr when the
model is missing.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from deepfake_jobs.settings import PlatformSettings
from deepfake_jobs.storage import ObjectStore

MODEL_FILE = "model.onnx"


def model_versions(store: ObjectStore, base: str) -> dict[int, str]:
    """Version number -> key of its model file, under `base` (<prefix>/<model name>/)."""
    pattern = re.compile(re.escape(base) + r"(\d+)/" + re.escape(MODEL_FILE))
    versions = {}
    for key in store.list_keys(base):
        match = pattern.fullmatch(key)
        if match:
            versions[int(match.group(1))] = key
    return versions


def fetch_model(environ: dict[str, str]) -> Path:
    bucket = environ["DEEPFAKE_MODEL_BUCKET"]
    prefix = environ.get("DEEPFAKE_MODEL_PREFIX", "").strip("/")
    name = environ["DEEPFAKE_MODEL_NAME"]
    wanted = environ.get("DEEPFAKE_MODEL_VERSION", "").strip()
    store = ObjectStore(PlatformSettings(s3_bucket=bucket))
    base = f"{prefix}/{name}/" if prefix else f"{name}/"
    versions = model_versions(store, base)
    if not versions:
        raise LookupError(f"no {MODEL_FILE} under s3://{bucket}/{base}<version>/: upload the model repository first")
    version = int(wanted) if wanted else max(versions)
    if version not in versions:
        raise LookupError(f"s3://{bucket}/{base} has no version {version} (it has {sorted(versions)})")
    target = Path(environ["DEEPFAKE_MODEL_REPOSITORY"]) / name / str(version) / MODEL_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with partial.open("wb") as file:
        store.download(versions[version], file)
    partial.rename(target)  # the workers never see half a file
    print(f"model {name} version {version}: s3://{bucket}/{versions[version]} -> {target}", flush=True)
    return target


def main() -> int:
    try:
        fetch_model(dict(os.environ))
    except LookupError as error:
        print(f"fetch-model: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
