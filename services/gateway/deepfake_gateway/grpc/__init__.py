"""The gRPC face of the API: the DetectionService server (server.py), the REST <-> proto conversion (proto.py) and
the generation of the Python code from proto/ (proto_build.py, into the ignored deepfake_gateway/proto_gen/).
"""
