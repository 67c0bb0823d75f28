"""The REST face of the API: one router per resource in routes/ (a reader finds any endpoint from its URL), their
dependencies (deps.py), documents (schemas.py) and OpenAPI examples, body readers, the middleware, and the console.
"""
