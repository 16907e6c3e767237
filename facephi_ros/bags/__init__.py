"""rosbag2 files without ROS tooling (the pure-Python `rosbags` library): make, read, check."""
