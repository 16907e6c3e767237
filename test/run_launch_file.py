"""Run a ROS 2 launch file under the real launch.LaunchService, as `ros2 launch` does (the ros2
command itself is not installable here): python run_launch_file.py FILE [name:=value ...].
Ctrl-C (SIGINT) shuts the launch down; the exit status is the LaunchService's."""
import sys

from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def main(argv):
    path, args = argv[0], dict(a.split(":=", 1) for a in argv[1:])
    ls = LaunchService(argv=argv[1:])
    ls.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=list(args.items()))]))
    return ls.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
