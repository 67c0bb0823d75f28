"""Training, evaluation, calibration and export of the hybrid deepfake detector (`deepfake-train`)."""

__version__ = "0.1.0"
