#include "mm_hardware/servo_system.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <sstream>
#include <utility>

namespace mm_hardware
{
namespace
{

const std::set<std::string> kInterfaces = {kPosition, kVelocity, kEffort};

double parse_seconds(const Params & params, const std::string & name, double fallback)
{
  const auto it = params.find(name);
  if (it == params.end()) {
    return fallback;
  }
  std::size_t used = 0;
  double value = 0.0;
  try {
    value = std::stod(it->second, &used);
  } catch (const std::exception &) {
    used = 0;
  }
  if (used == 0 || used != it->second.size() || !std::isfinite(value) || value <= 0.0) {
    throw HardwareError(
            "hardware parameter " + name + " = '" + it->second + "' must be a positive number of seconds");
  }
  return value;
}

bool parse_bool(const Params & params, const std::string & name)
{
  const auto it = params.find(name);
  if (it == params.end()) {
    return false;
  }
  std::string v = it->second;
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) {return std::tolower(c);});
  if (v == "true" || v == "1") {
    return true;
  }
  if (v == "false" || v == "0") {
    return false;
  }
  throw HardwareError("hardware parameter " + name + " = '" + it->second + "' must be true or false");
}

uint16_t parse_node_id(const std::string & joint, const Params & params)
{
  const auto it = params.find("node_id");
  if (it == params.end()) {
    throw HardwareError(
            "joint " + joint + " has no node_id parameter: add <param name=\"node_id\">N</param> with the "
            "servo's CAN id");
  }
  std::size_t used = 0;
  long value = 0;
  try {
    value = std::stol(it->second, &used, 10);
  } catch (const std::exception &) {
    used = 0;
  }
  if (used == 0 || used != it->second.size() || value < 1 || value > max_device_id()) {
    throw HardwareError(
            "joint " + joint + " node_id '" + it->second + "' must be an integer in 1.." +
            std::to_string(max_device_id()));
  }
  return static_cast<uint16_t>(value);
}

// "joint/interface" -> (joint, interface); false for names without a slash.
bool split_name(const std::string & full, std::string & joint, std::string & interface)
{
  const auto slash = full.rfind('/');
  if (slash == std::string::npos) {
    return false;
  }
  joint = full.substr(0, slash);
  interface = full.substr(slash + 1);
  return true;
}

}  // namespace

SystemConfig parse_config(
  const Params & hardware, const std::vector<std::pair<std::string, Params>> & joints)
{
  SystemConfig config;
  config.mock = parse_bool(hardware, "mock_hardware");
  const auto can = hardware.find("can_interface");
  if (can != hardware.end()) {
    config.can_interface = can->second;
  }
  if (!config.mock && config.can_interface.empty()) {
    throw HardwareError(
            "hardware parameter can_interface is missing: name the SocketCAN interface (e.g. can0), or set "
            "mock_hardware to true");
  }
  config.heartbeat_period_s = parse_seconds(hardware, "heartbeat_period_s", config.heartbeat_period_s);
  config.state_timeout_s = parse_seconds(hardware, "state_timeout_s", config.state_timeout_s);
  config.response_timeout_s = parse_seconds(hardware, "response_timeout_s", config.response_timeout_s);
  if (joints.empty()) {
    throw HardwareError("the <ros2_control> tag lists no joint");
  }
  std::map<uint16_t, std::string> ids;
  for (const auto & [name, params] : joints) {
    const uint16_t id = parse_node_id(name, params);
    const auto [it, fresh] = ids.emplace(id, name);
    if (!fresh) {
      throw HardwareError(
              "joints " + it->second + " and " + name + " both have node_id " + std::to_string(id) +
              ": each servo needs its own CAN id");
    }
    config.joints.push_back({name, id});
  }
  return config;
}

void check_interfaces(
  const std::string & joint, const std::vector<std::string> & command_interfaces,
  const std::vector<std::string> & state_interfaces)
{
  for (const auto * list : {&command_interfaces, &state_interfaces}) {
    for (const auto & name : *list) {
      if (kInterfaces.count(name) == 0U) {
        throw HardwareError(
                "joint " + joint + " lists the " + (list == &command_interfaces ? "command" : "state") +
                " interface '" + name + "': the servo has position, velocity and effort (A) only");
      }
    }
  }
}

