"""Shared job library of the asynchronous service: what a job is, where it lives, how it is delivered.

Imported by the gateway and by the Celery workers. Nothing here loads a model; submodules import
their own dependencies so that `deepfake_jobs.signing` stays usable by a client with the stdlib only.
"""

__version__ = "0.1.0"
