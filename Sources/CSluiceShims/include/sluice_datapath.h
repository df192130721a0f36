#ifndef SLUICE_DATAPATH_H
#define SLUICE_DATAPATH_H
/* Data-path helpers whose C form Swift cannot reach: glibc's eventfd header
 * (not in the Glibc module map) and the CPU_SET macros. */

/* eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): a descriptor or -1 with errno. */
int sluice_eventfd(void);

/* Pins the calling thread to `cpu`: 0 or an errno value (like pthread calls). */
int sluice_pin_current_thread(int cpu);

/* Names the calling thread for ps -L and top -H (the kernel keeps the first
 * 15 bytes): 0 or an errno value. */
int sluice_name_current_thread(const char *name);

/* The number of CPUs the process may run on (sched_getaffinity), or -1 with errno. */
int sluice_allowed_cpu_count(void);
#endif
