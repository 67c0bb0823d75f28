"""Evaluation and calibration: scoring clips, metrics, thresholds, heatmap localisation, reports,
leave-one-person-out."""