bool command_mode_for(const std::set<std::string> & claimed, CommandMode & mode, std::string & why)
{
  const bool p = claimed.count(kPosition) != 0U;
  const bool v = claimed.count(kVelocity) != 0U;
  const bool e = claimed.count(kEffort) != 0U;
  if (e && (p || v)) {
    why = "the servo cannot take an effort (current) command together with a position or velocity command: "
      "TORQUE and POSITION are separate modes";
    return false;
  }
  if (e) {
    mode = CommandMode::kEffort;
  } else if (p && v) {
    mode = CommandMode::kPositionVelocity;
  } else if (p) {
    mode = CommandMode::kPosition;
  } else if (v) {
    mode = CommandMode::kVelocity;
  } else {
    mode = CommandMode::kHold;
  }
  return true;
}

ServoSystem::ServoSystem(SystemConfig config)
: config_(std::move(config))
{
  for (const auto & joint : config_.joints) {
    joints_.push_back(Joint{joint, {}, {}, {}, CommandMode::kHold, false, 0, false, {}});
  }
}

std::string ServoSystem::describe(const Joint & joint) const
{
  return joint.config.name + " (servo " + std::to_string(joint.config.device_id) + ")";
}

bool ServoSystem::send(const CanFrame & frame)
{
  const bool ok = bus_ != nullptr && bus_->send(frame);
  send_failed_ = send_failed_ || !ok;
  return ok;
}

void ServoSystem::configure(CanBus * bus, double now_s)
{
  bus_ = config_.mock ? nullptr : bus;
  if (!config_.mock && bus_ == nullptr) {
    throw HardwareError("no CAN bus to configure the servos on");
  }
  send_failed_ = false;
  for (auto & joint : joints_) {
    joint.state = JointState{};
    joint.command = JointCommand{};
    joint.answered = config_.mock;
    joint.sent_valid = false;
    if (config_.mock) {
      joint.state.position_rad = joint.state.velocity_rad_s = joint.state.effort_a = 0.0;
    } else {
      send(register_read_frame(joint.config.device_id, heartbeat_timeout_register()));
    }
  }
  deadline_s_ = now_s + config_.response_timeout_s;
  phase_ = config_.mock ? Phase::kInactive : Phase::kConfiguring;
}

bool ServoSystem::configure_done(double now_s)
{
  if (phase_ != Phase::kConfiguring) {
    return phase_ == Phase::kInactive;
  }
  drain(now_s);
  for (const auto & joint : joints_) {
    if (!joint.answered) {
      if (now_s > deadline_s_) {
        throw HardwareError(
                describe(joint) + " did not answer on " + config_.can_interface + " within " +
                std::to_string(config_.response_timeout_s) + " s: check its node_id, its power and that the "
                "interface is up at 500 kbit/s");
      }
      return false;
    }
    if (joint.watchdog_ms > 0 && config_.heartbeat_period_s * 1e3 > 0.5 * joint.watchdog_ms) {
      std::ostringstream msg;
      msg << "heartbeat_period_s " << config_.heartbeat_period_s << " is more than half the watchdog timeout of "
          << describe(joint) << " (" << joint.watchdog_ms << " ms): one late heartbeat would stop it; use at "
          << "most " << 0.5e-3 * joint.watchdog_ms << " s";
      throw HardwareError(msg.str());
    }
  }
  phase_ = Phase::kInactive;
  return true;
}

void ServoSystem::heartbeats_if_due(double now_s, double cycle_s)
{
  if (config_.mock || now_s - last_heartbeat_s_ + 0.5 * cycle_s < config_.heartbeat_period_s) {
    return;
  }
  last_heartbeat_s_ = now_s;
  ++heartbeat_seq_;
  for (const auto & joint : joints_) {
    send(heartbeat_frame(joint.config.device_id, heartbeat_seq_));
  }
}

void ServoSystem::activate(double now_s)
{
  if (phase_ == Phase::kUnconfigured || phase_ == Phase::kConfiguring) {
    throw HardwareError("activate before the servos are configured");
  }
  send_failed_ = false;
  deadline_s_ = now_s + config_.response_timeout_s;
  phase_ = Phase::kActivating;
  if (config_.mock) {
    return;
  }
  last_heartbeat_s_ = -std::numeric_limits<double>::infinity();
  heartbeats_if_due(now_s, 0.0);
  ServoCommand hold;
  hold.mode = ServoMode::kHold;
  hold.clear_faults = true;
  for (auto & joint : joints_) {
    joint.last_sent = command_frame(joint.config.device_id, hold);
    joint.sent_valid = true;
    send(joint.last_sent);
  }
}

