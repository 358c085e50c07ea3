#include "mm_hardware/mm_system_hardware.hpp"

#include <chrono>
#include <string>
#include <thread>
#include <utility>

#include "hardware_interface/types/hardware_interface_type_values.hpp"
#include "pluginlib/class_list_macros.hpp"
#include "rclcpp/rclcpp.hpp"

namespace mm_hardware
{

using hardware_interface::CallbackReturn;
using hardware_interface::return_type;

static_assert(
  std::char_traits<char>::compare(hardware_interface::HW_IF_POSITION, kPosition, 9) == 0 &&
  std::char_traits<char>::compare(hardware_interface::HW_IF_VELOCITY, kVelocity, 9) == 0 &&
  std::char_traits<char>::compare(hardware_interface::HW_IF_EFFORT, kEffort, 7) == 0,
  "the core's interface names are ros2_control's");

double MmSystemHardware::now_s()
{
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void MmSystemHardware::wait_for(const std::function<bool(double)> & done)
{
  while (!done(now_s())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

CallbackReturn MmSystemHardware::on_init(const hardware_interface::HardwareComponentInterfaceParams & params)
{
  if (hardware_interface::SystemInterface::on_init(params) != CallbackReturn::SUCCESS) {
    return CallbackReturn::ERROR;
  }
  try {
    std::vector<std::pair<std::string, Params>> joints;
    for (const auto & joint : info_.joints) {
      std::vector<std::string> command_names;
      std::vector<std::string> state_names;
      for (const auto & c : joint.command_interfaces) {
        command_names.push_back(c.name);
      }
      for (const auto & s : joint.state_interfaces) {
        state_names.push_back(s.name);
      }
      check_interfaces(joint.name, command_names, state_names);
      joints.emplace_back(joint.name, Params(joint.parameters.begin(), joint.parameters.end()));
    }
    const Params hardware(info_.hardware_parameters.begin(), info_.hardware_parameters.end());
    system_ = std::make_unique<ServoSystem>(parse_config(hardware, joints));
  } catch (const HardwareError & e) {
    RCLCPP_FATAL(get_logger(), "%s", e.what());
    return CallbackReturn::ERROR;
  }
  // The framework exports what the URDF lists; remember each joint's full interface names.
  states_.assign(info_.joints.size(), {});
  commands_.assign(info_.joints.size(), {});
  const auto collect = [this](const auto & described, std::vector<InterfaceNames> & names) {
      for (const auto & [full, description] : described) {
        for (std::size_t i = 0; i < info_.joints.size(); ++i) {
          if (info_.joints[i].name != description.get_prefix_name()) {
            continue;
          }
          const std::string & kind = description.get_interface_name();
          (kind == kPosition ? names[i].position : kind == kVelocity ? names[i].velocity : names[i].effort) = full;
        }
      }
    };
  collect(joint_state_interfaces_, states_);
  collect(joint_command_interfaces_, commands_);
  RCLCPP_INFO(
    get_logger(), "%zu servo joint(s) on %s", system_->size(),
    system_->config().mock ? "mock hardware (commands echoed to states)" :
    system_->config().can_interface.c_str());
  return CallbackReturn::SUCCESS;
}

CallbackReturn MmSystemHardware::on_configure(const rclcpp_lifecycle::State & /*previous_state*/)
{
  try {
    if (!system_->config().mock) {
      bus_ = std::make_unique<SocketCanBus>(system_->config().can_interface);
    }
    system_->configure(bus_.get(), now_s());
    wait_for([this](double t) {return system_->configure_done(t);});
  } catch (const HardwareError & e) {
    RCLCPP_ERROR(get_logger(), "configure: %s", e.what());
    release_bus();
    return CallbackReturn::FAILURE;
  }
  for (std::size_t i = 0; i < system_->size(); ++i) {
    const JointState & s = system_->state(i);
    for (const auto & [name, value] :
      {std::pair{states_[i].position, s.position_rad}, std::pair{states_[i].velocity, s.velocity_rad_s},
        std::pair{states_[i].effort, s.effort_a}})
    {
      if (!name.empty()) {
        set_state(name, value);
      }
    }
  }
  return CallbackReturn::SUCCESS;
}

CallbackReturn MmSystemHardware::on_activate(const rclcpp_lifecycle::State & /*previous_state*/)
{
  try {
    // Clears the faults a servo latched (HEARTBEAT_LOST after a stall, or any whose cause is gone): the
    // way back after read() reported one and ros2_control ran on_error.
    system_->activate(now_s());
    wait_for([this](double t) {return system_->activate_done(t);});
  } catch (const HardwareError & e) {
    RCLCPP_ERROR(get_logger(), "activate: %s", e.what());
    system_->stop();
    return CallbackReturn::FAILURE;
  }
  // Commands start where the joints are, so nothing jumps when a controller takes over.
  for (std::size_t i = 0; i < system_->size(); ++i) {
    const JointCommand & c = system_->command(i);
    for (const auto & [name, value] :
      {std::pair{commands_[i].position, c.position_rad}, std::pair{commands_[i].velocity, c.velocity_rad_s},
        std::pair{commands_[i].effort, c.effort_a}})
    {
      if (!name.empty()) {
        set_command(name, value);
      }
    }
  }
  RCLCPP_INFO(get_logger(), "servos active (faults cleared, holding)");
  return CallbackReturn::SUCCESS;
}

CallbackReturn MmSystemHardware::on_deactivate(const rclcpp_lifecycle::State & /*previous_state*/)
{
  system_->stop();
  return CallbackReturn::SUCCESS;
}

void MmSystemHardware::release_bus()
{
  system_->stop();
  bus_.reset();
}

CallbackReturn MmSystemHardware::on_error(const rclcpp_lifecycle::State & /*previous_state*/)
{
  // SUCCESS takes the component to UNCONFIGURED; `ros2 control set_hardware_component_state <name> active`
  // then configures and activates it again, which clears the faults.
  release_bus();
  return CallbackReturn::SUCCESS;
}

CallbackReturn MmSystemHardware::on_cleanup(const rclcpp_lifecycle::State & /*previous_state*/)
{
  release_bus();
  return CallbackReturn::SUCCESS;
}

CallbackReturn MmSystemHardware::on_shutdown(const rclcpp_lifecycle::State & /*previous_state*/)
{
  release_bus();
  return CallbackReturn::SUCCESS;
}

return_type MmSystemHardware::prepare_command_mode_switch(
  const std::vector<std::string> & start_interfaces, const std::vector<std::string> & stop_interfaces)
{
  std::string why;
  if (!system_->prepare_switch(start_interfaces, stop_interfaces, why)) {
    RCLCPP_ERROR(get_logger(), "command mode switch refused: %s", why.c_str());
    return return_type::ERROR;
  }
  return return_type::OK;
}

return_type MmSystemHardware::perform_command_mode_switch(
  const std::vector<std::string> & start_interfaces, const std::vector<std::string> & stop_interfaces)
{
  for (const std::size_t i : system_->perform_switch(start_interfaces, stop_interfaces)) {
    if (!commands_[i].position.empty()) {
      set_command(commands_[i].position, system_->command(i).position_rad);  // hold until commanded
    }
  }
  return return_type::OK;
}

return_type MmSystemHardware::read(const rclcpp::Time & /*time*/, const rclcpp::Duration & /*period*/)
{
  std::string error;
  const bool ok = system_->read(now_s(), error);
  for (std::size_t i = 0; i < system_->size(); ++i) {
    const JointState & s = system_->state(i);
    if (!states_[i].position.empty()) {
      set_state(states_[i].position, s.position_rad);
    }
    if (!states_[i].velocity.empty()) {
      set_state(states_[i].velocity, s.velocity_rad_s);
    }
    if (!states_[i].effort.empty()) {
      set_state(states_[i].effort, s.effort_a);
    }
  }
  if (!ok) {
    RCLCPP_ERROR(get_logger(), "%s", error.c_str());
    return return_type::ERROR;
  }
  return return_type::OK;
}

return_type MmSystemHardware::write(const rclcpp::Time & /*time*/, const rclcpp::Duration & period)
{
  for (std::size_t i = 0; i < system_->size(); ++i) {
    JointCommand & c = system_->command(i);
    if (!commands_[i].position.empty()) {
      c.position_rad = get_command(commands_[i].position);
    }
    if (!commands_[i].velocity.empty()) {
      c.velocity_rad_s = get_command(commands_[i].velocity);
    }
    if (!commands_[i].effort.empty()) {
      c.effort_a = get_command(commands_[i].effort);
    }
  }
  std::string error;
  if (!system_->write(now_s(), period.seconds(), error)) {
    RCLCPP_ERROR(get_logger(), "%s", error.c_str());
    return return_type::ERROR;
  }
  return return_type::OK;
}

}  // namespace mm_hardware

PLUGINLIB_EXPORT_CLASS(mm_hardware::MmSystemHardware, hardware_interface::SystemInterface)
