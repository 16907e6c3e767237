"""Opt-in appearance mode: an eye-aligned grey face crop cut from the frame the face-mesh node
already holds (crop.py), and the pixel teacher run on it (model.py). Only the resulting numbers
(an embedding and class logits per face) leave the node; no node imports this unless the
face-mesh node's `appearance` parameter is true."""
