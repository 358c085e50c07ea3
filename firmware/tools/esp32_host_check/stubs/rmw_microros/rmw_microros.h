#pragma once
#include <rmw/rmw.h>
#include <rmw_microxrcedds_c/config.h>
#include <uxr/client/transport.h>
rmw_ret_t rmw_uros_options_set_udp_address(const char *ip, const char *port, rmw_init_options_t *rmw_options);
rmw_ret_t rmw_uros_sync_session(const int timeout_ms);
int64_t rmw_uros_epoch_nanos(void);
#ifdef RMW_UXRCE_TRANSPORT_CUSTOM /* as in the real header: declared only in a custom-transport build */
rmw_ret_t rmw_uros_set_custom_transport(bool framing, void *args, open_custom_func open_cb,
                                        close_custom_func close_cb, write_custom_func write_cb,
                                        read_custom_func read_cb);
#endif
