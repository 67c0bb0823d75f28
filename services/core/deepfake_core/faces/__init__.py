"""Faces: detect, fit landmarks, align to a canonical template, and track across frames."""
