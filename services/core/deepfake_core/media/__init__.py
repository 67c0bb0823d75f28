"""Media: recognise, check and decode images and videos, and choose which frames to analyse."""
