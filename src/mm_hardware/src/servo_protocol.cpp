#include "mm_hardware/servo_protocol.hpp"

#include <climits>
#include <cmath>
#include <utility>

#include "mm_core/mm_can.h"
#include "mm_core/mm_core.h"
#include "mm_core/mm_servo.h"

namespace mm_hardware
{
namespace
{

constexpr uint32_t kIdMask = 0x1FFFFFFFU;

uint32_t frame_id(uint32_t type_id, uint16_t device_id) {return type_id | device_id;}

uint32_t type_of(uint32_t id) {return id & ~static_cast<uint32_t>(MM_CAN_DEVICE_MASK) & kIdMask;}

// The reference velocity's physical range, from the generated decoder at the ends of its int16 signal.
float saturate_target_velocity(float value_rad_s)
{
  const float lo = mm_servo_command_target_velocity_decode(INT16_MIN);
  const float hi = mm_servo_command_target_velocity_decode(INT16_MAX);
  return std::fmin(std::fmax(value_rad_s, lo), hi);
}

}  // namespace

uint16_t max_device_id() {return static_cast<uint16_t>(MM_CAN_BROADCAST - 1U);}
uint16_t broadcast_device_id() {return static_cast<uint16_t>(MM_CAN_BROADCAST);}
uint16_t heartbeat_timeout_register() {return MM_REG_HEARTBEAT_TIMEOUT_MS;}
uint8_t blocking_faults() {return static_cast<uint8_t>(MM_FAULTS_BLOCKING);}

CanFrame heartbeat_frame(uint16_t device_id, uint32_t seq)
{
  mm_servo_heartbeat_t msg{};
  msg.seq = seq;
  CanFrame frame;
  frame.id = frame_id(MM_SERVO_HEARTBEAT_FRAME_ID, device_id);
  frame.dlc = static_cast<uint8_t>(mm_servo_heartbeat_pack(frame.data.data(), &msg, frame.data.size()));
  return frame;
}

CanFrame command_frame(uint16_t device_id, const ServoCommand & command)
{
  if (!std::isfinite(command.target) || !std::isfinite(command.target_velocity_rad_s)) {
    throw HardwareError("a COMMAND frame needs a finite target and reference velocity");
  }
  mm_servo_command_t msg{};
  msg.mode = static_cast<uint8_t>(command.mode);
  msg.clear_faults = command.clear_faults ? 1U : 0U;
  msg.stream_transitions = 0U;
  msg.target_velocity =
    mm_servo_command_target_velocity_encode(saturate_target_velocity(command.target_velocity_rad_s));
  msg.target = mm_servo_command_target_encode(command.target);
  CanFrame frame;
  frame.id = frame_id(MM_SERVO_COMMAND_FRAME_ID, device_id);
  frame.dlc = static_cast<uint8_t>(mm_servo_command_pack(frame.data.data(), &msg, frame.data.size()));
  return frame;
}

CanFrame register_read_frame(uint16_t device_id, uint16_t register_id)
{
  mm_servo_register_request_t msg{};
  msg.op = MM_SERVO_REGISTER_REQUEST_OP_READ_CHOICE;
  msg.register_id = register_id;
  CanFrame frame;
  frame.id = frame_id(MM_SERVO_REGISTER_REQUEST_FRAME_ID, device_id);
  frame.dlc = static_cast<uint8_t>(mm_servo_register_request_pack(frame.data.data(), &msg, frame.data.size()));
  return frame;
}

ServoFrame decode_frame(const CanFrame & frame)
{
  ServoFrame out;
  out.device_id = static_cast<uint16_t>(frame.id & MM_CAN_DEVICE_MASK);
  const uint8_t * data = frame.data.data();
  const size_t size = frame.dlc;
  switch (type_of(frame.id)) {
    case MM_SERVO_STATE_MOTION_FRAME_ID: {
        mm_servo_state_motion_t msg;
        if (mm_servo_state_motion_unpack(&msg, data, size) != 0) {break;}
        out.kind = FrameKind::kMotion;
        out.position_rad = mm_servo_state_motion_position_decode(msg.position);
        out.velocity_rad_s = mm_servo_state_motion_velocity_decode(msg.velocity);
        break;
      }
    case MM_SERVO_STATE_ELECTRICAL_FRAME_ID: {
        mm_servo_state_electrical_t msg;
        if (mm_servo_state_electrical_unpack(&msg, data, size) != 0) {break;}
        out.kind = FrameKind::kElectrical;
        out.current_a = mm_servo_state_electrical_current_decode(msg.current);
        out.current_cmd_a = mm_servo_state_electrical_current_cmd_decode(msg.current_cmd);
        out.bus_voltage_v = mm_servo_state_electrical_bus_voltage_decode(msg.bus_voltage);
        out.temperature_c = mm_servo_state_electrical_temperature_decode(msg.temperature);
        out.mode = msg.mode;
        break;
      }
    case MM_SERVO_STATE_STATUS_FRAME_ID: {
        mm_servo_state_status_t msg;
        if (mm_servo_state_status_unpack(&msg, data, size) != 0) {break;}
        out.kind = FrameKind::kStatus;
        out.policy_crc32 = msg.policy_crc32;
        out.fault_flags = msg.fault_flags;
        break;
      }
    case MM_SERVO_FAULT_FRAME_ID: {
        mm_servo_fault_t msg;
        if (mm_servo_fault_unpack(&msg, data, size) != 0) {break;}
        out.kind = FrameKind::kFault;
        out.fault_flags = msg.fault_flags;
        out.mode = msg.mode;
        break;
      }
    case MM_SERVO_REGISTER_RESPONSE_FRAME_ID: {
        mm_servo_register_response_t msg;
        if (size < MM_SERVO_REGISTER_RESPONSE_LENGTH ||
          mm_servo_register_response_unpack(&msg, data, size) != 0)
        {
          break;
        }
        out.kind = FrameKind::kRegister;
        out.register_id = msg.register_id;
        out.register_value = msg.value;
        out.register_status = msg.status;
        break;
      }
    default:
      break;
  }
  return out;
}

std::string fault_names(uint32_t flags)
{
  static const std::pair<uint32_t, const char *> kNames[] = {
    {MM_FAULT_OVERCURRENT, "OVERCURRENT"}, {MM_FAULT_OVERTEMPERATURE, "OVERTEMPERATURE"},
    {MM_FAULT_UNDERVOLTAGE, "UNDERVOLTAGE"}, {MM_FAULT_OVERVOLTAGE, "OVERVOLTAGE"},
    {MM_FAULT_ENCODER, "ENCODER"}, {MM_FAULT_END_STOP, "END_STOP"},
    {MM_FAULT_HEARTBEAT_LOST, "HEARTBEAT_LOST"}, {MM_FAULT_POLICY, "POLICY"}};
  std::string names;
  for (const auto & [bit, name] : kNames) {
    if ((flags & bit) != 0U) {
      names += (names.empty() ? "" : "|") + std::string(name);
    }
  }
  return names.empty() ? "none" : names;
}

}  // namespace mm_hardware
