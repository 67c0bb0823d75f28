"""The public API of the deepfake detection service: REST (FastAPI) and gRPC in front of the job queue.

It authenticates tenants, admits or refuses work (rate limit, quota, backpressure), streams media into
object storage, creates jobs and hands them to the workers; it never runs a model itself.
"""

__version__ = "0.1.0"