bool ServoSystem::activate_done(double now_s)
{
  if (phase_ != Phase::kActivating) {
    return phase_ == Phase::kActive;
  }
  if (!config_.mock) {
    drain(now_s);
    heartbeats_if_due(now_s, 0.0);
    for (const auto & joint : joints_) {
      const bool held = joint.state.mode == static_cast<uint8_t>(ServoMode::kHold);
      if (held && (joint.state.fault_flags & blocking_faults()) == 0U) {
        continue;
      }
      if (now_s > deadline_s_) {
        throw HardwareError(
                describe(joint) + " did not leave its faults within " +
                std::to_string(config_.response_timeout_s) + " s: " +
                fault_names(joint.state.fault_flags & blocking_faults()) +
                " still latched (their cause is present: check temperature, supply, encoder) - mode " +
                std::to_string(joint.state.mode));
      }
      return false;
    }
  }
  for (auto & joint : joints_) {
    joint.command.position_rad = joint.state.position_rad;
    joint.command.velocity_rad_s = 0.0;
    joint.command.effort_a = 0.0;
  }
  phase_ = Phase::kActive;
  return true;
}

void ServoSystem::stop()
{
  if (!config_.mock && bus_ != nullptr) {
    ServoCommand brake;
    brake.mode = ServoMode::kBrake;
    for (auto & joint : joints_) {
      joint.last_sent = command_frame(joint.config.device_id, brake);
      joint.sent_valid = true;
      send(joint.last_sent);
    }
  }
  if (phase_ != Phase::kUnconfigured && phase_ != Phase::kConfiguring) {
    phase_ = Phase::kInactive;
  }
}

void ServoSystem::apply(const ServoFrame & frame, double now_s)
{
  for (auto & joint : joints_) {
    if (joint.config.device_id != frame.device_id) {
      continue;
    }
    JointState & s = joint.state;
    switch (frame.kind) {
      case FrameKind::kMotion:
        s.position_rad = frame.position_rad;
        s.velocity_rad_s = frame.velocity_rad_s;
        break;
      case FrameKind::kElectrical:
        s.effort_a = frame.current_a;
        s.current_cmd_a = frame.current_cmd_a;
        s.bus_voltage_v = frame.bus_voltage_v;
        s.temperature_c = frame.temperature_c;
        s.mode = frame.mode;
        break;
      case FrameKind::kStatus:
        s.fault_flags = frame.fault_flags;
        s.policy_crc32 = frame.policy_crc32;
        break;
      case FrameKind::kFault:
        s.fault_flags = frame.fault_flags;
        s.mode = frame.mode;
        break;
      case FrameKind::kRegister:
        if (frame.register_id == heartbeat_timeout_register() && frame.register_status == 0U) {
          joint.watchdog_ms = frame.register_value;
          joint.answered = true;
        }
        return;
      case FrameKind::kNone:
        return;
    }
    s.last_frame_s = now_s;
    return;
  }
}

void ServoSystem::drain(double now_s)
{
  if (bus_ == nullptr) {
    return;
  }
  CanFrame frame;
  while (bus_->receive(frame)) {
    apply(decode_frame(frame), now_s);
  }
}

bool ServoSystem::read(double now_s, std::string & error)
{
  drain(now_s);
  if (phase_ != Phase::kActive || config_.mock) {
    return true;
  }
  for (const auto & joint : joints_) {
    const uint8_t faults = joint.state.fault_flags & blocking_faults();
    if (faults != 0U) {
      error = describe(joint) + " reports " + fault_names(faults) +
        ": reactivate the hardware component to clear it once its cause is gone";
    } else if (now_s - joint.state.last_frame_s > config_.state_timeout_s) {
      error = "no state from " + describe(joint) + " for " + std::to_string(now_s - joint.state.last_frame_s) +
        " s (state_timeout_s " + std::to_string(config_.state_timeout_s) + "): is it on " +
        config_.can_interface + "?";
    } else {
      continue;
    }
    phase_ = Phase::kFaulted;
    return false;
  }
  return true;
}

ServoCommand ServoSystem::servo_command(const Joint & joint, double period_s) const
{
  const JointCommand & c = joint.command;
  ServoCommand out;
  out.mode = ServoMode::kHold;
  const auto finite = [](double x) {return std::isfinite(x);};
  switch (joint.mode) {
    case CommandMode::kPosition:
    case CommandMode::kPositionVelocity:
      if (finite(c.position_rad)) {
        out.mode = ServoMode::kPosition;
        out.target = static_cast<float>(c.position_rad);
        const bool ff = joint.mode == CommandMode::kPositionVelocity && finite(c.velocity_rad_s);
        out.target_velocity_rad_s = ff ? static_cast<float>(c.velocity_rad_s) : 0.0F;
      }
      break;
    case CommandMode::kVelocity:
      // The servo has no velocity mode: POSITION one period ahead of where it is, with the velocity as the
      // reference velocity. The target follows the measurement, so a blocked joint winds nothing up.
      if (finite(c.velocity_rad_s) && finite(joint.state.position_rad)) {
        out.mode = ServoMode::kPosition;
        out.target = static_cast<float>(joint.state.position_rad + c.velocity_rad_s * period_s);
        out.target_velocity_rad_s = static_cast<float>(c.velocity_rad_s);
      }
      break;
    case CommandMode::kEffort:
      if (finite(c.effort_a)) {
        out.mode = ServoMode::kTorque;
        out.target = static_cast<float>(c.effort_a);
      }
      break;
    case CommandMode::kHold:
      break;
  }
  if (!std::isfinite(out.target) || !std::isfinite(out.target_velocity_rad_s)) {
    return ServoCommand{};  // beyond float: HOLD rather than throw in the control loop
  }
  return out;
}

