// The ros2_control hardware interface's logic without ROS: configuration from the URDF's <ros2_control> parameters,
// per-joint command modes, activation that clears the servo's faults, heartbeats, fault detection and the mock
// mode. MmSystemHardware (mm_system_hardware.hpp) only translates between ros2_control and this class.
//
// Time is passed in by the caller (seconds on any monotonic clock); nothing here reads a clock or sleeps.
#ifndef MM_HARDWARE__SERVO_SYSTEM_HPP_
#define MM_HARDWARE__SERVO_SYSTEM_HPP_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mm_hardware/servo_protocol.hpp"

namespace mm_hardware
{

/// Interface names (hardware_interface::HW_IF_POSITION, HW_IF_VELOCITY, HW_IF_EFFORT).
inline constexpr const char * kPosition = "position";
inline constexpr const char * kVelocity = "velocity";
inline constexpr const char * kEffort = "effort";

/// A CAN bus as the system needs it. Both calls must not block.
class CanBus
{
public:
  virtual ~CanBus() = default;
  /// Queue one frame; false when the bus refused it (down, queue full).
  virtual bool send(const CanFrame & frame) = 0;
  /// The next received frame, if any.
  virtual bool receive(CanFrame & frame) = 0;
};

struct JointConfig
{
  std::string name;
  uint16_t device_id = 0;  ///< the servo's CAN node id, 1..1022
};

/// Parameters of the <hardware> tag (defaults here are the only ones: the URDF may leave them out).
struct SystemConfig
{
  std::string can_interface;         ///< SocketCAN interface (e.g. can0); unused in mock mode
  bool mock = false;                 ///< echo commands to states, no bus
  double heartbeat_period_s = 0.01;  ///< at most half the servo's watchdog timeout (50 ms by default)
  double state_timeout_s = 0.1;      ///< an active servo silent this long is an error (s)
  double response_timeout_s = 0.5;   ///< how long configure and activate wait for the servos (s)
  std::vector<JointConfig> joints;
};

using Params = std::map<std::string, std::string>;

/// Parse and check the <hardware> parameters and each joint's (name, parameters); throws HardwareError naming the
/// parameter and the joint.
SystemConfig parse_config(
  const Params & hardware, const std::vector<std::pair<std::string, Params>> & joints);

/// Check the interfaces the URDF lists for a joint: commands from position, velocity, effort; states from
/// position, velocity, effort. Throws HardwareError naming the first unsupported one.
void check_interfaces(
  const std::string & joint, const std::vector<std::string> & command_interfaces,
  const std::vector<std::string> & state_interfaces);

/// What the servo is asked to do, from the set of command interfaces claimed on its joint.
enum class CommandMode
{
  kHold,              ///< nothing claimed: HOLD where it is
  kPosition,          ///< POSITION to the position command
  kPositionVelocity,  ///< POSITION with the velocity command as reference velocity (feed-forward)
  kVelocity,          ///< POSITION one write period ahead of the measured position, velocity as reference
  kEffort,            ///< TORQUE: the effort command is the motor current (A)
};

/// The mode for a set of claimed interface names (kPosition, ...); false when the servo cannot take that
/// combination (effort with position or velocity), with the reason in why.
bool command_mode_for(const std::set<std::string> & claimed, CommandMode & mode, std::string & why);

struct JointState
{
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  double position_rad = kNaN;
  double velocity_rad_s = kNaN;
  double effort_a = kNaN;  ///< measured motor current (A): the effort state interface
  double current_cmd_a = kNaN;
  double bus_voltage_v = kNaN;
  double temperature_c = kNaN;
  uint8_t mode = 0;         ///< ServoMode reported by the servo
  uint8_t fault_flags = 0;  ///< latched faults reported by the servo
  uint32_t policy_crc32 = 0;
  double last_frame_s = -std::numeric_limits<double>::infinity();  ///< when its last state frame arrived
};

struct JointCommand
{
  double position_rad = JointState::kNaN;
  double velocity_rad_s = JointState::kNaN;
  double effort_a = JointState::kNaN;  ///< motor current (A)
};

class ServoSystem
{
public:
  enum class Phase { kUnconfigured, kConfiguring, kInactive, kActivating, kActive, kFaulted };

