#ifndef SLUICE_CNETLINK_SHIM_H
#define SLUICE_CNETLINK_SHIM_H
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/socket.h>
#include <netlink/handlers.h>
#include <netlink/genl/genl.h>
#include <netlink/genl/ctrl.h>
#include <linux/netlink.h>
#include <linux/genetlink.h>
#include <linux/ethtool_netlink.h>
#include <linux/rtnetlink.h>
/* AF_XDP socket diagnostics (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY). */
#include <linux/sock_diag.h>
#include <linux/xdp_diag.h>
#endif