void ServoSystem::mock_echo(Joint & joint, double period_s)
{
  JointState & s = joint.state;
  const JointCommand & c = joint.command;
  const auto take = [](double & state, double command) {
      if (std::isfinite(command)) {
        state = command;
      }
    };
  switch (joint.mode) {
    case CommandMode::kPositionVelocity:
      take(s.velocity_rad_s, c.velocity_rad_s);
      take(s.position_rad, c.position_rad);
      break;
    case CommandMode::kPosition:
      take(s.position_rad, c.position_rad);
      break;
    case CommandMode::kVelocity:
      take(s.velocity_rad_s, c.velocity_rad_s);
      if (std::isfinite(c.velocity_rad_s)) {
        s.position_rad += c.velocity_rad_s * period_s;
      }
      break;
    case CommandMode::kEffort:
      take(s.effort_a, c.effort_a);
      break;
    case CommandMode::kHold:
      break;
  }
}

bool ServoSystem::write(double now_s, double period_s, std::string & error)
{
  if (phase_ != Phase::kActive) {
    return true;
  }
  if (config_.mock) {
    for (auto & joint : joints_) {
      mock_echo(joint, period_s);
    }
    return true;
  }
  send_failed_ = false;
  heartbeats_if_due(now_s, period_s);
  for (auto & joint : joints_) {
    const CanFrame frame = command_frame(joint.config.device_id, servo_command(joint, period_s));
    const bool same = joint.sent_valid && frame.id == joint.last_sent.id && frame.dlc == joint.last_sent.dlc &&
      std::memcmp(frame.data.data(), joint.last_sent.data.data(), frame.dlc) == 0;
    if (!same) {
      joint.sent_valid = send(frame);
      joint.last_sent = frame;
    }
  }
  if (send_failed_) {
    error = "the CAN interface " + config_.can_interface + " refused a frame (bus off or down?)";
    return false;
  }
  return true;
}

std::set<std::string> ServoSystem::claims_after(
  const Joint & joint, const std::vector<std::string> & start,
  const std::vector<std::string> & stop) const
{
  std::set<std::string> claimed = joint.claimed;
  std::string name;
  std::string interface;
  for (const auto & full : stop) {
    if (split_name(full, name, interface) && name == joint.config.name) {
      claimed.erase(interface);
    }
  }
  for (const auto & full : start) {
    if (split_name(full, name, interface) && name == joint.config.name) {
      claimed.insert(interface);
    }
  }
  return claimed;
}

bool ServoSystem::prepare_switch(
  const std::vector<std::string> & start, const std::vector<std::string> & stop,
  std::string & why) const
{
  for (const auto & joint : joints_) {
    CommandMode mode = CommandMode::kHold;
    std::string reason;
    if (!command_mode_for(claims_after(joint, start, stop), mode, reason)) {
      why = "joint " + joint.config.name + ": " + reason;
      return false;
    }
  }
  return true;
}

std::vector<std::size_t> ServoSystem::perform_switch(
  const std::vector<std::string> & start, const std::vector<std::string> & stop)
{
  std::vector<std::size_t> seeded;
  for (std::size_t i = 0; i < joints_.size(); ++i) {
    Joint & joint = joints_[i];
    std::set<std::string> claimed = claims_after(joint, start, stop);
    CommandMode mode = CommandMode::kHold;
    std::string why;
    if (!command_mode_for(claimed, mode, why)) {
      continue;  // prepare_switch refused it
    }
    const bool to_position = (mode == CommandMode::kPosition || mode == CommandMode::kPositionVelocity) &&
      joint.mode != CommandMode::kPosition && joint.mode != CommandMode::kPositionVelocity;
    if (to_position) {
      joint.command.position_rad = joint.state.position_rad;
      seeded.push_back(i);
    }
    joint.claimed = std::move(claimed);
    joint.mode = mode;
  }
  return seeded;
}

}  // namespace mm_hardware
