/* The bare system calls under manager_decrement_seed: a server process
 * holding a counter on an abstract unix socket, and PROCESSES children forked
 * one after the other, each of which takes a futex lock in shared memory,
 * connects, reads the counter and writes it back less one (two round trips),
 * releases the lock, closes and exits; then the parent waits for them all,
 * reads the counter (it must be 0) and stops the server. The server is one
 * thread serving one connection after another (the lock brings them one at
 * a time): no thread per connection, no framing, no encoding.
 * Prints one JSON line: the whole run (server start to stop) in seconds.
 * usage: manager_seed PROCESSES */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor.h"

enum { GET = 1, SET = 2, STOP = 3 };

/* A request: what, and (SET) the new value. An answer: the value. */
struct message {
    int64_t op, value;
};

/* A lock word: 0 free, 1 held, 2 held with sleepers. */
static void lock(atomic_int *word) {
    int seen = 0;
    if (atomic_compare_exchange_strong(word, &seen, 1)) return;
    if (seen != 2) seen = atomic_exchange(word, 2);
    while (seen != 0) {
        futex(word, FUTEX_WAIT, 2);
        seen = atomic_exchange(word, 2);
    }
}

static void unlock(atomic_int *word) {
    if (atomic_exchange(word, 0) == 2) futex(word, FUTEX_WAKE, 1);
}

/* The server's address: an abstract name of this run's own. */
static socklen_t address(struct sockaddr_un *addr, pid_t parent) {
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    int len = snprintf(addr->sun_path + 1, sizeof addr->sun_path - 1, "multiproc-floor-seed-%d", (int)parent);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

static int whole(ssize_t done, size_t want) { return done == (ssize_t)want; }

/* Sends `request` on `sock` and reads the answer's value into *value. */
static int round_trip(int sock, struct message request, int64_t *value) {
    struct message answer;
    if (!whole(write(sock, &request, sizeof request), sizeof request)) return -1;
    if (!whole(read(sock, &answer, sizeof answer), sizeof answer)) return -1;
    *value = answer.value;
    return 0;
}

static int connect_to(pid_t parent) {
    struct sockaddr_un addr;
    socklen_t len = address(&addr, parent);
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&addr, len) < 0) return -1;
    return sock;
}

/* The server: binds, says so on `ready`, and answers until a STOP. */
static int serve(pid_t parent, int ready, int64_t count) {
    struct sockaddr_un addr;
    socklen_t len = address(&addr, parent);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, len) < 0 || listen(listener, 128) < 0) {
        perror("server socket");
        return 1;
    }
    if (!whole(write(ready, "", 1), 1)) return 1;
    close(ready);
    for (;;) {
        int sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (sock < 0) { perror("accept"); return 1; }
        struct message request;
        while (whole(read(sock, &request, sizeof request), sizeof request)) {
            if (request.op == SET) count = request.value;
            struct message answer = {request.op, count};
            if (!whole(write(sock, &answer, sizeof answer), sizeof answer)) break;
            if (request.op == STOP) return 0;
            if (request.op == SET) break;
        }
        close(sock);
    }
}

/* A child: the decrement under the lock. */
static int decrement(pid_t parent, atomic_int *word) {
    lock(word);
    int sock = connect_to(parent);
    int64_t value;
    int failed = sock < 0 || round_trip(sock, (struct message){GET, 0}, &value) < 0 ||
                 round_trip(sock, (struct message){SET, value - 1}, &value) < 0;
    unlock(word);
    close(sock);
    return failed;
}

int main(int argc, char **argv) {
    int n = positive_arg(argc, argv, "manager_seed PROCESSES");
    pid_t parent = getpid();
    atomic_int *word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (word == MAP_FAILED) { perror("mmap"); return 1; }
    pid_t *children = malloc(n * sizeof *children);
    if (!children) { perror("malloc"); return 1; }
    int ready[2];
    double start = now_us();
    if (pipe2(ready, O_CLOEXEC) < 0) { perror("pipe"); return 1; }
    pid_t server = fork();
    if (server < 0) { perror("fork"); return 1; }
    if (server == 0) {
        /* Gone with the parent, whatever stops it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        close(ready[0]);
        _exit(serve(parent, ready[1], n));
    }
    close(ready[1]);
    char byte;
    if (!whole(read(ready[0], &byte, 1), 1)) { fprintf(stderr, "the server did not start\n"); return 1; }
    close(ready[0]);
    for (int i = 0; i < n; i++) {
        children[i] = fork();
        if (children[i] < 0) { perror("fork"); return 1; }
        if (children[i] == 0) _exit(decrement(parent, word));
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int status;
        if (waitpid(children[i], &status, 0) != children[i]) { perror("waitpid"); return 1; }
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    int64_t final_count = -1, stopped;
    int sock = connect_to(parent);
    if (sock < 0 || round_trip(sock, (struct message){GET, 0}, &final_count) < 0 ||
        round_trip(sock, (struct message){STOP, 0}, &stopped) < 0) {
        perror("the last requests");
        return 1;
    }
    close(sock);
    int status;
    if (waitpid(server, &status, 0) != server) { perror("waitpid"); return 1; }
    double seconds = (now_us() - start) / 1e6;
    if (failed || final_count != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "manager_seed: a child or the server failed (final count %lld)\n", (long long)final_count);
        return 1;
    }
    printf("{\"bench\": \"manager_decrement_seed\", \"impl\": \"floor\", \"floor\": \"manager_seed\", \"n\": %d, \"seconds\": %.6f, \"final_count\": %lld}\n", n, seconds, (long long)final_count);
    return 0;
}
