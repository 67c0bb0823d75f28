"""Explanations: Grad-CAM heatmaps from the model's outputs, rendered as PNG overlays."""
