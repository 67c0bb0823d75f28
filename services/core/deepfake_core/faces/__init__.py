"""Faces: detect, fit landmarks, align to a canonical template, and track across frames."""

from deepfake_core.faces.align import AlignedFace, align_face, alignment_matrix
from deepfake_core.faces.analyzer import FACE_STAGE_VERSION, FaceAnalyzer
from deepfake_core.faces.detectors import DlibHogDetector, FaceBox, FaceDetector, YuFaceDetector, make_detector
from deepfake_core.faces.landmarks import LandmarkFitter
from deepfake_core.faces.tracking import FaceObservation, FaceTrack, track_faces

__all__ = [
    "FACE_STAGE_VERSION",
    "AlignedFace",
    "DlibHogDetector",
    "FaceAnalyzer",
    "FaceBox",
    "FaceDetector",
    "FaceObservation",
    "FaceTrack",
    "LandmarkFitter",
    "YuFaceDetector",
    "align_face",
    "alignment_matrix",
    "make_detector",
    "track_faces",
]
