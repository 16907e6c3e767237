"""Face landmark extraction and tracking (ROS-free)."""
from .image import ImageError, image_to_rgb, rgb_to_image_fields  # noqa: F401
from .landmarker import (  # noqa: F401
    BLENDSHAPE_NAMES,
    NUM_BLENDSHAPES,
    NUM_LANDMARKS,
    FaceMesh,
    Landmarker,
)
from .tracker import FaceTracker  # noqa: F401
