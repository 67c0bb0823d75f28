"""Tests of deepfake_gateway: REST routes, gRPC, admission and readiness, against the shared local stack."""
