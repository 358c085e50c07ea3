// The host side of the servo's CAN protocol (firmware/core/can/mm_servo.dbc), ROS-free.
//
// Every id, scale and layout comes from the firmware core: the pack/unpack functions cantools generated from the
// DBC (mm_core/mm_servo.h, compiled into libmmcore) and the addressing, mode and fault constants of mm_core/mm_can.h
// and mm_core/mm_core.h. Nothing here retypes them.
#ifndef MM_HARDWARE__SERVO_PROTOCOL_HPP_
#define MM_HARDWARE__SERVO_PROTOCOL_HPP_

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace mm_hardware
{

/// Raised for a configuration or protocol problem; the message says what was wrong and what to do.
class HardwareError : public std::runtime_error
{
public:
  using std::runtime_error::runtime_error;
};

/// One classic CAN frame with a 29-bit id (the extended-frame flag of SocketCAN is not part of id).
struct CanFrame
{
  uint32_t id = 0;
  uint8_t dlc = 0;
  std::array<uint8_t, 8> data{};
};

/// Servo modes (mm_mode_t of the firmware core, ServoCommand.MODE_*).
enum class ServoMode : uint8_t { kIdle, kHold, kTorque, kPosition, kPolicy, kBrake };

/// What a COMMAND frame carries (no limits or gains: those are registers).
struct ServoCommand
{
  ServoMode mode = ServoMode::kHold;
  float target = 0.0F;                ///< rad in POSITION, A in TORQUE
  float target_velocity_rad_s = 0.0F; ///< reference velocity (rad/s), saturated to the signal's range
  bool clear_faults = false;
};

/// Which part of the servo's state a received frame updated.
enum class FrameKind { kNone, kMotion, kElectrical, kStatus, kFault, kRegister };

/// The decoded content of one frame from a servo (only the fields of its kind are set).
struct ServoFrame
{
  FrameKind kind = FrameKind::kNone;
  uint16_t device_id = 0;
  double position_rad = 0.0;
  double velocity_rad_s = 0.0;
  double current_a = 0.0;
  double current_cmd_a = 0.0;
  double bus_voltage_v = 0.0;
  double temperature_c = 0.0;
  uint8_t mode = 0;
  uint8_t fault_flags = 0;  ///< latched faults (STATUS and FAULT frames)
  uint32_t policy_crc32 = 0;
  uint16_t register_id = 0; ///< REGISTER_RESPONSE
  int32_t register_value = 0;
  uint8_t register_status = 0;
};

/// Device ids that address one servo: 1..max_device_id() (the rest is broadcast).
uint16_t max_device_id();
/// The broadcast device id (HEARTBEAT, EXPLORATION and COMMAND only).
uint16_t broadcast_device_id();
/// The firmware's register that holds its heartbeat timeout (ms).
uint16_t heartbeat_timeout_register();
/// Fault bits that refuse active modes until cleared (MM_FAULTS_BLOCKING).
uint8_t blocking_faults();

/// A HEARTBEAT frame to device (a servo id or broadcast_device_id()).
CanFrame heartbeat_frame(uint16_t device_id, uint32_t seq);
/// A COMMAND frame to device; a non-finite target or velocity throws HardwareError.
CanFrame command_frame(uint16_t device_id, const ServoCommand & command);
/// A REGISTER_REQUEST read of register_id from device.
CanFrame register_read_frame(uint16_t device_id, uint16_t register_id);
/// Decode a frame from a servo; kind kNone for host frames, unknown ids and short frames.
ServoFrame decode_frame(const CanFrame & frame);
/// Names of the fault bits set in flags, e.g. "OVERTEMPERATURE|HEARTBEAT_LOST" ("none" for 0).
std::string fault_names(uint32_t flags);

}  // namespace mm_hardware

#endif  // MM_HARDWARE__SERVO_PROTOCOL_HPP_
