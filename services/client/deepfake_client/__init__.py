"""Python client of the deepfake detection service, and webhook signature checks for receivers.

Needs only httpx: `DeepfakeClient` talks to the REST API, `verify_signature` checks a webhook.
"""

from deepfake_client.signing import sign, verify_signature

__all__ = ["sign", "verify_signature"]
__version__ = "0.1.0"
