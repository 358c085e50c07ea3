#pragma once
/* Stand-in for the config.h rmw_microxrcedds' CMake generates: the transport the app's meta file chooses
 * (app-colcon.meta: udp, app-colcon-uart.meta: custom), keyed here on the Kconfig choice the check compiles. */
#include "sdkconfig.h"
#if CONFIG_MM_TRANSPORT_UART
#define RMW_UXRCE_TRANSPORT_CUSTOM
#else
#define RMW_UXRCE_TRANSPORT_UDP
#define RMW_UXRCE_TRANSPORT_IPV4
#endif
