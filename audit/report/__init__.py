"""Outputs: results.json, per_image.csv, the terminal summary (and the PDF report)."""
