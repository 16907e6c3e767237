"""Data helpers: labelled image folders, synthetic streams composed from real faces."""
