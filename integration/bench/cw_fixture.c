/* Benchmark fixture: PAIRS loopback connections to a listener on ADDR (127.0.0.x), both ends kept
 * open in this process, the client end shut for writing: the server end sits in CLOSE_WAIT and the
 * client end in FIN_WAIT2 for as long as the process lives (an owned FIN_WAIT2 never times out).
 * Holds 2*PAIRS+1 socket fds. Prints "READY <pid> <port>" when done, then waits for SIGTERM.
 *
 * usage: cw_fixture ADDR PAIRS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ADDR PAIRS\n", argv[0]);
        return 2;
    }
    int pairs = atoi(argv[2]);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
        die("inet_pton");
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0)
        die("socket");
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(l, 4096) < 0)
        die("listen");
    socklen_t len = sizeof sa;
    getsockname(l, (struct sockaddr *)&sa, &len);
    for (int i = 0; i < pairs; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0)
            die("socket (client)");
        if (connect(c, (struct sockaddr *)&sa, sizeof sa) < 0)
            die("connect");
        int s = accept(l, NULL, NULL);
        if (s < 0)
            die("accept");
        if (shutdown(c, SHUT_WR) < 0)
            die("shutdown");
    }
    printf("READY %d %d\n", getpid(), ntohs(sa.sin_port));
    fflush(stdout);
    for (;;)
        pause();
}
