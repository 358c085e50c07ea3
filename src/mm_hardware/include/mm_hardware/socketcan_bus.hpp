// A CanBus on a Linux SocketCAN interface (raw socket, non-blocking, extended frames only). The bit rate
// (500 kbit/s for the servo) is the interface's: `ip link set can0 up type can bitrate 500000`.
#ifndef MM_HARDWARE__SOCKETCAN_BUS_HPP_
#define MM_HARDWARE__SOCKETCAN_BUS_HPP_

#include <string>

#include "mm_hardware/servo_system.hpp"

namespace mm_hardware
{

class SocketCanBus : public CanBus
{
public:
  /// Open and bind a raw CAN socket on interface; throws HardwareError saying why it cannot.
  explicit SocketCanBus(const std::string & interface);
  ~SocketCanBus() override;
  SocketCanBus(const SocketCanBus &) = delete;
  SocketCanBus & operator=(const SocketCanBus &) = delete;

  bool send(const CanFrame & frame) override;
  bool receive(CanFrame & frame) override;

private:
  int fd_ = -1;
};

}  // namespace mm_hardware

#endif  // MM_HARDWARE__SOCKETCAN_BUS_HPP_
