"""Per-frame features shared by training and the nodes (ROS-free)."""
from .normalize import (FeatureConfig, frame_features, mirror_blendshapes, mirror_face, normalize_landmarks,  # noqa: F401
                        pose_angles)
