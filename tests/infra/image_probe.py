"""Run inside a service image's Python environment (see image_env.py): load what the image's command loads with
the deployment's settings, and report every import that fails.

Standalone on purpose: it runs with `python -I` in the replayed virtualenv, so it sees only what the image
installs, never this repository. The settings come from the environment (the chart's ConfigMap); hosts that
would be contacted are pointed at a closed local port by the caller, so steps that go on to the network fail
after their imports, which is what they are run for.

Usage: python -I image_probe.py worker|gateway [--block MODULE ...]
Prints one JSON document: {"steps": [...], "failures": ["step: error", ...]}.
--block makes the top-level MODULE unimportable (the test's check that a missing package is noticed).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import json
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace

# What each inference backend needs loaded in the process that calls it.
BACKEND_MODULES = {"triton": "tritonclient.grpc", "onnxruntime": "onnxruntime"}


class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, names: list[str]) -> None:
        self.names = set(names)

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201 - the finder protocol
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named '{fullname}' (blocked by the probe)", name=fullname)
        return None


Step = tuple[str, Callable[[], object], bool]  # (name, action, may fail on the network after its imports)


def imports(*modules: str) -> Callable[[], object]:
    return lambda: [importlib.import_module(module) for module in modules]


def backend_loaded(backend: str) -> Callable[[], object]:
    def check() -> None:
        module = BACKEND_MODULES[backend]
        if module not in sys.modules:
            raise ImportError(f"inference backend {backend} ran without loading {module}")

    return check


def worker_steps() -> Iterator[Step]:
    """`celery --app=deepfake_worker.celery_app:app worker` and `... beat`: the app, its task modules, the broker
    transport, the worker's and pool processes' start-up (metrics, CPU threads, the model, the face models)."""
    yield "the command's app", imports("deepfake_worker.celery_app", "celery.bin.celery"), False
    from deepfake_worker.celery_app import app

    yield "the app's task modules", app.loader.import_default_modules, False
    yield "celery worker and beat", imports("celery.apps.worker", "celery.apps.beat"), False
    yield "the broker transport", lambda: app.connection_for_write().transport, False
    yield "the metrics server", imports("deepfake_worker.metrics_server", "prometheus_client.multiprocess"), False

    from deepfake_worker import inference, runtime
    from deepfake_worker.settings import get_worker_settings

    settings = get_worker_settings()
    yield "pool process set-up", lambda: runtime.configure_process(settings), False
    yield (
        f"the {settings.inference_backend} inference backend",
        lambda: inference.load_backend(settings, inference.core_settings()),
        True,
    )
    yield "the backend's modules", backend_loaded(settings.inference_backend), False

    def face_models() -> object:
        from deepfake_core.faces.analyzer import FaceAnalyzer

        core = inference.core_settings()
        return FaceAnalyzer(core, core.face_size or 224)

    yield "the face detector and landmark models", face_models, False
    yield "Grad-CAM and rendering", imports("deepfake_core.explain.gradcam", "deepfake_core.explain.render"), False


def gateway_steps() -> Iterator[Step]:
    """`uvicorn deepfake_gateway.main:app`: the app, the gRPC server, the modules requests load lazily, and the
    readiness checks of the configured inference backend (Triton's client; for onnxruntime only a path check,
    since the gateway image carries no model code)."""
    yield "the command", imports("uvicorn.main", "deepfake_gateway.main"), False
    from deepfake_gateway.settings import get_settings

    settings = get_settings()
    if settings.grpc_enabled:
        yield "the gRPC server", imports("deepfake_gateway.grpc.server", "grpc_health.v1.health"), False
    yield "job dispatch and tenants", imports("deepfake_jobs.dispatch", "yaml"), False

    def readiness() -> object:
        from deepfake_gateway.rest.routes import health

        context = SimpleNamespace(settings=settings)
        return [check(context) for check in health.INFORMATIONAL_CHECKS.values()]

    yield f"readiness checks ({settings.inference_backend})", readiness, False
    if settings.inference_backend == "triton":
        yield "the backend's modules", backend_loaded(settings.inference_backend), False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("image", choices=["worker", "gateway"])
    parser.add_argument("--block", action="append", default=[])
    args = parser.parse_args()
    if args.block:
        sys.meta_path.insert(0, Blocker(args.block))
    report: dict[str, list[str]] = {"steps": [], "failures": []}
    steps = worker_steps() if args.image == "worker" else gateway_steps()
    while True:
        try:
            name, action, network = next(steps)
        except StopIteration:
            break
        except Exception as error:  # noqa: BLE001 - the steps' own imports (between two steps) failed
            report["failures"].append(f"setting up the next step: {type(error).__name__}: {error}")
            break
        report["steps"].append(name)
        try:
            action()
        except ImportError as error:
            report["failures"].append(f"{name}: {type(error).__name__}: {error}")
        except Exception as error:  # noqa: BLE001 - reported; only network steps may fail after their imports
            if not network:
                report["failures"].append(f"{name}: {type(error).__name__}: {error}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
