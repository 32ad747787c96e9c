/* An HTTP/1.0 short-connection load generator in C on the kernel's sockets, for
 * benchmarks/kernel_ceiling.py: N connections in flight, each connect -> GET -> read to EOF
 * -> close -> the next, with epoll.  It costs the kernel run as little user CPU as a client
 * can, so what is left is the kernel server's (and loopback's) own ceiling.
 *   http_short_client PORT CONCURRENCY SECONDS  ->  "<conn/s> conn/s errors <n>"
 * (127.0.0.1; 0.5 s of warm-up before the measured SECONDS.) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static const char REQ[] =
    "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: fsdp-bench\r\nConnection: close\r\n\r\n";
static struct sockaddr_in sa;
static int ep;
static long done, errs;
static unsigned char status_ok[1 << 16], reading[1 << 16];  /* per fd: "HTTP/1.x 200" seen */
static void start(void) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s < 0 || s >= (1 << 16)) { perror("socket"); exit(1); }
    status_ok[s] = reading[s] = 0;
    int r = connect(s, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 && errno != EINPROGRESS) { errs++; close(s); return; }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (unsigned long)s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int port = atoi(argv[1]), conc = atoi(argv[2]); double secs = atof(argv[3]);
    sa.sin_family = AF_INET; sa.sin_port = htons(port); sa.sin_addr.s_addr = htonl(0x7f000001);
    ep = epoll_create1(0);
    for (int i = 0; i < conc; i++) start();
    struct epoll_event evs[256]; char buf[4096];
    double t0 = now(), tw = t0 + 0.5; long d0 = 0; int measuring = 0;
    while (1) {
        double t = now();
        if (!measuring && t >= tw) { measuring = 1; d0 = done; t0 = t; }
        if (measuring && t - t0 >= secs) break;
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            int s = (int)evs[i].data.u64;
            if (evs[i].events & EPOLLOUT) {
                if (send(s, REQ, sizeof REQ - 1, 0) != (ssize_t)(sizeof REQ - 1)) { errs++; close(s); start(); continue; }
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (unsigned long)s};
                epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
                continue;
            }
            for (;;) {
                ssize_t r = recv(s, buf, sizeof buf, 0);
                if (r > 0) {
                    if (!reading[s])
                        status_ok[s] = r >= 12 && !memcmp(buf, "HTTP/1.", 7) && !memcmp(buf + 8, " 200", 4);
                    reading[s] = 1;
                    continue;
                }
                if (r < 0 && errno == EAGAIN) break;
                if (r == 0 && status_ok[s]) done++; else errs++;
                close(s); start(); break;
            }
        }
    }
    printf("%.0f conn/s errors %ld\n", (done - d0) / (now() - t0), errs);
    return 0;
}
