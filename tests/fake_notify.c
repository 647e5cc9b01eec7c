/* tests/fake_notify.c: a tiny fake systemd for gptqd's Type=notify side.
 * Binds a SOCK_DGRAM unix socket, starts gptqd with NOTIFY_SOCKET,
 * WATCHDOG_USEC and WATCHDOG_PID (set in the child to its own pid, as
 * sd_watchdog_enabled requires), and checks that READY=1, STATUS=,
 * WATCHDOG=1 arrive, then that SIGTERM brings STOPPING=1 and exit 0.
 * Usage: fake_notify PATH/TO/gptqd */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int seen_ready, seen_status, seen_watchdog, seen_stopping;
static double t_ready, t_watchdog;

/* Reads datagrams for up to `seconds` or until `until` says stop. */
static void receive(int fd, double seconds, int (*until)(void))
{
    double end = now_s() + seconds;
    while (now_s() < end && !(until && until())) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            printf("notify: %s\n", line);
            if (strcmp(line, "READY=1") == 0 && !seen_ready)
                seen_ready = 1, t_ready = now_s();
            else if (strncmp(line, "STATUS=", 7) == 0 && line[7])
                seen_status++;
            else if (strcmp(line, "WATCHDOG=1") == 0 && seen_ready && !seen_watchdog)
                seen_watchdog = 1, t_watchdog = now_s();
            else if (strcmp(line, "STOPPING=1") == 0)
                seen_stopping = 1;
        }
    }
}

static int got_watchdog(void) { return seen_ready && seen_status && seen_watchdog; }
static int got_stopping(void) { return seen_stopping; }

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/gptqd\n", argv[0]);
        return 2;
    }
    /* Unix socket paths are short (108 bytes): keep the folder name short. */
    char dir[80];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (strlen(tmp) > 40)
        tmp = "/tmp";
    snprintf(dir, sizeof dir, "%s/gptqd-notify-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char notify_path[100], sock_path[100];
    snprintf(notify_path, sizeof notify_path, "%s/notify", dir);
    snprintf(sock_path, sizeof sock_path, "%s/gptqd.sock", dir);

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", notify_path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("notify socket");
        return 1;
    }

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char pidtext[32];
        snprintf(pidtext, sizeof pidtext, "%d", (int)getpid());
        setenv("NOTIFY_SOCKET", notify_path, 1);
        setenv("WATCHDOG_USEC", "1000000", 1); /* 1 s: a ping every 500 ms */
        setenv("WATCHDOG_PID", pidtext, 1);
        execl(argv[1], argv[1], "--socket", sock_path, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", argv[1], strerror(errno));
        _exit(127);
    }
    int failures = 0;
    receive(fd, 20, got_watchdog);
    if (!seen_ready)
        fprintf(stderr, "FAIL: no READY=1 within 20 s\n"), failures++;
    if (!seen_status)
        fprintf(stderr, "FAIL: no STATUS= line\n"), failures++;
    if (!seen_watchdog)
        fprintf(stderr, "FAIL: no WATCHDOG=1 after READY=1\n"), failures++;
    else if (t_watchdog - t_ready > 1.5)
        fprintf(stderr, "FAIL: first WATCHDOG=1 %.2f s after READY=1 (timeout 1 s)\n",
                t_watchdog - t_ready), failures++;

    kill(pid, SIGTERM);
    receive(fd, 10, got_stopping);
    if (!seen_stopping)
        fprintf(stderr, "FAIL: no STOPPING=1 after SIGTERM\n"), failures++;
    int status = 0;
    pid_t w = 0;
    for (double end = now_s() + 10; (w = waitpid(pid, &status, WNOHANG)) == 0 && now_s() < end;)
        usleep(10000);
    if (w == 0) {
        fprintf(stderr, "FAIL: gptqd did not exit within 10 s of SIGTERM\n");
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        failures++;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "FAIL: gptqd exit status 0x%x after SIGTERM, expected 0\n", status);
        failures++;
    }
    if (access(sock_path, F_OK) == 0)
        fprintf(stderr, "FAIL: socket file %s left behind\n", sock_path), failures++;
    close(fd);
    unlink(notify_path);
    rmdir(dir);
    printf("%s: READY=1 %d, STATUS= %d, WATCHDOG=1 %d, STOPPING=1 %d\n",
           failures ? "FAIL" : "ok", seen_ready, seen_status, seen_watchdog, seen_stopping);
    return failures ? 1 : 0;
}
