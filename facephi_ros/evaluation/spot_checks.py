"""Small labelled face sets for spot checks of a label model outside the big evaluations: the
posed photos of ../shared/data/faces (label in the file name) and the first N FER2013 test images
of every class. Faces are landmarked the way the node (photos) and the dataset builder
(small images: upscaled and padded, `load_for_landmarker`) see them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# the four posed stills of ../shared/data/faces and their labels (see that folder's README)
POSED = {"0-f1-su-ph.jpg": "surprise", "0-f15-hao-ph.jpg": "happy", "15-f13-anc-ph.jpg": "angry", "45-m7-di-ph.jpg": "disgust"}


def _first_face(lm, rgb: np.ndarray):
    """(FaceMesh, width, height) of the image's first face, or None."""
    faces = lm.detect(rgb)
    return (faces[0], rgb.shape[1], rgb.shape[0]) if faces else None


def posed_faces(folder: str | Path, mirrored: bool = True) -> list[tuple[str, str, object]]:
    """[(name, label, (FaceMesh, w, h) or None)] for each posed photo (and its mirror image, named
    'NAME (mirrored)')."""
    from facephi_ros.data.image_folder import load_for_landmarker
    from facephi_ros.landmarks.landmarker import Landmarker

    out = []
    with Landmarker(video=False, num_faces=1) as lm:
        for name, label in POSED.items():
            rgb = load_for_landmarker(str(Path(folder) / name))
            out.append((name, label, _first_face(lm, rgb)))
            if mirrored:
                out.append((f"{name} (mirrored)", label, _first_face(lm, np.ascontiguousarray(rgb[:, ::-1]))))
    return out


def balanced_test_faces(root: str | Path, classes: list[str], per_class: int) -> list[tuple[str, str, object]]:
    """[(file name, label, (FaceMesh, w, h) or None)] for the first `per_class` images (sorted names)
    of every class folder under root."""
    from facephi_ros.data.image_folder import load_for_landmarker
    from facephi_ros.landmarks.landmarker import Landmarker

    out = []
    with Landmarker(video=False, num_faces=1) as lm:
        for c in classes:
            for path in sorted((Path(root) / c).glob("*.jpg"))[:per_class]:
                out.append((path.name, c, _first_face(lm, load_for_landmarker(str(path)))))
    return out


def predicted(rt, faces: list[tuple[str, str, object]]) -> list[str | None]:
    """The runtime's likelihood label per face (None where no face was found)."""
    out = []
    for _, _, hit in faces:
        if hit is None:
            out.append(None)
        else:
            f, w, h = hit
            out.append(rt.classes[int(rt.label([(f.landmarks, f.matrix, f.blendshapes)], w, h)[0].argmax())])
    return out


def accuracy(faces: list[tuple[str, str, object]], labels: list[str | None]) -> float:
    """Share of faces labelled right; a face not found counts as wrong."""
    return sum(p == truth for (_, truth, _), p in zip(faces, labels)) / max(len(faces), 1)
