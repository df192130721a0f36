#define _GNU_SOURCE
#include "sluice_netns.h"

#include <sched.h>

int sluice_setns_net(int fd) {
    return setns(fd, CLONE_NEWNET);
}
