"""Per-frame features shared by training and the nodes (ROS-free)."""
from .normalize import (  # noqa: F401
                        FeatureConfig,
                        frame_features,
                        mirror_blendshapes,
                        mirror_face,
                        normalize_landmarks,
                        pose_angles,
)
