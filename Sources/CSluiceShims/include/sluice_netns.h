#ifndef SLUICE_NETNS_H
#define SLUICE_NETNS_H
/* setns(2) for network namespaces: glibc declares it only under _GNU_SOURCE,
 * which Swift's Glibc module does not define. */

/* Moves the calling thread (only it) into the network namespace that `fd`
 * refers to (an open /run/netns/NAME or /proc/PID/ns/net): 0, or -1 with errno. */
int sluice_setns_net(int fd);
#endif
