# Injected into third-party message packages (hri_msgs, composition_interfaces) with
# -DCMAKE_PROJECT_INCLUDE=<this file>, so that they build unchanged with the PyPI ROS wheels.
# The wheels export *__rosidl_generator_py targets whose include directory is the wheel
# builder's Python (/opt/python/...); at the end of the package's CMakeLists.txt, point them at
# this machine's Python and NumPy (the project's own CMakeLists.txt does the same inline).
find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)

function(_facephi_fix_rosidl_py_includes)
  get_property(_imported DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_t IN LISTS _imported)
    if(_t MATCHES "__rosidl_generator_py$")
      set_target_properties(${_t} PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${Python3_INCLUDE_DIRS};${Python3_NumPy_INCLUDE_DIRS}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _facephi_fix_rosidl_py_includes)
