// ros2_control SystemInterface for Muscle Memory servos on SocketCAN (ROS 2 Jazzy, ros2_control 4.34 or newer:
// on_init(HardwareComponentInterfaceParams), interfaces exported by the framework from the URDF).
//
// A thin translation layer: every decision (modes, activation, heartbeats, faults, mock echo) is ServoSystem's
// (servo_system.hpp), which is built and tested without ROS.
#ifndef MM_HARDWARE__MM_SYSTEM_HARDWARE_HPP_
#define MM_HARDWARE__MM_SYSTEM_HARDWARE_HPP_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hardware_interface/handle.hpp"
#include "hardware_interface/hardware_info.hpp"
#include "hardware_interface/system_interface.hpp"
#include "hardware_interface/types/hardware_interface_return_values.hpp"
#include "mm_hardware/servo_system.hpp"
#include "mm_hardware/socketcan_bus.hpp"
#include "rclcpp/macros.hpp"
#include "rclcpp_lifecycle/state.hpp"

namespace mm_hardware
{

class MmSystemHardware : public hardware_interface::SystemInterface
{
public:
  RCLCPP_SHARED_PTR_DEFINITIONS(MmSystemHardware)

  hardware_interface::CallbackReturn on_init(
    const hardware_interface::HardwareComponentInterfaceParams & params) override;
  hardware_interface::CallbackReturn on_configure(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_cleanup(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_activate(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_deactivate(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_error(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_shutdown(const rclcpp_lifecycle::State & previous_state) override;

  hardware_interface::return_type prepare_command_mode_switch(
    const std::vector<std::string> & start_interfaces,
    const std::vector<std::string> & stop_interfaces) override;
  hardware_interface::return_type perform_command_mode_switch(
    const std::vector<std::string> & start_interfaces,
    const std::vector<std::string> & stop_interfaces) override;

  hardware_interface::return_type read(const rclcpp::Time & time, const rclcpp::Duration & period) override;
  hardware_interface::return_type write(const rclcpp::Time & time, const rclcpp::Duration & period) override;

private:
  /// Full names ("joint/position") of the interfaces the URDF gave a joint; empty when it has none of that kind.
  struct InterfaceNames
  {
    std::string position;
    std::string velocity;
    std::string effort;
  };

  /// Steady time (s): one clock for the non-realtime waits and the control loop's heartbeat and state timing.
  static double now_s();
  /// Poll done() every 2 ms until it returns true; ServoSystem throws when its response timeout passes.
  static void wait_for(const std::function<bool(double)> & done);
  void release_bus();

  std::unique_ptr<ServoSystem> system_;
  std::unique_ptr<SocketCanBus> bus_;
  std::vector<InterfaceNames> states_;
  std::vector<InterfaceNames> commands_;
};

}  // namespace mm_hardware

#endif  // MM_HARDWARE__MM_SYSTEM_HARDWARE_HPP_
