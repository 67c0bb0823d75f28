"""The web console for moderators and analysts: static ES modules served at /console, built only on the public
REST API, with its own security headers. `install_console(app)` mounts it; `heatmaps.router` is the one API route
it added (heatmap PNGs from the gateway's own origin, which the console's CSP allows).
"""

from deepfake_gateway.console.router import install_console

__all__ = ["install_console"]
