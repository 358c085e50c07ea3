// Tests of the ROS-free core of the ros2_control interface, against the firmware's own C core as the servo: every
// frame the host sends is decoded by the firmware's mm_can_receive() and every state frame it reads comes from
// mm_can_state_frames(), so ids, scales and fault semantics are the servo's, not a copy of them.
//
// Usage: test_servo_system [test name]  (no name: every test). Exit status 1 when a check fails.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mm_core/mm_can.h"
#include "mm_core/mm_core.h"
#include "mm_core/mm_servo.h"
#include "mm_hardware/servo_system.hpp"
#include "mm_hardware/socketcan_bus.hpp"

namespace
{

using mm_hardware::CanFrame;
using mm_hardware::HardwareError;
using mm_hardware::ServoSystem;
using mm_hardware::SystemConfig;

struct CheckFailed
{
  std::string what;
};

#define CHECK(cond) \
  do { \
    if (!(cond)) { \
      throw CheckFailed{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + #cond}; \
    } \
  } while (0)

#define CHECK_THROWS(expr, fragment) \
  do { \
    bool thrown = false; \
    try { \
      expr; \
    } catch (const HardwareError & e) { \
      thrown = true; \
      if (std::string(e.what()).find(fragment) == std::string::npos) { \
        throw CheckFailed{std::to_string(__LINE__) + ": message '" + e.what() + "' lacks '" + fragment + "'"}; \
      } \
    } \
    CHECK(thrown); \
  } while (0)

bool near(double a, double b, double tol) {return std::fabs(a - b) <= tol;}

constexpr double kTick = 0.001;          // the firmware's control period (s)
constexpr unsigned kStateDecimation = 5;  // a state sample every 5 ticks: 200 Hz, as the servo streams them

// Servos on a bus: the firmware core behind its CAN endpoint, stepped in servo time.
class FirmwareBus : public mm_hardware::CanBus
{
public:
  explicit FirmwareBus(const std::vector<uint16_t> & ids)
  {
    for (const uint16_t id : ids) {
      Servo s;
      s.memory.reset(static_cast<unsigned char *>(std::aligned_alloc(16, (mm_core_size() + 15U) & ~15U)));
      s.core = reinterpret_cast<mm_core_t *>(s.memory.get());
      mm_config_t cfg;
      mm_core_config_default(&cfg);
      if (mm_core_init(s.core, &cfg) != MM_OK || !mm_can_init(&s.can, id, 0U, 0U, 1.0F)) {
        throw CheckFailed{"firmware core did not initialise"};
      }
      s.sensors = calm(1000U);
      servos_.push_back(std::move(s));
    }
  }

  static mm_sensors_t calm(uint16_t count)
  {
    mm_sensors_t s{};
    s.encoder_count = count;
    s.encoder_ok = true;
    s.bus_voltage_v = 24.0F;
    s.temperature_c = 30.0F;
    return s;
  }

  bool send(const CanFrame & frame) override
  {
    if (refuse_) {
      return false;
    }
    sent.push_back(frame);
    mm_can_frame_t rx{};
    rx.id = frame.id;
    rx.dlc = frame.dlc;
    std::memcpy(rx.data, frame.data.data(), frame.dlc);
    for (auto & s : servos_) {
      mm_can_frame_t tx[MM_CAN_MAX_REPLIES];
      const uint8_t n = mm_can_receive(&s.can, s.core, &rx, tx);
      for (uint8_t i = 0; i < n; ++i) {
        to_host(tx[i]);
      }
    }
    return true;
  }

  bool receive(CanFrame & frame) override
  {
    if (inbox_.empty()) {
      return false;
    }
    frame = inbox_.front();
    inbox_.pop_front();
    return true;
  }

  /// Run every servo for seconds of control time; state frames at 200 Hz, FAULT frames when faults latch.
  void step(double seconds)
  {
    const auto ticks = static_cast<unsigned>(std::lround(seconds / kTick));
    for (unsigned t = 0; t < ticks; ++t) {
      ++tick_;
      for (auto & s : servos_) {
        mm_actuator_t out;
        mm_core_step(s.core, &s.sensors, static_cast<float>(kTick), &out);
        mm_can_frame_t fault;
        if (s.silent) {
          continue;
        }
        if (mm_can_fault_frame(&s.can, s.core, &fault)) {
          to_host(fault);
        }
        if (tick_ % kStateDecimation == 0U) {
          mm_can_frame_t frames[MM_CAN_STATE_FRAMES];
          const uint8_t n = mm_can_state_frames(&s.can, s.core, frames);
          for (uint8_t i = 0; i < n; ++i) {
            to_host(frames[i]);
          }
        }
      }
    }
  }

  double now() const {return static_cast<double>(tick_) * kTick;}
  mm_state_t state(std::size_t i) const
  {
    mm_state_t s;
    mm_core_get_state(servos_.at(i).core, &s);
    return s;
  }
  mm_sensors_t & sensors(std::size_t i) {return servos_.at(i).sensors;}
  void silence(std::size_t i) {servos_.at(i).silent = true;}
  void refuse_sends(bool refuse) {refuse_ = refuse;}

  std::vector<CanFrame> sent;

private:
  struct Free
  {
    void operator()(unsigned char * p) const {std::free(p);}
  };
  struct Servo
  {
    std::unique_ptr<unsigned char, Free> memory;
    mm_core_t * core = nullptr;
    mm_can_t can{};
    mm_sensors_t sensors{};
    bool silent = false;
  };

  void to_host(const mm_can_frame_t & f)
  {
    CanFrame frame;
    frame.id = f.id;
    frame.dlc = f.dlc;
    std::memcpy(frame.data.data(), f.data, f.dlc);
    inbox_.push_back(frame);
  }

  std::vector<Servo> servos_;
  std::deque<CanFrame> inbox_;
  uint64_t tick_ = 0;
  bool refuse_ = false;
};

SystemConfig config(std::vector<uint16_t> ids, bool mock = false)
{
  mm_hardware::Params hardware{{"can_interface", "vcan0"}, {"mock_hardware", mock ? "true" : "false"}};
  std::vector<std::pair<std::string, mm_hardware::Params>> joints;
  for (const uint16_t id : ids) {
    joints.push_back({"joint" + std::to_string(id), {{"node_id", std::to_string(id)}}});
  }
  return mm_hardware::parse_config(hardware, joints);
}

// Step the bus 1 ms at a time until done() or limit_s of servo time; returns done().
bool run_until(FirmwareBus & bus, const std::function<bool()> & done, double limit_s)
{
  const double end = bus.now() + limit_s;
  while (!done()) {
    if (bus.now() > end) {
      return false;
    }
    bus.step(kTick);
  }
  return true;
}

void bring_up(ServoSystem & system, FirmwareBus & bus)
{
  system.configure(&bus, bus.now());
  CHECK(run_until(bus, [&] {return system.configure_done(bus.now());}, 0.4));
  system.activate(bus.now());
  CHECK(run_until(bus, [&] {return system.activate_done(bus.now());}, 0.4));
}

// Run the host's control loop (read, write) every period_s for seconds; false at the first read error.
bool control(ServoSystem & system, FirmwareBus & bus, double seconds, double period_s, std::string & error)
{
  const double end = bus.now() + seconds;
  while (bus.now() < end) {
    bus.step(period_s);
    if (!system.read(bus.now(), error) || !system.write(bus.now(), period_s, error)) {
      return false;
    }
  }
  return true;
}

mm_servo_command_t unpack_command(const CanFrame & frame)
{
  mm_servo_command_t msg{};
  CHECK((frame.id & ~MM_CAN_DEVICE_MASK) == MM_SERVO_COMMAND_FRAME_ID);
  CHECK(mm_servo_command_unpack(&msg, frame.data.data(), frame.dlc) == 0);
  return msg;
}

const CanFrame & last_command(const FirmwareBus & bus)
{
  for (auto it = bus.sent.rbegin(); it != bus.sent.rend(); ++it) {
    if ((it->id & ~MM_CAN_DEVICE_MASK) == MM_SERVO_COMMAND_FRAME_ID) {
      return *it;
    }
  }
  throw CheckFailed{"no COMMAND frame was sent"};
}

// ---------------------------------------------------------------------------------------------------------------

void command_frame_round_trip()
{
  mm_hardware::ServoCommand cmd;
  cmd.mode = mm_hardware::ServoMode::kPosition;
  cmd.target = -1.25F;
  cmd.target_velocity_rad_s = 2.5F;
  cmd.clear_faults = true;
  const CanFrame frame = mm_hardware::command_frame(7, cmd);
  CHECK((frame.id & MM_CAN_DEVICE_MASK) == 7U);
  const mm_servo_command_t msg = unpack_command(frame);
  CHECK(msg.mode == MM_MODE_POSITION);
  CHECK(msg.clear_faults == 1U);
  CHECK(msg.target == -1.25F);
  CHECK(near(mm_servo_command_target_velocity_decode(msg.target_velocity), 2.5, 0.005));
  // Beyond the signal's range the reference velocity saturates instead of wrapping around.
  cmd.target_velocity_rad_s = 1000.0F;
  const float vmax = mm_servo_command_target_velocity_decode(unpack_command(
      mm_hardware::command_frame(7, cmd)).target_velocity);
  CHECK(vmax > 327.0F && vmax < 328.0F);
  cmd.target = NAN;
  CHECK_THROWS(mm_hardware::command_frame(7, cmd), "finite");
  // The heartbeat and register frames decode with the firmware's unpackers too.
  mm_servo_heartbeat_t hb{};
  const CanFrame beat = mm_hardware::heartbeat_frame(3, 41U);
  CHECK(mm_servo_heartbeat_unpack(&hb, beat.data.data(), beat.dlc) == 0 && hb.seq == 41U);
  CHECK(beat.id == (MM_SERVO_HEARTBEAT_FRAME_ID | 3U));
}

void state_frames_decode_to_joint_state()
{
  FirmwareBus bus({1});
  ServoSystem system(config({1}));
  bus.sensors(0) = FirmwareBus::calm(4096U);
  bus.sensors(0).current_a = 1.234F;
  bus.sensors(0).temperature_c = 41.0F;
  system.configure(&bus, bus.now());
  CHECK(run_until(bus, [&] {return system.configure_done(bus.now());}, 0.4));
  bus.step(0.05);
  std::string error;
  CHECK(system.read(bus.now(), error));
  const mm_state_t servo = bus.state(0);
  CHECK(static_cast<float>(system.state(0).position_rad) == servo.position_rad);
  CHECK(near(system.state(0).position_rad, M_PI / 2.0, 1e-3));
  CHECK(near(system.state(0).effort_a, 1.234, 0.0011));
  CHECK(near(system.state(0).temperature_c, 41.0, 1e-9));
  CHECK(near(system.state(0).bus_voltage_v, 24.0, 0.011));
}

void position_command_reaches_the_servo()
{
  FirmwareBus bus({1, 2});
  ServoSystem system(config({1, 2}));
  bring_up(system, bus);
  CHECK(bus.state(0).mode == MM_MODE_HOLD && bus.state(1).mode == MM_MODE_HOLD);
  std::string why;
  CHECK(system.prepare_switch({"joint2/position", "joint2/velocity"}, {}, why));
  system.perform_switch({"joint2/position", "joint2/velocity"}, {});
  system.command(1).position_rad = 0.5;
  system.command(1).velocity_rad_s = 2.0;
  std::string error;
  CHECK(control(system, bus, 0.02, 0.01, error));
  CHECK(bus.state(1).mode == MM_MODE_POSITION);
  CHECK(bus.state(1).target_rad == 0.5F);
  CHECK(near(mm_servo_command_target_velocity_decode(unpack_command(last_command(bus)).target_velocity), 2.0, 0.005));
  CHECK(bus.state(0).mode == MM_MODE_HOLD);  // joint1 has no controller: it holds
  system.command(1).position_rad = 1e39;     // beyond float: the servo holds, write() does not throw
  CHECK(control(system, bus, 0.02, 0.01, error));
  CHECK(bus.state(1).mode == MM_MODE_HOLD);
}

void effort_command_is_motor_current()
{
  FirmwareBus bus({1});
  ServoSystem system(config({1}));
  bring_up(system, bus);
  system.perform_switch({"joint1/effort"}, {});
  system.command(0).effort_a = 0.8;
  std::string error;
  CHECK(control(system, bus, 0.02, 0.01, error));
  CHECK(bus.state(0).mode == MM_MODE_TORQUE);
  CHECK(near(bus.state(0).current_cmd_a, 0.8, 1e-6));
}

void velocity_alone_leads_the_measured_position()
{
  FirmwareBus bus({1});
  ServoSystem system(config({1}));
  bring_up(system, bus);
  system.perform_switch({"joint1/velocity"}, {});
  system.command(0).velocity_rad_s = 1.5;
  std::string error;
  CHECK(control(system, bus, 0.01, 0.01, error));
  const mm_servo_command_t msg = unpack_command(last_command(bus));
  CHECK(msg.mode == MM_MODE_POSITION);
  CHECK(near(msg.target, system.state(0).position_rad + 1.5 * 0.01, 1e-5));
  CHECK(near(mm_servo_command_target_velocity_decode(msg.target_velocity), 1.5, 0.005));
}

void mixed_position_and_effort_refused()
{
  ServoSystem system(config({1, 2}, true));
  std::string why;
  CHECK(!system.prepare_switch({"joint1/position", "joint1/effort"}, {}, why));
  CHECK(why.find("joint1") != std::string::npos && why.find("effort") != std::string::npos);
  system.perform_switch({"joint1/position"}, {});
  CHECK(!system.prepare_switch({"joint1/effort"}, {}, why));           // position is still claimed
  CHECK(system.prepare_switch({"joint1/effort"}, {"joint1/position"}, why));  // a switch, not a mix
  CHECK(system.prepare_switch({"joint2/effort", "other_joint/position"}, {}, why));  // not ours: ignored
  CHECK(system.perform_switch({"joint1/effort"}, {"joint1/position"}).empty());
  CHECK(system.mode(0) == mm_hardware::CommandMode::kEffort);
  CHECK(system.mode(1) == mm_hardware::CommandMode::kHold);
}

void fault_in_state_is_a_read_error()
{
  FirmwareBus bus({1});
  ServoSystem system(config({1}));
  bring_up(system, bus);
  std::string error;
  CHECK(control(system, bus, 0.05, 0.01, error));
  bus.sensors(0).temperature_c = 150.0F;  // above the firmware's 100 degC limit
  CHECK(!control(system, bus, 0.05, 0.01, error));
  CHECK(error.find("OVERTEMPERATURE") != std::string::npos);
  CHECK(system.phase() == ServoSystem::Phase::kFaulted);
}

void reactivation_clears_faults_once_their_cause_is_gone()
{
  FirmwareBus bus({1});
  ServoSystem system(config({1}));
  bring_up(system, bus);
  std::string error;
  bus.sensors(0).temperature_c = 150.0F;
  CHECK(!control(system, bus, 0.05, 0.01, error));
  system.stop();  // on_error
  // Still hot: activation refuses and says which fault remains.
  system.activate(bus.now());
  CHECK_THROWS(run_until(bus, [&] {return system.activate_done(bus.now());}, 1.0), "OVERTEMPERATURE");
  CHECK((bus.state(0).fault_flags & MM_FAULT_OVERTEMPERATURE) != 0U);
  // Cooled down: activation clears the latch and the servo takes commands again.
  bus.sensors(0).temperature_c = 30.0F;
  system.stop();
  bus.step(0.02);
  system.activate(bus.now());
  CHECK(run_until(bus, [&] {return system.activate_done(bus.now());}, 0.4));
  CHECK(bus.state(0).fault_flags == 0U);
  system.perform_switch({"joint1/position"}, {});
  system.command(0).position_rad = 0.25;
  CHECK(control(system, bus, 0.05, 0.01, error));
  CHECK(bus.state(0).mode == MM_MODE_POSITION && bus.state(0).target_rad == 0.25F);
}

void heartbeats_keep_the_watchdog_and_their_loss_is_cleared()
{
  FirmwareBus bus({1});
  ServoSystem system(config({1}));
  bring_up(system, bus);
  std::string error;
  CHECK(control(system, bus, 1.0, 0.01, error));  // 1 s of 100 Hz cycles: the 50 ms watchdog stays quiet
  CHECK((bus.state(0).fault_flags & MM_FAULT_HEARTBEAT_LOST) == 0U);
  // A loop a little faster than heartbeat_period_s (9 ms cycles, 10 ms period) sends one every cycle; a 1 kHz loop
  // one every 10 ms, not one per cycle.
  const auto heartbeats = [&] {
      return std::count_if(
        bus.sent.begin(), bus.sent.end(),
        [](const CanFrame & f) {return (f.id & ~MM_CAN_DEVICE_MASK) == MM_SERVO_HEARTBEAT_FRAME_ID;});
    };
  auto before = heartbeats();
  CHECK(control(system, bus, 0.9, 0.009, error));
  CHECK(heartbeats() - before >= 100);  // 100 or 101 cycles: one each (not one every second cycle)
  before = heartbeats();
  CHECK(control(system, bus, 0.1, 0.001, error));
  CHECK(heartbeats() - before >= 9 && heartbeats() - before <= 11);
  bus.step(0.1);  // the controller manager stalls for 100 ms
  CHECK(!system.read(bus.now(), error));
  CHECK(error.find("HEARTBEAT_LOST") != std::string::npos);
  system.stop();
  system.activate(bus.now());  // the heartbeat goes before the clearing command, so the latch can clear
  CHECK(run_until(bus, [&] {return system.activate_done(bus.now());}, 0.4));
  CHECK(bus.state(0).fault_flags == 0U && bus.state(0).mode == MM_MODE_HOLD);
  CHECK(control(system, bus, 0.2, 0.01, error));
}

void deactivate_brakes_and_activate_resumes()
{
  FirmwareBus bus({1});
  ServoSystem system(config({1}));
  bring_up(system, bus);
  system.stop();  // on_deactivate: BRAKE, no more heartbeats
  bus.step(0.5);
  CHECK(bus.state(0).mode == MM_MODE_BRAKE);
  CHECK(bus.state(0).fault_flags == 0U);  // a passive servo does not miss heartbeats
  bus.sensors(0) = FirmwareBus::calm(2000U);  // moved by hand while braked
  system.activate(bus.now());
  CHECK(run_until(bus, [&] {return system.activate_done(bus.now());}, 0.4));
  // Commands are seeded with where the joint is now: a position controller starting from them holds it there.
  CHECK(near(system.command(0).position_rad, bus.state(0).position_rad, 1e-6));
  CHECK(system.perform_switch({"joint1/position"}, {}) == std::vector<std::size_t>{0});
  std::string error;
  CHECK(control(system, bus, 0.05, 0.01, error));
  CHECK(bus.state(0).mode == MM_MODE_POSITION);
  CHECK(near(bus.state(0).target_rad, bus.state(0).position_rad, 1e-6));
}

void silent_servo_is_a_read_error()
{
  FirmwareBus bus({1, 2});
  ServoSystem system(config({1, 2}));
  bring_up(system, bus);
  std::string error;
  CHECK(control(system, bus, 0.05, 0.01, error));
  bus.silence(1);
  CHECK(!control(system, bus, 0.3, 0.01, error));
  CHECK(error.find("no state from joint2 (servo 2)") != std::string::npos);
}

void refused_frame_is_a_write_error()
{
  FirmwareBus bus({1});
  ServoSystem system(config({1}));
  bring_up(system, bus);
  bus.refuse_sends(true);
  std::string error;
  CHECK(!system.write(bus.now() + 0.02, 0.01, error));
  CHECK(error.find("vcan0") != std::string::npos);
}

void configure_checks_presence_and_watchdog()
{
  FirmwareBus bus({1});
  ServoSystem missing(config({1, 7}));
  missing.configure(&bus, bus.now());
  CHECK_THROWS(run_until(bus, [&] {return missing.configure_done(bus.now());}, 1.0), "joint7 (servo 7)");
  SystemConfig slow = config({1});
  slow.heartbeat_period_s = 0.04;  // more than half the firmware's 50 ms watchdog
  ServoSystem system(slow);
  system.configure(&bus, bus.now());
  CHECK_THROWS(run_until(bus, [&] {return system.configure_done(bus.now());}, 1.0), "50 ms");
}

void mock_echoes_commands()
{
  ServoSystem system(config({1, 2}, true));
  system.configure(nullptr, 0.0);
  CHECK(system.configure_done(0.0));
  system.activate(0.0);
  CHECK(system.activate_done(0.0));
  CHECK(system.state(0).position_rad == 0.0);
  system.perform_switch({"joint1/position", "joint2/velocity"}, {});
  system.command(0).position_rad = 1.2;
  system.command(1).velocity_rad_s = 2.0;
  std::string error;
  CHECK(system.write(0.5, 0.5, error));
  CHECK(system.read(0.5, error));
  CHECK(system.state(0).position_rad == 1.2);
  CHECK(system.state(1).velocity_rad_s == 2.0);
  CHECK(near(system.state(1).position_rad, 1.0, 1e-12));
}

void config_is_checked()
{
  using mm_hardware::parse_config;
  const mm_hardware::Params can{{"can_interface", "can0"}};
  CHECK_THROWS(parse_config(can, {{"j", {}}}), "node_id");
  CHECK_THROWS(parse_config(can, {{"j", {{"node_id", "1023"}}}}), "1..1022");
  CHECK_THROWS(parse_config(can, {{"j", {{"node_id", "2x"}}}}), "1..1022");
  CHECK_THROWS(parse_config(can, {{"a", {{"node_id", "3"}}}, {"b", {{"node_id", "3"}}}}), "both have node_id 3");
  CHECK_THROWS(parse_config({}, {{"j", {{"node_id", "1"}}}}), "can_interface");
  CHECK_THROWS(
    parse_config({{"can_interface", "can0"}, {"heartbeat_period_s", "-1"}}, {{"j", {{"node_id", "1"}}}}),
    "heartbeat_period_s");
  CHECK_THROWS(parse_config({{"mock_hardware", "maybe"}}, {{"j", {{"node_id", "1"}}}}), "mock_hardware");
  const SystemConfig ok = parse_config(
    {{"mock_hardware", "True"}, {"heartbeat_period_s", "0.02"}}, {{"j", {{"node_id", "5"}}}});
  CHECK(ok.mock && ok.heartbeat_period_s == 0.02 && ok.joints.at(0).device_id == 5U);
  CHECK_THROWS(mm_hardware::check_interfaces("j", {"acceleration"}, {}), "acceleration");
  mm_hardware::check_interfaces("j", {"position", "velocity", "effort"}, {"position", "velocity", "effort"});
}

void socketcan_refuses_a_missing_interface()
{
  // No CAN interface exists on a build machine: opening one must fail with a reason, not later in read().
  CHECK_THROWS(mm_hardware::SocketCanBus("mm_no_such_can"), "CAN");
  CHECK_THROWS(mm_hardware::SocketCanBus(""), "empty or too long");
}

}  // namespace

int main(int argc, char ** argv)
{
  const std::map<std::string, std::function<void()>> tests = {
    {"command_frame_round_trip", command_frame_round_trip},
    {"state_frames_decode_to_joint_state", state_frames_decode_to_joint_state},
    {"position_command_reaches_the_servo", position_command_reaches_the_servo},
    {"effort_command_is_motor_current", effort_command_is_motor_current},
    {"velocity_alone_leads_the_measured_position", velocity_alone_leads_the_measured_position},
    {"mixed_position_and_effort_refused", mixed_position_and_effort_refused},
    {"fault_in_state_is_a_read_error", fault_in_state_is_a_read_error},
    {"reactivation_clears_faults_once_their_cause_is_gone", reactivation_clears_faults_once_their_cause_is_gone},
    {"heartbeats_keep_the_watchdog_and_their_loss_is_cleared",
      heartbeats_keep_the_watchdog_and_their_loss_is_cleared},
    {"deactivate_brakes_and_activate_resumes", deactivate_brakes_and_activate_resumes},
    {"silent_servo_is_a_read_error", silent_servo_is_a_read_error},
    {"refused_frame_is_a_write_error", refused_frame_is_a_write_error},
    {"configure_checks_presence_and_watchdog", configure_checks_presence_and_watchdog},
    {"mock_echoes_commands", mock_echoes_commands},
    {"config_is_checked", config_is_checked},
    {"socketcan_refuses_a_missing_interface", socketcan_refuses_a_missing_interface},
  };
  int failed = 0;
  for (const auto & [name, test] : tests) {
    if (argc > 1 && name != argv[1]) {
      continue;
    }
    try {
      test();
      std::cout << "ok   " << name << "\n";
    } catch (const CheckFailed & f) {
      std::cout << "FAIL " << name << ": " << f.what << "\n";
      ++failed;
    } catch (const std::exception & e) {
      std::cout << "FAIL " << name << ": unexpected exception: " << e.what() << "\n";
      ++failed;
    }
  }
  if (argc > 1 && tests.count(argv[1]) == 0U) {
    std::cout << "no test named " << argv[1] << "\n";
    return 2;
  }
  return failed == 0 ? 0 : 1;
}
