"""The web console for moderators and analysts: static ES modules served at /console (pages.py), built only on the
public REST API; see README.md.
"""
