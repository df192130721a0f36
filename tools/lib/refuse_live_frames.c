/* refuse-live-frames: runs a command as if on a kernel that refuses XDP live
 * frames (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES answered EPERM even to
 * root, as some distribution builds do), so the suite and the demo can be
 * shown to work on such a kernel from a machine that allows them.
 *
 * Why a seccomp supervisor and not a plain filter: a filter sees only the
 * bpf() command, not the flags inside the attribute it points to; refusing
 * every BPF_PROG_RUN would also refuse the plain runs that do work on those
 * kernels and make the probes say "unknown" instead of "missing". So the
 * filter hands each BPF_PROG_RUN to this process (SECCOMP_RET_USER_NOTIF),
 * which reads the flags from the caller's memory and answers EPERM for live
 * frames and "carry on" for the rest. Every descendant inherits the filter.
 *
 * Usage: refuse-live-frames COMMAND [ARG...]; exits with the command's status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef BPF_F_TEST_XDP_LIVE_FRAMES
#define BPF_F_TEST_XDP_LIVE_FRAMES (1U << 1)
#endif

static int install_filter(void)
{
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_bpf, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, BPF_PROG_TEST_RUN, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = { .len = sizeof program / sizeof program[0], .filter = program };
    return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
}

/* The caller's BPF_PROG_RUN flags; -1 when its memory cannot be read (it
 * died, or the pointer is bad: the kernel will answer that itself). */
static int64_t test_run_flags(pid_t pid, uint64_t attr_address)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint32_t flags;
    ssize_t got = pread(fd, &flags, sizeof flags, (off_t)(attr_address + offsetof(union bpf_attr, test.flags)));
    close(fd);
    return got == (ssize_t)sizeof flags ? (int64_t)flags : -1;
}

static void answer(int listener, struct seccomp_notif *request, struct seccomp_notif_resp *response)
{
    memset(response, 0, sizeof *response);
    response->id = request->id;
    int64_t flags = test_run_flags(request->pid, request->data.args[1]);
    /* The notification must still be live for what was read to be its own. */
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &request->id) != 0)
        return;
    if (flags >= 0 && (flags & BPF_F_TEST_XDP_LIVE_FRAMES))
        response->error = -EPERM;
    else
        response->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, response);
}

#define NESTED_MARK "SLUICE_REFUSING_LIVE_FRAMES"

static volatile pid_t command;
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

static void forward_signal(int signal_number, siginfo_t *info, void *context)
{
    (void)context;
    if (info->si_code == SI_USER || info->si_code == SI_QUEUE)
        kill(command, signal_number);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: refuse-live-frames COMMAND [ARG...]\n");
        return 2;
    }
    /* Under this program already (the suite run under it runs it again):
     * the kernel takes one listener per process tree, and the outer one
     * refuses live frames for this command too. */
    if (getenv(NESTED_MARK)) {
        execvp(argv[1], argv + 1);
        fprintf(stderr, "refuse-live-frames: %s: %s\n", argv[1], strerror(errno));
        return 127;
    }
    int listener = install_filter();
    if (listener < 0) {
        fprintf(stderr, "refuse-live-frames: seccomp user notification: %s (needs Linux 5.5 and CAP_SYS_ADMIN)\n",
                strerror(errno));
        return 1;
    }
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        perror("refuse-live-frames: fork");
        return 1;
    }
    if (child == 0) {
        close(listener);
        /* The command must not outlive this process: without it, its
         * BPF_PROG_RUN calls would fail with ENOSYS, which no kernel says. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        setenv(NESTED_MARK, "1", 1);
        execvp(argv[1], argv + 1);
        fprintf(stderr, "refuse-live-frames: %s: %s\n", argv[1], strerror(errno));
        _exit(127);
    }
    /* A signal sent to this process (kill, a test's launcher) is the
     * command's; one from the terminal (Ctrl-C) reached it already. */
    command = child;
    struct sigaction forward = { .sa_sigaction = forward_signal, .sa_flags = SA_SIGINFO | SA_RESTART };
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaction(forwarded[i], &forward, NULL);
    int child_fd = (int)syscall(SYS_pidfd_open, child, 0);
    if (child_fd < 0) {
        perror("refuse-live-frames: pidfd_open");
        return 1;
    }
    struct seccomp_notif_sizes sizes;
    if (syscall(__NR_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) {
        perror("refuse-live-frames: SECCOMP_GET_NOTIF_SIZES");
        return 1;
    }
    struct seccomp_notif *request = calloc(1, sizes.seccomp_notif);
    struct seccomp_notif_resp *response = calloc(1, sizes.seccomp_notif_resp);
    if (!request || !response)
        return 1;
    for (;;) {
        struct pollfd fds[2] = { { .fd = listener, .events = POLLIN }, { .fd = child_fd, .events = POLLIN } };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("refuse-live-frames: poll");
            return 1;
        }
        if (fds[0].revents & POLLIN) {
            memset(request, 0, sizes.seccomp_notif);
            if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, request) == 0)
                answer(listener, request, response);
        }
        if (fds[1].revents & POLLIN) {
            int status;
            while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
            }
            /* Descendants the command left running (it should leave none) keep
             * the filter; their next BPF_PROG_RUN would fail with ENOSYS. */
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    }
}
