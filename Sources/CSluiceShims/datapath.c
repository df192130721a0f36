#define _GNU_SOURCE
#include "sluice_datapath.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int sluice_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int sluice_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int sluice_name_current_thread(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof(truncated) - 1);
    truncated[sizeof(truncated) - 1] = '\0';
    return pthread_setname_np(pthread_self(), truncated);
}

int sluice_allowed_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

int sluice_driver_name(const char *ifname, char *name, unsigned long size) {
    if (size == 0 || strlen(ifname) >= IFNAMSIZ) { errno = EINVAL; return -1; }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    strncpy(request.ifr_name, ifname, IFNAMSIZ - 1);
    request.ifr_data = (void *)&info;
    int result = ioctl(fd, SIOCETHTOOL, &request);
    int saved = errno;
    close(fd);
    if (result < 0) { errno = saved; return -1; }
    size_t length = strnlen(info.driver, sizeof(info.driver));
    if (length >= size) length = size - 1;
    memcpy(name, info.driver, length);
    name[length] = 0;
    return 0;
}
