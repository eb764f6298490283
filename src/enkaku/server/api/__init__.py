"""REST API under /api/v1: pydantic models in, pydantic models out, OpenAPI generated."""
