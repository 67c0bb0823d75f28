"""One APIRouter per resource; deepfake_gateway.main includes them all."""
