"""Python client of the deepfake detection service, and webhook signature checks for receivers.

Needs only httpx: `DeepfakeClient` talks to the REST API, `verify_signature` checks a webhook's
`Deepfake-Signature` header (the very function the platform signs with).
"""

from deepfake_client.client import ApiError, DeepfakeClient, Job, JobError, JobPage, WaitTimeout
from deepfake_client.signing import SIGNATURE_HEADER, sign, verify_signature

__all__ = [
    "SIGNATURE_HEADER",
    "ApiError",
    "DeepfakeClient",
    "Job",
    "JobError",
    "JobPage",
    "WaitTimeout",
    "sign",
    "verify_signature",
]
__version__ = "0.1.0"