  explicit ServoSystem(SystemConfig config);

  const SystemConfig & config() const {return config_;}
  std::size_t size() const {return joints_.size();}
  Phase phase() const {return phase_;}
  JointState & state(std::size_t joint) {return joints_.at(joint).state;}
  const JointState & state(std::size_t joint) const {return joints_.at(joint).state;}
  JointCommand & command(std::size_t joint) {return joints_.at(joint).command;}
  CommandMode mode(std::size_t joint) const {return joints_.at(joint).mode;}

  /// Start talking to the servos (bus is unused in mock mode and may be null): ask each for its watchdog timeout.
  void configure(CanBus * bus, double now_s);
  /// Call until true: every servo answered and the heartbeat period suits its watchdog. Throws HardwareError
  /// when one did not answer within response_timeout_s or its watchdog is too short for heartbeat_period_s.
  bool configure_done(double now_s);

  /// Start activation: a heartbeat and COMMAND(HOLD, clear_faults) to every servo (the heartbeat first, so a
  /// latched HEARTBEAT_LOST can clear).
  void activate(double now_s);
  /// Call until true (sends heartbeats meanwhile): every servo reports HOLD without blocking faults; the
  /// position commands are then seeded with the measured positions, so nothing jumps. Throws HardwareError naming
  /// the faults still latched (their cause is present) after response_timeout_s.
  bool activate_done(double now_s);

  /// Leave ACTIVE (deactivate, error, cleanup): COMMAND(BRAKE) to every servo, no more heartbeats.
  void stop();

  /// Drain the bus into the joint states. While active, false with the reason when a servo reports a blocking
  /// fault or went silent for state_timeout_s; the system is then kFaulted until activated again.
  bool read(double now_s, std::string & error);
  /// Send each joint's command (when it changed) and a heartbeat to each servo when heartbeat_period_s, less half
  /// a write period, has passed (a loop running at that period sends one every cycle despite its jitter; a faster
  /// one does not flood the bus); in mock mode echo the commands to the states instead. False with the reason
  /// when the bus refused a frame.
  bool write(double now_s, double period_s, std::string & error);

  /// Whether the claims after stopping stop and starting start (names "joint/interface") leave every joint a
  /// mode the servo has; the reason in why when not. Interfaces of other systems are ignored.
  bool prepare_switch(
    const std::vector<std::string> & start, const std::vector<std::string> & stop,
    std::string & why) const;
  /// Apply a switch prepare_switch accepted. A joint entering a position mode gets its position command seeded
  /// with its measured position (so it holds until a controller commands); returns those joints.
  std::vector<std::size_t> perform_switch(
    const std::vector<std::string> & start, const std::vector<std::string> & stop);

private:
  struct Joint
  {
    JointConfig config;
    JointState state;
    JointCommand command;
    std::set<std::string> claimed;
    CommandMode mode = CommandMode::kHold;
    bool answered = false;         ///< configure: its watchdog register arrived
    int32_t watchdog_ms = 0;
    bool sent_valid = false;       ///< last_sent holds the last COMMAND frame sent
    CanFrame last_sent;
  };

  bool send(const CanFrame & frame);
  void heartbeats_if_due(double now_s, double cycle_s);
  void apply(const ServoFrame & frame, double now_s);
  void drain(double now_s);
  ServoCommand servo_command(const Joint & joint, double period_s) const;
  void mock_echo(Joint & joint, double period_s);
  std::set<std::string> claims_after(
    const Joint & joint, const std::vector<std::string> & start,
    const std::vector<std::string> & stop) const;
  std::string describe(const Joint & joint) const;

  SystemConfig config_;
  std::vector<Joint> joints_;
  CanBus * bus_ = nullptr;
  Phase phase_ = Phase::kUnconfigured;
  double deadline_s_ = 0.0;
  double last_heartbeat_s_ = -std::numeric_limits<double>::infinity();
  uint32_t heartbeat_seq_ = 0;
  bool send_failed_ = false;
};

}  // namespace mm_hardware

#endif  // MM_HARDWARE__SERVO_SYSTEM_HPP_
