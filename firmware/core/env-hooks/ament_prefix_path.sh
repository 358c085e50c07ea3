# colcon hook (listed in colcon.pkg): a plain-cmake package gets no AMENT_PREFIX_PATH entry from colcon,
# so add this prefix here; it makes ament_index_python.get_package_prefix('mm_firmware_core') work.
_colcon_prepend_unique_value AMENT_PREFIX_PATH "$COLCON_CURRENT_PREFIX"
