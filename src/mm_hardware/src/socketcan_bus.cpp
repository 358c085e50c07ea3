#include "mm_hardware/socketcan_bus.hpp"

#include <fcntl.h>
#include <linux/can.h>
#include <linux/can/raw.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mm_hardware
{

SocketCanBus::SocketCanBus(const std::string & interface)
{
  if (interface.empty() || interface.size() >= IFNAMSIZ) {
    throw HardwareError("CAN interface name '" + interface + "' is empty or too long");
  }
  fd_ = ::socket(PF_CAN, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_RAW);
  if (fd_ < 0) {
    throw HardwareError(std::string("cannot open a CAN socket: ") + std::strerror(errno));
  }
  // The servo speaks 29-bit frames only: let the kernel drop the rest.
  const can_filter filter{CAN_EFF_FLAG, CAN_EFF_FLAG | CAN_RTR_FLAG};
  ::setsockopt(fd_, SOL_CAN_RAW, CAN_RAW_FILTER, &filter, sizeof filter);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, interface.c_str(), IFNAMSIZ - 1);
  const bool found = ::ioctl(fd_, SIOCGIFINDEX, &ifr) == 0;
  sockaddr_can addr{};
  addr.can_family = AF_CAN;
  addr.can_ifindex = found ? ifr.ifr_ifindex : 0;
  if (!found || ::bind(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0)
  {
    const std::string why = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    throw HardwareError(
            "cannot bind to CAN interface " + interface + " (" + why + "): is it up? "
            "sudo ip link set " + interface + " up type can bitrate 500000");
  }
}

SocketCanBus::~SocketCanBus()
{
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool SocketCanBus::send(const CanFrame & frame)
{
  can_frame raw{};
  raw.can_id = (frame.id & CAN_EFF_MASK) | CAN_EFF_FLAG;
  raw.can_dlc = frame.dlc;
  std::memcpy(raw.data, frame.data.data(), frame.dlc);
  return ::write(fd_, &raw, sizeof raw) == static_cast<ssize_t>(sizeof raw);
}

bool SocketCanBus::receive(CanFrame & frame)
{
  can_frame raw{};
  while (::read(fd_, &raw, sizeof raw) == static_cast<ssize_t>(sizeof raw)) {
    if ((raw.can_id & (CAN_EFF_FLAG | CAN_RTR_FLAG | CAN_ERR_FLAG)) != CAN_EFF_FLAG || raw.can_dlc > 8U) {
      continue;
    }
    frame.id = raw.can_id & CAN_EFF_MASK;
    frame.dlc = raw.can_dlc;
    std::memcpy(frame.data.data(), raw.data, raw.can_dlc);
    return true;
  }
  return false;
}

}  // namespace mm_hardware
