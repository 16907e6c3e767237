"""ROS4HRI (REP-155) conventions for the faces facephi_ros tracks (ROS-free)."""
