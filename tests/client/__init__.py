"""Tests of deepfake_client (the SDK and CLI), against a real gateway of the shared local stack."""
